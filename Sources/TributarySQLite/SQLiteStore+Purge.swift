import GRDB
import TributaryCore
import TributaryStore

extension SQLiteStore {
    public func purgeRecords(limit: Int) async throws -> Int? {
        try await pool.write { db -> Int? in
            guard let dataset = try Int64.fetchOne(db, sql: "SELECT dataset_id FROM dataset_purges ORDER BY queued_at, dataset_id LIMIT 1") else {
                return nil
            }
            // By rowid through the identity index: one small transaction (the trigger removes the payloads).
            try db.execute(
                sql: "DELETE FROM records WHERE id IN (SELECT id FROM records WHERE dataset_id = ? LIMIT ?)", arguments: [dataset, max(1, limit)])
            let removed = db.changesCount
            if removed < limit { try db.execute(sql: "DELETE FROM dataset_purges WHERE dataset_id = ?", arguments: [dataset]) }
            return removed
        }
    }

    public func pendingPurges() async throws -> Int {
        try await pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM dataset_purges") ?? 0 }
    }
}
