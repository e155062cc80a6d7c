import Foundation
import PostgresNIO
import TributaryCore
import TributaryStore

extension PostgresStore {
    @discardableResult
    public func ensureConnection(_ connection: ConnectionRef) async throws -> Bool {
        let now = clock()
        return try await transaction { db in try await self.ensureConnectionPK(db, connection, now: now).created }
    }

    public func importConnection(_ connection: ConnectionImport, baseVariantsOf syncNames: [String]) async throws
        -> (ConnectionRecord, created: Bool)
    {
        let now = clock()
        return try await transaction { db in try await self.importConnection(db, connection, baseVariantsOf: syncNames, now: now) }
    }

    /// ``importConnection(_:baseVariantsOf:)`` inside a transaction (a Connect session's completion).
    func importConnection(_ db: PostgresConnection, _ connection: ConnectionImport, baseVariantsOf syncNames: [String], now: Timestamp) async throws
        -> (ConnectionRecord, created: Bool)
    {
        let metadata = JSONWriter.string(.object(connection.metadata), canonical: false)
        let config = JSONWriter.string(.object(connection.connectionConfig), canonical: false)
        let sealed = connection.sealedCredentials.map { Data($0) }
        let (pk, created) = try await ensureConnectionPK(db, connection.ref, now: now)
        try await db.query(
            """
            UPDATE connections SET metadata = \(metadata)::jsonb, connection_config = \(config)::jsonb,
                credentials_type = \(connection.credentialsType), credentials = \(sealed), updated_at = \(now.microseconds)
            WHERE id = \(pk)
            """, logger: logger)
        try await patch(db, pk, ConnectionPatch(endUser: connection.endUser, tags: connection.tags), now: now)
        var due = false
        for sync in syncNames {
            // An existing base variant keeps its state (the insert does nothing then).
            let ref = VariantRef(connection: connection.ref, syncName: sync, variant: Variant.base)
            let paused = connection.pausedSyncs.contains(sync)
            if try await insertVariant(db, connectionPK: pk, ref, paused: paused, now: now) != nil, !paused { due = true }
        }
        if due { try await notify(db, .variantsDue) }
        return (try await fetchConnections(db, "id = $1", binds: [pk]).first!, created)
    }

    public func connection(_ connection: ConnectionRef) async throws -> ConnectionRecord? {
        try await read { db in
            try await self.fetchConnections(
                db, "environment = $1 AND provider_config_key = $2 AND connection_id = $3",
                binds: [connection.environment, connection.providerConfigKey, connection.connectionId]
            ).first
        }
    }

    public func connections(_ filter: ConnectionFilter) async throws -> [ConnectionRecord] {
        var conditions = ["environment = $1"]
        var binds: [any PostgresDynamicTypeEncodable & Sendable] = [filter.environment]
        func placeholder() -> String { "$\(binds.count)" }
        if let keys = filter.providerConfigKeys {
            if keys.isEmpty { return [] }
            binds.append(keys)
            conditions.append("provider_config_key = ANY(\(placeholder()))")
        }
        if let id = filter.connectionId {
            binds.append(id)
            conditions.append("connection_id = \(placeholder())")
        }
        if let search = filter.search {
            binds.append(search)
            conditions.append("strpos(connection_id, \(placeholder())) > 0")
        }
        for match in filter.fields {
            let column = match.field.rawValue  // a fixed column name per case
            binds.append(match.keys)
            let path = placeholder()
            binds.append(match.value)
            conditions.append("(\(column) #>> \(path)) = \(placeholder())")
        }
        let condition = conditions.joined(separator: " AND ")
        let page = filter.limit.map { " LIMIT \(max(0, $0)) OFFSET \(max(0, filter.offset))" } ?? ""
        let values = binds
        return try await read { db in try await self.fetchConnections(db, condition, binds: values, page: page) }
    }

    public func patchConnection(_ connection: ConnectionRef, _ patch: ConnectionPatch) async throws -> ConnectionRecord {
        let now = clock()
        return try await transaction { db in
            let pk = try await self.requireConnectionPK(db, connection)
            try await self.patch(db, pk, patch, now: now)
            guard let record = try await self.fetchConnections(db, "id = $1", binds: [pk]).first else { throw StoreMessages.unknownConnection(connection) }
            return record
        }
    }

    func patch(_ db: PostgresConnection, _ pk: Int64, _ patch: ConnectionPatch, now: Timestamp) async throws {
        if let endUser = patch.endUser {
            let text = JSONWriter.string(.object(endUser), canonical: false)
            try await db.query("UPDATE connections SET end_user = \(text)::jsonb, updated_at = \(now.microseconds) WHERE id = \(pk)", logger: logger)
        }
        if let tags = patch.tags {
            let text = JSONWriter.string(.object(tags), canonical: false)
            try await db.query("UPDATE connections SET tags = \(text)::jsonb, updated_at = \(now.microseconds) WHERE id = \(pk)", logger: logger)
        }
    }

    /// - Parameter page: `LIMIT … OFFSET …` after the id order, or nothing.
    func fetchConnections(_ db: PostgresConnection, _ condition: String, binds values: [any PostgresDynamicTypeEncodable & Sendable], page: String = "")
        async throws -> [ConnectionRecord]
    {
        var binds = PostgresBindings(capacity: values.count)
        for value in values { binds.append(value) }
        let query = PostgresQuery(
            unsafeSQL: """
                SELECT id, environment, provider_config_key, connection_id, created_at, updated_at, metadata::text AS metadata,
                    connection_config::text AS connection_config, credentials_type, credentials, end_user::text AS end_user, tags::text AS tags
                FROM connections WHERE \(condition) ORDER BY id\(page)
                """,
            binds: binds)
        return try await db.all(query, logger).map { row in
            ConnectionRecord(
                id: try row.int64("id"),
                ref: ConnectionRef(
                    environment: try row.string("environment"), providerConfigKey: try row.string("provider_config_key"),
                    connectionId: try row.string("connection_id")),
                createdAt: Timestamp(microseconds: try row.int64("created_at")),
                updatedAt: Timestamp(microseconds: try row.int64("updated_at")),
                metadata: try JSONParser.parse(Array(try row.string("metadata").utf8)).objectValue ?? [:],
                connectionConfig: try JSONParser.parse(Array(try row.string("connection_config").utf8)).objectValue ?? [:],
                credentialsType: try row.string("credentials_type"),
                sealedCredentials: try row.optionalBytes("credentials"),
                endUser: try row.optionalString("end_user").flatMap { try JSONParser.parse(Array($0.utf8)).objectValue },
                tags: try JSONParser.parse(Array(try row.string("tags").utf8)).objectValue ?? [:])
        }
    }

    public func connectionExists(_ connection: ConnectionRef) async throws -> Bool {
        try await read { db in try await self.connectionPK(db, connection) != nil }
    }

    @discardableResult
    public func deleteConnection(_ connection: ConnectionRef) async throws -> LifecycleOutcome {
        return try await transaction { db in
            try await self.lock(db, .runQueue)
            let now = self.clock()
            guard let pk = try await self.connectionPK(db, connection) else { throw StoreMessages.unknownConnection(connection) }
            // Run rows first (the order every writer keeps), then the connection: its runs and records go with it.
            var ended: [RunRecord] = []
            for row in try await db.all("SELECT id FROM sync_variants WHERE connection_pk = \(pk) ORDER BY id", self.logger) {
                ended += try await self.endActiveRuns(db, variantPK: try row.int64("id"), .delete, now: now)
            }
            try await db.query("SELECT id FROM connections WHERE id = \(pk) FOR UPDATE", logger: self.logger)
            try await self.raiseSequenceFloor(db, connectionPK: pk, variant: nil)
            try await self.purgeDatasets(db, ids: try await self.lockDatasets(db, connectionPK: pk, syncName: nil, variant: nil), now: now)
            try await db.query("DELETE FROM connections WHERE id = \(pk)", logger: self.logger)
            return LifecycleOutcome(ended: ended)
        }
    }

    public func metadata(of connection: ConnectionRef) async throws -> JSONObject {
        let text: String = try await read { db in
            guard
                let row = try await db.one(
                    """
                    SELECT metadata::text AS metadata FROM connections
                    WHERE environment = \(connection.environment) AND provider_config_key = \(connection.providerConfigKey)
                        AND connection_id = \(connection.connectionId)
                    """, self.logger)
            else { throw StoreMessages.unknownConnection(connection) }
            return try row.optionalString("metadata") ?? "{}"
        }
        return try JSONParser.parse(Array(text.utf8)).objectValue ?? [:]
    }

    public func updateCredentials(_ sealed: [UInt8]?, type: String, of connection: ConnectionRef) async throws {
        let now = clock()
        let data = sealed.map { Data($0) }
        try await transaction { db in
            let pk = try await self.requireConnectionPK(db, connection)
            try await db.query(
                "UPDATE connections SET credentials_type = \(type), credentials = \(data), updated_at = \(now.microseconds) WHERE id = \(pk)",
                logger: self.logger)
        }
    }

    public func setMetadata(_ metadata: JSONObject, of connections: [ConnectionRef]) async throws {
        try await changeMetadata(of: connections) { _ in metadata }
    }

    public func updateMetadata(_ metadata: JSONObject, of connections: [ConnectionRef]) async throws {
        try await changeMetadata(of: connections) { $0.shallowMerging(metadata) }
    }

    private func changeMetadata(of connections: [ConnectionRef], _ change: @escaping @Sendable (JSONObject) -> JSONObject) async throws {
        let now = clock()
        try await transaction { db in
            // Resolve every connection first: one unknown connection changes nothing.
            var pks: [Int64] = []
            for connection in connections { pks.append(try await self.requireConnectionPK(db, connection)) }
            try await self.changeMetadata(db, connectionPKs: pks, now: now, change)
        }
    }

    func changeMetadata(_ db: PostgresConnection, connectionPKs pks: [Int64], now: Timestamp, _ change: (JSONObject) -> JSONObject) async throws {
        for pk in pks {
            let current =
                try await db.one("SELECT metadata::text AS metadata FROM connections WHERE id = \(pk) FOR UPDATE", logger)?.string("metadata") ?? "{}"
            let object = try JSONParser.parse(Array(current.utf8)).objectValue ?? [:]
            let updated = JSONWriter.string(.object(change(object)), canonical: false)
            try await db.query("UPDATE connections SET metadata = \(updated)::jsonb, updated_at = \(now.microseconds) WHERE id = \(pk)", logger: logger)
        }
    }

    // MARK: OAuth refresh lock

    public func beginCredentialRefresh(of connection: ConnectionRef, holder: String, seconds: Int64) async throws -> CredentialRefreshGrant {
        let offset = leaseClockOffset()
        return try await transaction { db in
            let pk = try await self.requireConnectionPK(db, connection)
            guard
                let row = try await db.one(
                    """
                    SELECT refresh_holder, refresh_until, \(unescaped: Self.databaseNow) + \(offset) AS lease_now FROM connections WHERE id = \(pk) FOR UPDATE
                    """, self.logger),
                CredentialRefreshLock.mayAcquire(
                    holder: holder, currentHolder: try row.optionalString("refresh_holder"), until: try row.optionalInt64("refresh_until"),
                    now: try row.int64("lease_now"))
            else { return .busy }
            try await db.query(
                """
                UPDATE connections SET refresh_holder = \(holder), refresh_until = \(unescaped: Self.databaseNow) + \(offset + seconds * 1_000_000)
                WHERE id = \(pk)
                """, logger: self.logger)
            return .granted(try await self.fetchConnections(db, "id = $1", binds: [pk])[0])
        }
    }

    @discardableResult
    public func finishCredentialRefresh(
        of connection: ConnectionRef, holder: String, sealed: (type: String, credentials: [UInt8])?, replacing expected: [UInt8]?
    ) async throws -> Bool {
        let now = clock()
        let data = sealed.map { Data($0.credentials) }
        let type = sealed?.type
        return try await transaction { db in
            guard let pk = try await self.connectionPK(db, connection),
                let row = try await db.one("SELECT refresh_holder, credentials FROM connections WHERE id = \(pk) FOR UPDATE", self.logger)
            else { return false }
            let holds = try row.optionalString("refresh_holder") == holder
            if let data, let type, try holds || row.optionalBytes("credentials") == expected {
                try await db.query(
                    "UPDATE connections SET credentials_type = \(type), credentials = \(data), updated_at = \(now.microseconds) WHERE id = \(pk)",
                    logger: self.logger)
            } else if data != nil || !holds {
                return false
            }
            if holds {
                try await db.query("UPDATE connections SET refresh_holder = NULL, refresh_until = NULL WHERE id = \(pk)", logger: self.logger)
            }
            return true
        }
    }
}
