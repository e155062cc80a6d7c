import Foundation
import GRDB
import TributaryCore
import TributaryStore

/// The read side of `tributary migrate`: the store's tables row by row in key order, as
/// ``CopyValue``s, and the checks made before copying. Reads go through ``copySnapshot()``: one
/// point in time of the file for the whole copy, whatever is written meanwhile.
extension SQLiteStore {
    /// A frozen view of the database as of now (a WAL snapshot): every read of the copy sees this moment.
    public func copySnapshot() throws -> SQLiteCopySnapshot {
        SQLiteCopySnapshot(reader: try pool.makeSnapshot())
    }

    /// ``SQLiteCopySnapshot/copyFingerprint()`` of the database as it is now.
    public func copyFingerprint() async throws -> String {
        try await copySnapshot().copyFingerprint()
    }

    /// Whether the file at `path` holds Tributary's tables (it was created by `serve`, `dryrun` or
    /// `demo`), read without writing anything to it (opening a store would switch it to WAL).
    public static func isTributaryStore(path: String) -> Bool {
        var configuration = Configuration()
        configuration.readonly = true
        guard let queue = try? DatabaseQueue(path: path, configuration: configuration) else { return false }
        defer { try? queue.close() }
        return (try? queue.read { db in try db.tableExists("runs") && db.tableExists("sync_variants") && db.tableExists("store_meta") }) ?? false
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

/// A point-in-time view of a SQLite store for `tributary migrate` (``SQLiteStore/copySnapshot()``).
public struct SQLiteCopySnapshot: Sendable {
    let reader: DatabaseSnapshot

    /// The most bytes of values one ``copyRows(_:columns:after:limit:)`` returns (at least one row):
    /// a batch of large payloads stays bounded in memory.
    public static let batchBytes = 32 << 20

    /// The columns a copy of `table` reads (`records` also carries its payload, kept in
    /// `record_payloads` here); empty when the table does not exist.
    public func copyColumns(_ table: CopyTable) async throws -> [String] {
        try await reader.read { db in
            guard try db.tableExists(table.name) else { return [] }
            var columns = try db.columns(in: table.name).map(\.name)
            if table.name == "records" { columns.append("payload") }
            return columns
        }
    }

    /// Up to `limit` rows of `table` after `key` (nil: from the start), in key order, and at most
    /// about ``batchBytes``; empty once the table is read.
    public func copyRows(_ table: CopyTable, columns: [String], after key: CopyValue?, limit: Int) async throws -> [[CopyValue]] {
        var sql = "SELECT \(Self.selection(table, columns)) FROM \(SQLiteStore.quoted(table.name)) t"
        var arguments: [any DatabaseValueConvertible] = []
        if let key {
            sql += " WHERE t.\(SQLiteStore.quoted(table.key)) > ?"
            arguments.append(SQLiteStore.databaseValue(key))
        }
        sql += " ORDER BY t.\(SQLiteStore.quoted(table.key)) LIMIT ?"
        arguments.append(limit)
        guard let statementArguments = StatementArguments(arguments) else { return [] }
        let query = sql
        return try await reader.read { db in
            var rows: [[CopyValue]] = []
            var bytes = 0
            let cursor = try Row.fetchCursor(db, sql: query, arguments: statementArguments)
            while let row = try cursor.next() {
                let values = Array(row.databaseValues.map(SQLiteStore.copyValue))
                rows.append(values)
                bytes += values.reduce(0) { $0 + $1.byteCount }
                if bytes >= Self.batchBytes { break }
            }
            return rows
        }
    }

    /// Every row of `table` read once (in no particular order) into an order-independent checksum.
    public func copyChecksum(_ table: CopyTable, columns: [String], types: [CopyColumnType]) async throws -> TableChecksum {
        let query = "SELECT \(Self.selection(table, columns)) FROM \(SQLiteStore.quoted(table.name)) t"
        return try await reader.read { db in
            var checksum = TableChecksum()
            let cursor = try Row.fetchCursor(db, sql: query)
            while let row = try cursor.next() {
                checksum.add(Array(row.databaseValues.map(SQLiteStore.copyValue)), types: types)
            }
            return checksum
        }
    }

    /// The highest id AUTOINCREMENT tables ever handed out (`sqlite_sequence`): the target's id
    /// sequences start past them, so an id of a deleted row is never reused (a dataset id waiting
    /// in `dataset_purges`, a run id a delivery still names).
    public func idHighWaterMarks() async throws -> [String: Int64] {
        try await reader.read { db in
            guard try db.tableExists("sqlite_sequence") else { return [:] }
            var marks: [String: Int64] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT name, seq FROM sqlite_sequence") { marks[row[0]] = row[1] }
            return marks
        }
    }

    /// What the data looks like, cheaply — row counts, largest ids and the latest change times of
    /// the tables a running `serve` writes, in place or not: an interrupted copy resumes only from a
    /// source that has not changed since, and a copy is finished only when the file did not change
    /// while it was read.
    public func copyFingerprint() async throws -> String {
        try await reader.read { db in
            var parts: [String] = []
            let probes: [(table: String, sql: String)] = [
                ("connections", "SELECT count(*), coalesce(max(id), 0), coalesce(max(updated_at), 0), coalesce(sum(length(credentials)), 0) FROM connections"),
                ("sync_variants", "SELECT count(*), coalesce(max(id), 0), coalesce(sum(next_run_at % 1000003), 0), coalesce(sum(length(checkpoint)), 0) + sum(paused) FROM sync_variants"),
                ("datasets", "SELECT count(*), coalesce(max(last_seq), 0), coalesce(max(last_write_at), 0), coalesce(sum(record_count), 0) FROM datasets"),
                ("records", "SELECT count(*), coalesce(max(id), 0), coalesce(max(seq), 0), 0 FROM records"),
                ("runs", "SELECT count(*), coalesce(max(id), 0), coalesce(max(heartbeat_at), 0), coalesce(max(finished_at), 0) FROM runs"),
                ("webhook_deliveries", "SELECT count(*), coalesce(max(id), 0), coalesce(sum(attempts), 0), coalesce(max(ended_at), 0) FROM webhook_deliveries"),
                ("action_runs", "SELECT count(*), coalesce(max(created_at), 0), coalesce(sum(attempts), 0), coalesce(max(finished_at), 0) FROM action_runs"),
                ("connect_sessions", "SELECT count(*), coalesce(max(created_at), 0), coalesce(max(used_at), 0), coalesce(max(oauth_started_at), 0) FROM connect_sessions"),
            ]
            for probe in probes where try db.tableExists(probe.table) {
                let row = try Row.fetchOne(db, sql: probe.sql)
                let values = (0..<4).map { (row?[$0] as Int64?) ?? 0 }
                parts.append("\(probe.table):" + values.map(String.init).joined(separator: ":"))
            }
            return parts.joined(separator: ",")
        }
    }

    static func selection(_ table: CopyTable, _ columns: [String]) -> String {
        columns.map { column -> String in
            if table.name == "records" && column == "payload" {
                // A pruned record keeps `{"id": …}` here as in PostgreSQL; a missing row reads the same.
                return #"coalesce((SELECT p.payload FROM record_payloads p WHERE p.record_id = t.id), json_object('id', t.external_id)) AS payload"#
            }
            if table.name == "records" && column == "seen_generation" {
                // A record a seen range covers is copied stamped with the range's window (the ranges
                // stay behind). Only the dataset's latest generation matters: generations are run
                // ids, so an open window with ranges holds it (an older window's ranges, if any are
                // left, would only stamp records with a generation below the open one's, which
                // changes nothing). A window's ranges are disjoint: the one starting last at or
                // before the record's feed position is the only one that can cover it.
                return """
                    max(t.seen_generation, coalesce((SELECT CASE WHEN (s.hi_seq, s.hi_id) >= (t.seq, t.id) THEN s.generation END FROM seen_ranges s
                        WHERE s.dataset_id = t.dataset_id AND s.generation = (SELECT max(generation) FROM seen_ranges WHERE dataset_id = t.dataset_id)
                            AND (s.lo_seq, s.lo_id) <= (t.seq, t.id)
                        ORDER BY s.lo_seq DESC, s.lo_id DESC LIMIT 1), 0)) AS seen_generation
                    """
            }
            return "t.\(SQLiteStore.quoted(column))"
        }.joined(separator: ", ")
    }
}
