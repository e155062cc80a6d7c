import Foundation
import GRDB
import TributaryCore
import TributaryStore

/// The read side of `tributary migrate`: the store's tables row by row in key order, as
/// ``CopyValue``s, and the checks made before copying.
extension SQLiteStore {
    /// The columns a copy of `table` reads (`records` also carries its payload, kept in
    /// `record_payloads` here); empty when the table does not exist.
    public func copyColumns(_ table: CopyTable) async throws -> [String] {
        try await pool.read { db in
            guard try db.tableExists(table.name) else { return [] }
            var columns = try db.columns(in: table.name).map(\.name)
            if table.name == "records" { columns.append("payload") }
            return columns
        }
    }

    /// Up to `limit` rows of `table` after `key` (nil: from the start), in key order.
    public func copyRows(_ table: CopyTable, columns: [String], after key: CopyValue?, limit: Int) async throws -> [[CopyValue]] {
        let selected = columns.map { column -> String in
            if table.name == "records" && column == "payload" {
                // A pruned record keeps `{"id": …}` here as in PostgreSQL; a missing row reads the same.
                return #"coalesce((SELECT p.payload FROM record_payloads p WHERE p.record_id = t.id), json_object('id', t.external_id)) AS payload"#
            }
            return "t.\(Self.quoted(column))"
        }
        var sql = "SELECT \(selected.joined(separator: ", ")) FROM \(Self.quoted(table.name)) t"
        var arguments: [any DatabaseValueConvertible] = []
        if let key {
            sql += " WHERE t.\(Self.quoted(table.key)) > ?"
            arguments.append(Self.databaseValue(key))
        }
        sql += " ORDER BY t.\(Self.quoted(table.key)) LIMIT ?"
        arguments.append(limit)
        guard let statementArguments = StatementArguments(arguments) else { return [] }
        let query = sql
        return try await pool.read { db in
            try Row.fetchAll(db, sql: query, arguments: statementArguments).map { row in
                row.databaseValues.map(Self.copyValue)
            }
        }
    }

    /// Runs and async action executions whose lease has not run out: a `serve` is using the store.
    public func liveLeases(now: Timestamp = Timestamp.now()) async throws -> Int {
        try await pool.read { db in
            let runs = try Int.fetchOne(
                db, sql: "SELECT count(*) FROM runs WHERE status = 'running' AND heartbeat_at + lease_seconds * 1000000 > ?", arguments: [now.microseconds]) ?? 0
            guard try db.tableExists("action_runs") else { return runs }
            let actions = try Int.fetchOne(
                db, sql: "SELECT count(*) FROM action_runs WHERE status = 'running' AND heartbeat_at + lease_seconds * 1000000 > ?",
                arguments: [now.microseconds]) ?? 0
            return runs + actions
        }
    }

    /// What the data looks like now, cheaply (row counts and largest ids of the busiest tables): an
    /// interrupted copy resumes only from a source that has not changed since.
    public func copyFingerprint() async throws -> String {
        try await pool.read { db in
            var parts: [String] = []
            for table in ["connections", "sync_variants", "records", "runs", "webhook_deliveries"] where try db.tableExists(table) {
                let row = try Row.fetchOne(db, sql: "SELECT count(*), coalesce(max(id), 0) FROM \(Self.quoted(table))")
                parts.append("\(table):\(row?[0] as Int64? ?? 0):\(row?[1] as Int64? ?? 0)")
            }
            let seq = try Int64.fetchOne(db, sql: "SELECT coalesce(max(last_seq), 0) FROM datasets") ?? 0
            parts.append("seq:\(seq)")
            return parts.joined(separator: ",")
        }
    }

    static func quoted(_ identifier: String) -> String {
        "\"" + identifier.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    static func copyValue(_ value: DatabaseValue) -> CopyValue {
        switch value.storage {
        case .null: return .null
        case .int64(let number): return .integer(number)
        case .double(let number): return .real(number)
        case .string(let text): return .text(text)
        case .blob(let data): return .blob(Array(data))
        }
    }

    static func databaseValue(_ value: CopyValue) -> any DatabaseValueConvertible {
        switch value {
        case .null: return DatabaseValue.null
        case .integer(let number): return number
        case .real(let number): return number
        case .text(let text): return text
        case .blob(let bytes): return Data(bytes)
        }
    }
}
