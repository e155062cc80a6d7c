import PostgresNIO
import TributaryCore
import TributaryStore

extension PostgresStore {
    public func purgeRecords(limit: Int) async throws -> Int? {
        try await transaction { db -> Int? in
            // One purger at a time per dataset: another process's purge of the same dataset is skipped.
            guard
                let dataset = try await db.one(
                    "SELECT dataset_id FROM dataset_purges ORDER BY queued_at, dataset_id LIMIT 1 FOR UPDATE SKIP LOCKED", self.logger)?.int64("dataset_id")
            else { return nil }
            let removed = try await db.count(
                """
                DELETE FROM records WHERE dataset_id = \(dataset)
                    AND external_id IN (SELECT external_id FROM records WHERE dataset_id = \(dataset) LIMIT \(Int64(max(1, limit))))
                RETURNING 1
                """, self.logger)
            if removed < limit { try await db.query("DELETE FROM dataset_purges WHERE dataset_id = \(dataset)", logger: self.logger) }
            return removed
        }
    }

    public func pendingPurges() async throws -> Int {
        try await read { db in try await db.one("SELECT count(*) AS n FROM dataset_purges", self.logger)?.int("n") ?? 0 }
    }
}
