import Foundation
import GRDB
import TributaryCore
import TributaryStore

extension SQLiteStore {
    @discardableResult
    public func ensureConnection(_ connection: ConnectionRef) async throws -> Bool {
        let now = clock()
        return try await pool.write { db in try self.ensureConnectionPK(db, connection, now: now).created }
    }

    public func importConnection(_ connection: ConnectionImport, baseVariantsOf syncNames: [String]) async throws
        -> (ConnectionRecord, created: Bool)
    {
        try await pool.write { db in try self.importConnection(db, connection, baseVariantsOf: syncNames, now: self.clock()) }
    }

    /// ``importConnection(_:baseVariantsOf:)`` inside a transaction (a Connect session's completion).
    func importConnection(_ db: Database, _ connection: ConnectionImport, baseVariantsOf syncNames: [String], now: Timestamp) throws
        -> (ConnectionRecord, created: Bool)
    {
        let metadata = JSONWriter.string(.object(connection.metadata), canonical: false)
        let config = JSONWriter.string(.object(connection.connectionConfig), canonical: false)
        let (pk, created) = try ensureConnectionPK(db, connection.ref, now: now)
        try db.execute(
            sql: """
                UPDATE connections SET metadata = ?, connection_config = ?, credentials_type = ?, credentials = ?, updated_at = ?
                WHERE id = ?
                """,
            arguments: [
                metadata, config, connection.credentialsType, connection.sealedCredentials.map { Data($0) }, now.microseconds, pk,
            ])
        try patch(db, pk, ConnectionPatch(endUser: connection.endUser, tags: connection.tags), now: now)
        for sync in syncNames {
            let ref = VariantRef(connection: connection.ref, syncName: sync, variant: Variant.base)
            guard try variantRow(db, connectionPK: pk, ref) == nil else { continue }
            let (variantPK, _) = try insertVariant(db, connectionPK: pk, ref, now: now)
            if connection.pausedSyncs.contains(sync) {
                try db.execute(sql: "UPDATE sync_variants SET paused = 1 WHERE id = ?", arguments: [variantPK])
            }
        }
        return (try fetchConnections(db, where: "id = ?", [pk]).first!, created)
    }

    public func connection(_ connection: ConnectionRef) async throws -> ConnectionRecord? {
        try await pool.read { db in
            try self.fetchConnections(
                db, where: "environment = ? AND provider_config_key = ? AND connection_id = ?",
                [connection.environment, connection.providerConfigKey, connection.connectionId]
            ).first
        }
    }

    public func connections(_ filter: ConnectionFilter) async throws -> [ConnectionRecord] {
        var conditions = ["environment = ?"]
        var arguments: [any DatabaseValueConvertible] = [filter.environment]
        if let keys = filter.providerConfigKeys {
            if keys.isEmpty { return [] }
            conditions.append("provider_config_key IN (" + keys.map { _ in "?" }.joined(separator: ",") + ")")
            arguments.append(contentsOf: keys as [any DatabaseValueConvertible])
        }
        if let id = filter.connectionId {
            conditions.append("connection_id = ?")
            arguments.append(id)
        }
        if let search = filter.search {
            conditions.append("instr(connection_id, ?) > 0")
            arguments.append(search)
        }
        for match in filter.fields {
            // Each key quoted, so keys with '-' or spaces address what the path says.
            let path = "$" + match.keys.map { key in
                ".\"" + key.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
            }.joined()
            let column = match.field.rawValue  // a fixed column name per case
            conditions.append("json_valid(\(column)) AND CAST(json_extract(\(column), ?) AS TEXT) = ?")
            arguments.append(path)
            arguments.append(match.value)
        }
        let condition = conditions.joined(separator: " AND ")
        let page = filter.limit.map { " LIMIT \(max(0, $0)) OFFSET \(max(0, filter.offset))" } ?? ""
        guard let statementArguments = StatementArguments(arguments) else { return [] }
        return try await pool.read { db in try self.fetchConnections(db, where: condition, statementArguments, page: page) }
    }

    public func patchConnection(_ connection: ConnectionRef, _ patch: ConnectionPatch) async throws -> ConnectionRecord {
        try await pool.write { db in
            let pk = try self.requireConnectionPK(db, connection)
            try self.patch(db, pk, patch, now: self.clock())
            guard let record = try self.fetchConnections(db, where: "id = ?", [pk]).first else { throw StoreMessages.unknownConnection(connection) }
            return record
        }
    }

    func patch(_ db: Database, _ pk: Int64, _ patch: ConnectionPatch, now: Timestamp) throws {
        if let endUser = patch.endUser {
            try db.execute(
                sql: "UPDATE connections SET end_user = ?, updated_at = ? WHERE id = ?",
                arguments: [JSONWriter.string(.object(endUser), canonical: false), now.microseconds, pk])
        }
        if let tags = patch.tags {
            try db.execute(
                sql: "UPDATE connections SET tags = ?, updated_at = ? WHERE id = ?", arguments: [JSONWriter.string(.object(tags), canonical: false), now.microseconds, pk])
        }
    }

    /// - Parameter page: `LIMIT … OFFSET …` after the id order, or nothing.
    func fetchConnections(_ db: Database, where condition: String, _ arguments: StatementArguments, page: String = "") throws -> [ConnectionRecord] {
        try Row.fetchAll(
            db,
            sql: """
                SELECT id, environment, provider_config_key, connection_id, created_at, updated_at, metadata, connection_config,
                    credentials_type, credentials, end_user, tags
                FROM connections WHERE \(condition) ORDER BY id\(page)
                """,
            arguments: arguments
        ).map { row in
            let sealed: Data? = row["credentials"]
            return ConnectionRecord(
                id: row["id"],
                ref: ConnectionRef(environment: row["environment"], providerConfigKey: row["provider_config_key"], connectionId: row["connection_id"]),
                createdAt: Timestamp(microseconds: row["created_at"]),
                updatedAt: Timestamp(microseconds: row["updated_at"]),
                metadata: try JSONParser.parse(row["metadata"] as String).objectValue ?? [:],
                connectionConfig: try JSONParser.parse(row["connection_config"] as String).objectValue ?? [:],
                credentialsType: row["credentials_type"],
                sealedCredentials: sealed.map { Array($0) },
                endUser: try (row["end_user"] as String?).flatMap { try JSONParser.parse($0).objectValue },
                tags: try JSONParser.parse(row["tags"] as String).objectValue ?? [:])
        }
    }

    public func connectionExists(_ connection: ConnectionRef) async throws -> Bool {
        try await pool.read { db in try self.connectionPK(db, connection) != nil }
    }

    @discardableResult
    public func deleteConnection(_ connection: ConnectionRef) async throws -> LifecycleOutcome {
        return try await pool.write { db in
            let now = self.clock()
            guard let pk = try self.connectionPK(db, connection) else { throw StoreMessages.unknownConnection(connection) }
            var ended: [RunRecord] = []
            for variantPK in try Int64.fetchAll(db, sql: "SELECT id FROM sync_variants WHERE connection_pk = ? ORDER BY id", arguments: [pk]) {
                ended += try self.endActiveRuns(db, variantPK: variantPK, .delete, now: now)
            }
            try self.raiseSequenceFloor(db, datasetsWhere: "connection_pk = ?", [pk])
            try self.purgeDatasets(db, where: "connection_pk = ?", [pk], now: now)
            try db.execute(sql: "DELETE FROM connections WHERE id = ?", arguments: [pk])
            return LifecycleOutcome(ended: ended)
        }
    }

    public func metadata(of connection: ConnectionRef) async throws -> JSONObject {
        let text: String = try await pool.read { db in
            let pk = try self.requireConnectionPK(db, connection)
            return try String.fetchOne(db, sql: "SELECT metadata FROM connections WHERE id = ?", arguments: [pk]) ?? "{}"
        }
        return try JSONParser.parse(text).objectValue ?? [:]
    }

    public func updateCredentials(_ sealed: [UInt8]?, type: String, of connection: ConnectionRef) async throws {
        try await pool.write { db in
            let now = self.clock()
            let pk = try self.requireConnectionPK(db, connection)
            try db.execute(
                sql: "UPDATE connections SET credentials_type = ?, credentials = ?, updated_at = ? WHERE id = ?",
                arguments: [type, sealed.map { Data($0) }, now.microseconds, pk])
        }
    }

    public func setMetadata(_ metadata: JSONObject, of connections: [ConnectionRef]) async throws {
        try await changeMetadata(of: connections) { _ in metadata }
    }

    public func updateMetadata(_ metadata: JSONObject, of connections: [ConnectionRef]) async throws {
        try await changeMetadata(of: connections) { $0.shallowMerging(metadata) }
    }

    private func changeMetadata(of connections: [ConnectionRef], _ change: @escaping @Sendable (JSONObject) -> JSONObject) async throws {
        try await pool.write { db in
            let now = self.clock()
            // Resolve every connection first: one unknown connection changes nothing.
            let pks = try connections.map { try self.requireConnectionPK(db, $0) }
            try self.changeMetadata(db, connectionPKs: pks, now: now, change)
        }
    }

    func changeMetadata(_ db: Database, connectionPKs pks: [Int64], now: Timestamp, _ change: (JSONObject) -> JSONObject) throws {
        for pk in pks {
            let current = try String.fetchOne(db, sql: "SELECT metadata FROM connections WHERE id = ?", arguments: [pk]) ?? "{}"
            let object = try JSONParser.parse(current).objectValue ?? [:]
            let updated = JSONWriter.string(.object(change(object)), canonical: false)
            try db.execute(sql: "UPDATE connections SET metadata = ?, updated_at = ? WHERE id = ?", arguments: [updated, now.microseconds, pk])
        }
    }

    // MARK: OAuth refresh lock

    public func beginCredentialRefresh(of connection: ConnectionRef, holder: String, seconds: Int64) async throws -> CredentialRefreshGrant {
        return try await pool.write { db in
            let now = self.clock()
            let pk = try self.requireConnectionPK(db, connection)
            guard let row = try Row.fetchOne(db, sql: "SELECT refresh_holder, refresh_until FROM connections WHERE id = ?", arguments: [pk]),
                CredentialRefreshLock.mayAcquire(holder: holder, currentHolder: row["refresh_holder"], until: row["refresh_until"], now: now.microseconds)
            else { return .busy }
            try db.execute(
                sql: "UPDATE connections SET refresh_holder = ?, refresh_until = ? WHERE id = ?",
                arguments: [holder, now.microseconds + seconds * 1_000_000, pk])
            return .granted(try self.fetchConnections(db, where: "id = ?", [pk])[0])
        }
    }

    @discardableResult
    public func finishCredentialRefresh(
        of connection: ConnectionRef, holder: String, sealed: (type: String, credentials: [UInt8])?, replacing expected: [UInt8]?
    ) async throws -> Bool {
        return try await pool.write { db in
            let now = self.clock()
            guard let pk = try self.connectionPK(db, connection),
                let row = try Row.fetchOne(db, sql: "SELECT refresh_holder, credentials FROM connections WHERE id = ?", arguments: [pk])
            else { return false }
            let holds = row["refresh_holder"] as String? == holder
            if let sealed, holds || (row["credentials"] as Data?).map(Array.init) == expected {
                try db.execute(
                    sql: "UPDATE connections SET credentials_type = ?, credentials = ?, updated_at = ? WHERE id = ?",
                    arguments: [sealed.type, Data(sealed.credentials), now.microseconds, pk])
            } else if sealed != nil || !holds {
                return false
            }
            if holds { try db.execute(sql: "UPDATE connections SET refresh_holder = NULL, refresh_until = NULL WHERE id = ?", arguments: [pk]) }
            return true
        }
    }
}
