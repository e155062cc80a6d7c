import Foundation
#if canImport(Glibc)
import Glibc
#endif
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
    /// running `serve` — go on writing. The copy is written to a new private file beside the
    /// destination (mode 0600: it holds sealed credentials and customers' records), checked with
    /// `PRAGMA integrity_check`, and only then linked into place — so `destination` is either absent
    /// or a whole, checked copy; a copy that fails the check, or is interrupted, is never given its name.
    ///
    /// - Throws: `backup_failed` when `destination` exists (nothing is overwritten), or the SQLite error.
    public func backup(to destination: String) throws -> SQLiteBackupSummary {
        guard !FileManager.default.fileExists(atPath: destination) else {
            throw TributaryError(.backupFailed, "'\(destination)' already exists; a backup never overwrites a file — choose a new name.")
        }
        let partial = destination + ".partial-\(getpid())"
        let descriptor = open(partial, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw TributaryError(.backupFailed, "Cannot create '\(partial)': \(String(cString: strerror(errno))).")
        }
        _ = Glibc.close(descriptor)
        func removePartial() {
            for suffix in ["", "-wal", "-shm", "-journal"] { try? FileManager.default.removeItem(atPath: partial + suffix) }
        }
        do {
            let copy = try DatabaseQueue(path: partial)
            try pool.backup(to: copy)
            let (check, counts) = try copy.read { db -> (String?, [String: Int]) in
                let check = try String.fetchOne(db, sql: "PRAGMA integrity_check")
                var counts: [String: Int] = [:]
                for table in Self.backupCountedTables where try db.tableExists(table) {
                    counts[table] = try Int.fetchOne(db, sql: "SELECT count(*) FROM \(table)") ?? 0
                }
                return (check, counts)
            }
            // Folds the copy's WAL into the file, so the one file is the whole backup.
            try copy.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
            try copy.close()
            guard check == "ok" else {
                throw TributaryError(.backupFailed, "The copy failed SQLite's integrity check: \(check ?? "no answer").")
            }
            // link(2) fails when the name exists: a file that appeared meanwhile is not overwritten either.
            guard link(partial, destination) == 0 else {
                throw TributaryError(.backupFailed, "Cannot name the copy '\(destination)': \(String(cString: strerror(errno))).")
            }
            removePartial()
            let size = (try? FileManager.default.attributesOfItem(atPath: destination)[.size] as? NSNumber)?.int64Value ?? 0
            return SQLiteBackupSummary(path: destination, bytes: size, counts: counts)
        } catch {
            removePartial()
            throw error
        }
    }
}
