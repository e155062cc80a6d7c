import GRDB
import TributaryCore
import TributaryStore

extension SQLiteStore {
    public func operationsSnapshot() async throws -> OperationsSnapshot {
        try await pool.read { db in
            // Served by the partial indexes runs_queued and runs_running.
            let runs = try Row.fetchAll(
                db,
                sql: """
                    SELECT c.environment, c.provider_config_key, v.sync_name, r.status, count(*) AS n FROM runs r
                    JOIN sync_variants v ON v.id = r.variant_pk JOIN connections c ON c.id = v.connection_pk
                    WHERE r.status IN ('queued', 'running') GROUP BY 1, 2, 3, 4
                    """
            ).map { row in (environment: row[0] as String, integration: row[1] as String, sync: row[2] as String, status: row[3] as String, count: row[4] as Int) }
            let outbox = try Row.fetchAll(
                db,
                sql: "SELECT environment, count(*), min(created_at) FROM webhook_deliveries WHERE status = 'pending' GROUP BY environment ORDER BY environment"
            ).map { row in
                OperationsSnapshot.Outbox(environment: row[0], pending: row[1], oldestPendingAt: (row[2] as Int64?).map(Timestamp.init(microseconds:)))
            }
            return OperationsSnapshot(runs: OperationsSnapshot.activeRuns(runs), outbox: outbox)
        }
    }
}
