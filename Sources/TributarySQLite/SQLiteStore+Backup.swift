import Foundation
import GRDB
import TributaryCore
import TributaryStore

/// What a backup wrote, checked by reading the copy.
public struct SQLiteBackupSummary: Sendable, Hashable {
    /// The copy's file.
    public var path: String
    /// Its size in bytes.
    public var bytes: Int64
    /// Rows of the tables an operator recognises, counted in the copy.
    public var counts: [String: Int]
}

extension SQLiteStore {
    /// The tables a backup's summary counts.
    static let backupCountedTables = ["connections", "sync_variants", "records", "runs", "webhook_deliveries"]

    /// Writes a consistent copy of the database to `destination` with SQLite's online backup API
    /// (one step, inside one read transaction of the WAL snapshot), while other connections — a
    /// running `serve` — go on writing. The copy is checked with `PRAGMA integrity_check` before
    /// this returns; a copy that fails it is removed.
    ///
    /// - Throws: `backup_failed` when `destination` exists (nothing is overwritten), or the SQLite error.
    public func backup(to destination: String) throws -> SQLiteBackupSummary {
        guard !FileManager.default.fileExists(atPath: destination) else {
            throw TributaryError(.backupFailed, "'\(destination)' already exists; a backup never overwrites a file — choose a new name.")
        }
        do {
            let copy = try DatabaseQueue(path: destination)
            try pool.backup(to: copy)
            let (check, counts) = try copy.read { db -> (String?, [String: Int]) in
                let check = try String.fetchOne(db, sql: "PRAGMA integrity_check")
                var counts: [String: Int] = [:]
                for table in Self.backupCountedTables where try db.tableExists(table) {
                    counts[table] = try Int.fetchOne(db, sql: "SELECT count(*) FROM \(table)") ?? 0
                }
                return (check, counts)
            }
            try copy.close()
            guard check == "ok" else {
                throw TributaryError(.backupFailed, "The copy failed SQLite's integrity check: \(check ?? "no answer").")
            }
            let size = (try? FileManager.default.attributesOfItem(atPath: destination)[.size] as? NSNumber)?.int64Value ?? 0
            return SQLiteBackupSummary(path: destination, bytes: size, counts: counts)
        } catch {
            for suffix in ["", "-wal", "-shm", "-journal"] { try? FileManager.default.removeItem(atPath: destination + suffix) }
            throw error
        }
    }
}
