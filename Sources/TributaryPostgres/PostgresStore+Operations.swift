import PostgresNIO
import TributaryCore
import TributaryStore

extension PostgresStore {
    public func operationsSnapshot() async throws -> OperationsSnapshot {
        try await read { db in
            let runs = try await db.all(
                """
                SELECT c.environment, c.provider_config_key, v.sync_name, r.status, count(*) AS n FROM runs r
                JOIN sync_variants v ON v.id = r.variant_pk JOIN connections c ON c.id = v.connection_pk
                WHERE r.status IN ('queued', 'running') GROUP BY 1, 2, 3, 4
                """, self.logger
            ).map { row in
                (environment: try row.string("environment"), integration: try row.string("provider_config_key"), sync: try row.string("sync_name"),
                 status: try row.string("status"), count: try row.int("n"))
            }
            let outbox = try await db.all(
                """
                SELECT environment, count(*) AS n, min(created_at) AS oldest FROM webhook_deliveries WHERE status = 'pending'
                GROUP BY environment ORDER BY environment
                """, self.logger
            ).map { row in
                OperationsSnapshot.Outbox(
                    environment: try row.string("environment"), pending: try row.int("n"), oldestPendingAt: try row.optionalInt64("oldest").map(Timestamp.init(microseconds:)))
            }
            return OperationsSnapshot(runs: OperationsSnapshot.activeRuns(runs), outbox: outbox)
        }
    }
}
