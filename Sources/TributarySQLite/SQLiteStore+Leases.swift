import GRDB
import TributaryCore
import TributaryStore

extension SQLiteStore {
    /// Reads the run the lease names and checks the lease (``RunFence``); throws `unknown_run`,
    /// `run_not_running` or `lease_lost` when the write must not be applied.
    func fence(_ db: Database, _ lease: RunLease, now: Timestamp) throws -> FencedRun {
        let run = try fencedRun(db, lease.runId)
        try RunFence.check(lease, row: run?.fence, now: now.microseconds)
        return run!
    }

    func fencedRun(_ db: Database, _ runId: Int64) throws -> FencedRun? {
        guard
            let row = try Row.fetchOne(
                db,
                sql: """
                    SELECT r.status, r.attempts, r.heartbeat_at + r.lease_seconds * 1000000 AS lease_end, r.kind, r.started_at, r.queued_at,
                        r.deletion_generation, r.results, r.variant_pk, v.connection_pk, v.deletion_generation AS open_window, v.sync_name, v.variant,
                        c.environment, c.provider_config_key, c.connection_id
                    FROM runs r JOIN sync_variants v ON v.id = r.variant_pk JOIN connections c ON c.id = v.connection_pk
                    WHERE r.id = ?
                    """,
                arguments: [runId])
        else { return nil }
        var run = FencedRun(
            id: runId, variantPK: row["variant_pk"], connectionPK: row["connection_pk"],
            variant: VariantRef(
                connection: ConnectionRef(environment: row["environment"], providerConfigKey: row["provider_config_key"], connectionId: row["connection_id"]),
                syncName: row["sync_name"], variant: row["variant"]),
            kind: RunKind(rawValue: row["kind"]) ?? .initial, startedAt: Timestamp(microseconds: row["started_at"]),
            deletionGeneration: row["deletion_generation"], openWindow: row["open_window"], results: row["results"],
            fence: RunFence.Row(status: RunStatus(rawValue: row["status"]) ?? .failed, token: row["attempts"], leaseEnd: row["lease_end"]))
        run.queuedAt = (row["queued_at"] as Int64?).map(Timestamp.init(microseconds:))
        return run
    }

    /// Adds a write's counts to the run's results (in the write's transaction).
    func addResults(_ db: Database, _ run: FencedRun, model: String, _ result: ModelResult) throws {
        guard !result.isEmpty else { return }
        try db.execute(sql: "UPDATE runs SET results = ? WHERE id = ?", arguments: [try run.adding(result, for: model), run.id])
    }

    public func renewLease(_ lease: RunLease) async throws -> LeaseState {
        return try await pool.write { db in
            let now = self.clock()
            try db.execute(
                sql: """
                    UPDATE runs SET heartbeat_at = ?1
                    WHERE id = ?2 AND status = 'running' AND attempts = ?3 AND heartbeat_at + lease_seconds * 1000000 > ?1
                    """,
                arguments: [now.microseconds, lease.runId, lease.token])
            if db.changesCount == 1 { return .held }
            return RunFence.state(of: lease, row: try self.fencedRun(db, lease.runId)?.fence, now: now.microseconds)
        }
    }

    public func leaseState(_ lease: RunLease) async throws -> LeaseState {
        let now = clock()
        return try await pool.read { db in RunFence.state(of: lease, row: try self.fencedRun(db, lease.runId)?.fence, now: now.microseconds) }
    }

    public func appendLog(_ lease: RunLease, level: LogLevel, message: String) async throws {
        try await pool.write { db in
            let now = self.clock()
            _ = try self.fence(db, lease, now: now)
            try self.insertLog(db, run: lease.runId, level: level, message: message, now: now)
        }
    }

    public func saveCheckpoint(_ checkpoint: Checkpoint, for lease: RunLease) async throws {
        // A literal checkpoint is checked here at the latest: an invalid one stored would make the variant unreadable.
        let checkpoint = try checkpoint.validated()
        try await pool.write { db in
            let now = self.clock()
            let run = try self.fence(db, lease, now: now)
            guard run.kind != .webhook else { throw StoreMessages.checkpointInWebhookRun }
            try self.writeCheckpoint(db, checkpoint, run)
        }
    }

    /// Stores `checkpoint` (validated) as the variant's, in the deletion window of `run` (fenced).
    func writeCheckpoint(_ db: Database, _ checkpoint: Checkpoint, _ run: FencedRun) throws {
        try db.execute(
            sql: "UPDATE sync_variants SET checkpoint = ?, checkpoint_generation = ? WHERE id = ?",
            arguments: [checkpoint.json, run.deletionGeneration, run.variantPK])
    }

    public func clearCheckpoint(for lease: RunLease) async throws {
        try await pool.write { db in
            let now = self.clock()
            let run = try self.fence(db, lease, now: now)
            guard run.kind != .webhook else { throw StoreMessages.checkpointInWebhookRun }
            try db.execute(sql: "UPDATE sync_variants SET checkpoint = NULL, checkpoint_generation = NULL WHERE id = ?", arguments: [run.variantPK])
        }
    }

    public func setMetadata(_ metadata: JSONObject, for lease: RunLease) async throws {
        try await changeMetadata(for: lease) { _ in metadata }
    }

    public func updateMetadata(_ metadata: JSONObject, for lease: RunLease) async throws {
        try await changeMetadata(for: lease) { $0.shallowMerging(metadata) }
    }

    private func changeMetadata(for lease: RunLease, _ change: @escaping @Sendable (JSONObject) -> JSONObject) async throws {
        try await pool.write { db in
            let now = self.clock()
            let run = try self.fence(db, lease, now: now)
            try self.changeMetadata(db, connectionPKs: [run.connectionPK], now: now, change)
        }
    }

    public func completeRun(_ lease: RunLease, _ completion: RunCompletion) async throws -> RunRecord {
        return try await pool.write { db in
            let now = self.clock()
            let run = try self.fence(db, lease, now: now)
            let row = try run.completionRow()
            let decision = RunCompletionRule.decide(completion, row: row)
            var results = decision.results
            if let (models, generation) = decision.deleteUnseen {
                for model in models {
                    let deleted = try self.deleteUnseen(db, connectionPK: run.connectionPK, run.variant.dataset(model), generation: generation)
                    if deleted > 0 || results[model] != nil { results[model, default: ModelResult()].deleted += deleted }
                }
            }
            if let update = decision.variant {
                try db.execute(
                    sql: """
                        UPDATE sync_variants SET last_sync_date = ?, deletion_generation = NULL,
                            checkpoint = CASE WHEN ? THEN NULL ELSE checkpoint END,
                            checkpoint_generation = CASE WHEN ? THEN NULL ELSE checkpoint_generation END
                        WHERE id = ?
                        """,
                    arguments: [update.lastSyncDate.microseconds, update.clearCheckpoint, update.clearCheckpoint, run.variantPK])
            }
            try db.execute(
                sql: "UPDATE runs SET status = ?, finished_at = ?, results = ?, error = ?, retryable = ?, retry_after_ms = ? WHERE id = ?",
                arguments: [
                    decision.status.rawValue, now.microseconds, ModelResult.encodeRunResults(results), decision.error, decision.retry != nil,
                    NextRunPlan.milliseconds(decision.retry), run.id,
                ])
            if decision.plansNextRun, let plan = completion.nextRun, let (_, state) = try self.lookupVariant(db, run.variant) {
                let earlier =
                    try RunCompletionRule.countsEarlierFailures(decision)
                    ? Row.fetchAll(
                        db,
                        sql: "SELECT * FROM runs WHERE variant_pk = ? AND id < ? AND kind <> 'WEBHOOK' AND status NOT IN ('queued', 'running') ORDER BY id DESC LIMIT ?",
                        arguments: [run.variantPK, run.id, plan.retry.maxAttempts + 1]
                    ).map { try self.runRecord($0, variant: run.variant) } : []
                let failures = RunCompletionRule.consecutiveRetryableFailures(before: earlier, decision: decision)
                let next = plan.next(for: state, activeSince: run.queuedAt ?? row.startedAt, retry: decision.retry, consecutiveRetryableFailures: failures)
                try db.execute(sql: "UPDATE sync_variants SET next_run_at = ? WHERE id = ?", arguments: [next.microseconds, run.variantPK])
            }
            if decision.keepsVariantScheduled {
                try db.execute(sql: "UPDATE sync_variants SET next_run_at = coalesce(next_run_at, ?) WHERE id = ?", arguments: [now.microseconds, run.variantPK])
            }
            if let reopens = decision.webhookTaskReopens {
                try db.execute(
                    sql: "UPDATE provider_webhook_tasks SET status = ? WHERE run_id = ? AND status = 'claimed'",
                    arguments: [reopens ? "pending" : "done", run.id])
            }
            let finished = try self.fetchRun(db, run.id)!
            try self.queueWebhooks(db, for: finished, variantPK: run.variantPK, plan: completion.webhooks, now: now)
            return finished
        }
    }

    @discardableResult
    public func releaseRun(_ lease: RunLease, reason: String) async throws -> RunRecord {
        return try await pool.write { db in
            let now = self.clock()
            let run = try self.fence(db, lease, now: now)
            if run.kind == .webhook {
                // A provider webhook execution is not queued: it ends, and its task is claimed again.
                try db.execute(
                    sql: "UPDATE runs SET status = 'cancelled', finished_at = ?, error = ? WHERE id = ?", arguments: [now.microseconds, reason, run.id])
                try db.execute(sql: "UPDATE provider_webhook_tasks SET status = 'pending' WHERE run_id = ? AND status = 'claimed'", arguments: [run.id])
                return try self.fetchRun(db, run.id)!
            }
            try db.execute(sql: "UPDATE runs SET status = 'queued', worker = NULL WHERE id = ?", arguments: [run.id])
            try self.insertLog(db, run: run.id, level: .info, message: reason, now: now)
            return try self.fetchRun(db, run.id)!
        }
    }
}
