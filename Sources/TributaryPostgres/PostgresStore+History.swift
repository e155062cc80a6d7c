import PostgresNIO
import TributaryCore
import TributaryStore

extension PostgresStore {
    public func pruneHistory(_ cutoffs: HistoryCutoffs, limit: Int) async throws -> Int {
        let limit = Int64(max(1, limit))
        return try await transaction { db in
            // Runs: finished before the cutoff, not a variant's latest run (provider webhook executions
            // aside: they hold no variant state), not one an open webhook task or a pending delivery
            // still points at. Their log lines go first, `limit` at a time (a run may have many); a run
            // goes once it has none left. Rows another transaction holds are left for the next round.
            // Only integers of this process are spliced in (the same text is used twice).
            let prunable = """
                SELECT r.id FROM runs r
                WHERE r.finished_at IS NOT NULL AND r.finished_at < \(cutoffs.runs.microseconds) AND r.status NOT IN ('queued', 'running')
                    AND (r.kind = 'WEBHOOK' OR r.id < (SELECT max(l.id) FROM runs l WHERE l.variant_pk = r.variant_pk AND l.kind <> 'WEBHOOK'))
                    AND NOT EXISTS (SELECT 1 FROM provider_webhook_tasks t WHERE t.run_id = r.id AND t.status IN ('pending', 'claimed'))
                    AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.run_id = r.id AND d.status = 'pending')
                ORDER BY r.finished_at LIMIT \(limit)
                """
            var removed = try await db.count(
                """
                DELETE FROM run_logs WHERE id IN (
                    SELECT id FROM run_logs WHERE run_id IN (\(unescaped: prunable)) LIMIT \(limit) FOR UPDATE SKIP LOCKED)
                RETURNING id
                """, self.logger)
            if removed == 0 {
                removed = try await db.count(
                    "DELETE FROM runs WHERE id IN (\(unescaped: prunable) FOR UPDATE OF r SKIP LOCKED) RETURNING id", self.logger)
            }
            removed += try await db.count(
                """
                DELETE FROM webhook_deliveries WHERE id IN (
                    SELECT id FROM webhook_deliveries WHERE status <> 'pending' AND created_at < \(cutoffs.deliveries.microseconds)
                    ORDER BY created_at LIMIT \(limit) FOR UPDATE SKIP LOCKED)
                RETURNING id
                """, self.logger)
            removed += try await db.count(
                """
                DELETE FROM provider_webhook_tasks WHERE id IN (
                    SELECT id FROM provider_webhook_tasks WHERE status NOT IN ('pending', 'claimed') AND received_at < \(cutoffs.webhookTasks.microseconds)
                    ORDER BY received_at LIMIT \(limit) FOR UPDATE SKIP LOCKED)
                RETURNING id
                """, self.logger)
            // Action executions that ended before the runs' cutoff, their log lines first.
            let prunableActions = """
                SELECT id FROM action_runs WHERE finished_at IS NOT NULL AND finished_at < \(cutoffs.runs.microseconds) ORDER BY finished_at LIMIT \(limit)
                """
            let actionLogs = try await db.count(
                """
                DELETE FROM action_logs WHERE id IN (
                    SELECT id FROM action_logs WHERE action_id IN (\(unescaped: prunableActions)) LIMIT \(limit) FOR UPDATE SKIP LOCKED)
                RETURNING id
                """, self.logger)
            removed += actionLogs
            if actionLogs == 0 {
                removed += try await db.count(
                    "DELETE FROM action_runs WHERE id IN (\(unescaped: prunableActions) FOR UPDATE SKIP LOCKED) RETURNING id", self.logger)
            }
            // On-event function runs, by the runs' cutoff.
            removed += try await db.count(
                """
                DELETE FROM connection_event_runs WHERE id IN (
                    SELECT id FROM connection_event_runs WHERE finished_at < \(cutoffs.runs.microseconds) ORDER BY finished_at LIMIT \(limit) FOR UPDATE SKIP LOCKED)
                RETURNING id
                """, self.logger)
            return removed
        }
    }
}
