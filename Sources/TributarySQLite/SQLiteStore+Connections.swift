import GRDB
import TributaryCore
import TributaryStore

extension SQLiteStore {
    @discardableResult
    public func ensureConnection(_ connection: ConnectionRef) async throws -> Bool {
        let now = clock()
        return try await pool.write { db in try self.ensureConnectionPK(db, connection, now: now).created }
    }

    public func connectionExists(_ connection: ConnectionRef) async throws -> Bool {
        try await pool.read { db in try self.connectionPK(db, connection) != nil }
    }

    public func deleteConnection(_ connection: ConnectionRef) async throws {
        try await pool.write { db in
            guard let pk = try self.connectionPK(db, connection) else {
                throw TributaryError(.unknownConnection, "Connection '\(connection.connectionId)' does not exist.")
            }
            try self.raiseSequenceFloor(db, datasetsWhere: "connection_pk = ?", [pk])
            try db.execute(sql: "DELETE FROM records WHERE dataset_id IN (SELECT id FROM datasets WHERE connection_pk = ?)", arguments: [pk])
            try db.execute(sql: "DELETE FROM connections WHERE id = ?", arguments: [pk])
        }
    }

    public func metadata(of connection: ConnectionRef) async throws -> JSONObject {
        let text: String = try await pool.read { db in
            let pk = try self.requireConnectionPK(db, connection)
            return try String.fetchOne(db, sql: "SELECT metadata FROM connections WHERE id = ?", arguments: [pk]) ?? "{}"
        }
        return try JSONParser.parse(text).objectValue ?? [:]
    }

    public func setMetadata(_ metadata: JSONObject, of connections: [ConnectionRef]) async throws {
        try await changeMetadata(of: connections) { _ in metadata }
    }

    public func updateMetadata(_ metadata: JSONObject, of connections: [ConnectionRef]) async throws {
        try await changeMetadata(of: connections) { $0.shallowMerging(metadata) }
    }

    private func changeMetadata(of connections: [ConnectionRef], _ change: @escaping @Sendable (JSONObject) -> JSONObject) async throws {
        let now = clock()
        try await pool.write { db in
            // Resolve every connection first: one unknown connection changes nothing.
            let pks = try connections.map { try self.requireConnectionPK(db, $0) }
            for pk in pks {
                let current = try String.fetchOne(db, sql: "SELECT metadata FROM connections WHERE id = ?", arguments: [pk]) ?? "{}"
                let object = try JSONParser.parse(current).objectValue ?? [:]
                let updated = JSONWriter.string(.object(change(object)), canonical: false)
                try db.execute(
                    sql: "UPDATE connections SET metadata = ?, updated_at = ? WHERE id = ?", arguments: [updated, now.microseconds, pk])
            }
        }
    }
}
