import GRDB
import TributaryCore
import TributaryStore

extension SQLiteStore {
    public func pruneHistory(_ cutoffs: HistoryCutoffs, limit: Int) async throws -> Int {
        let limit = max(1, limit)
        return try await pool.write { db in
            // Runs: finished before the cutoff, not a variant's latest run (provider webhook executions
            // aside: they hold no variant state), not one an open webhook task or a pending delivery
            // still points at. Their log lines go first, `limit` at a time (a run may have many); a
            // run goes once it has none left.
            let prunable = """
                SELECT r.id FROM runs r
                WHERE r.finished_at IS NOT NULL AND r.finished_at < ? AND r.status NOT IN ('queued', 'running')
                    AND (r.kind = 'WEBHOOK' OR r.id < (SELECT max(l.id) FROM runs l WHERE l.variant_pk = r.variant_pk AND l.kind <> 'WEBHOOK'))
                    AND r.id NOT IN (SELECT run_id FROM provider_webhook_tasks WHERE status IN ('pending', 'claimed') AND run_id IS NOT NULL)
                    AND r.id NOT IN (SELECT run_id FROM webhook_deliveries WHERE status = 'pending' AND run_id IS NOT NULL)
                ORDER BY r.finished_at LIMIT ?
                """
            try db.execute(
                sql: "DELETE FROM run_logs WHERE id IN (SELECT id FROM run_logs WHERE run_id IN (\(prunable)) LIMIT ?)",
                arguments: [cutoffs.runs.microseconds, limit, limit])
            if db.changesCount == 0 {
                try db.execute(sql: "DELETE FROM runs WHERE id IN (\(prunable))", arguments: [cutoffs.runs.microseconds, limit])
            }
            var removed = db.changesCount
            try db.execute(
                sql: """
                    DELETE FROM webhook_deliveries WHERE id IN (
                        SELECT id FROM webhook_deliveries WHERE status <> 'pending' AND created_at < ? ORDER BY created_at LIMIT ?)
                    """,
                arguments: [cutoffs.deliveries.microseconds, limit])
            removed += db.changesCount
            try db.execute(
                sql: """
                    DELETE FROM provider_webhook_tasks WHERE id IN (
                        SELECT id FROM provider_webhook_tasks WHERE status NOT IN ('pending', 'claimed') AND received_at < ? ORDER BY received_at LIMIT ?)
                    """,
                arguments: [cutoffs.webhookTasks.microseconds, limit])
            removed += db.changesCount
            // Action executions that ended before the runs' cutoff, their log lines first.
            let prunableActions = "SELECT id FROM action_runs WHERE finished_at IS NOT NULL AND finished_at < ? ORDER BY finished_at LIMIT ?"
            try db.execute(
                sql: "DELETE FROM action_logs WHERE id IN (SELECT id FROM action_logs WHERE action_id IN (\(prunableActions)) LIMIT ?)",
                arguments: [cutoffs.runs.microseconds, limit, limit])
            if db.changesCount == 0 {
                try db.execute(sql: "DELETE FROM action_runs WHERE id IN (\(prunableActions))", arguments: [cutoffs.runs.microseconds, limit])
            }
            removed += db.changesCount
            // On-event function runs, by the runs' cutoff.
            try db.execute(
                sql: "DELETE FROM connection_event_runs WHERE id IN (SELECT id FROM connection_event_runs WHERE finished_at < ? ORDER BY finished_at LIMIT ?)",
                arguments: [cutoffs.runs.microseconds, limit])
            removed += db.changesCount
            return removed
        }
    }
}
