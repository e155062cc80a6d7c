import PostgresNIO
import TributaryCore
import TributaryStore

extension PostgresStore {
    /// Reads and locks the run the lease names and checks the lease on the database's clock
    /// (``RunFence``); throws `unknown_run`, `run_not_running` or `lease_lost` when the write must not
    /// be applied. The run row stays locked until the transaction ends, so a transaction ending the
    /// run (cancel, reset, delete, expiry) waits for this write or this write sees it ended — the
    /// lock order is always run rows first, then datasets.
    func fence(_ db: PostgresConnection, _ lease: RunLease) async throws -> FencedRun {
        try await fenced(db, lease, withState: false).run
    }

    /// ``fence(_:_:)`` that also reads the variant's state, in the same round trip, and locks the
    /// variant's row with the run's (run row, then variant row: the order every writer keeps), so
    /// the state is the one the transaction's writes to the variant go with.
    func fenceWithState(_ db: PostgresConnection, _ lease: RunLease) async throws -> (FencedRun, VariantState) {
        let (run, row) = try await fenced(db, lease, withState: true)
        return (run, try variantState(run.variant, row))
    }

    /// The run the lease names, locked and checked (``RunFence``), with the row it was read from.
    private func fenced(_ db: PostgresConnection, _ lease: RunLease, withState: Bool) async throws -> (run: FencedRun, row: PostgresRandomAccessRow) {
        let (row, now) = try await fencedRow(db, lease.runId, lock: true, withState: withState)
        let run = try row.map(fencedRun)
        try RunFence.check(lease, row: run?.fence, now: now)
        guard let run, let row else { throw StoreMessages.unknownRun(lease.runId) }
        return (run, row)
    }

    /// The run (nil when it does not exist) and the lease clock's now.
    func fencedRun(_ db: PostgresConnection, _ runId: Int64, lock: Bool) async throws -> (FencedRun?, Int64) {
        let (row, now) = try await fencedRow(db, runId, lock: lock, withState: false)
        return (try row.map(fencedRun), now)
    }

    /// The row ``fencedRun(_:)`` reads (nil when the run does not exist), with the variant's state
    /// columns when `withState`, and the lease clock's now.
    private func fencedRow(_ db: PostgresConnection, _ runId: Int64, lock: Bool, withState: Bool) async throws -> (PostgresRandomAccessRow?, Int64) {
        let offset = leaseClockOffset()
        guard
            let row = try await db.one(
                """
                SELECT \(unescaped: Self.fenceColumns), \(unescaped: Self.databaseNow) + \(offset) AS lease_now
                    \(unescaped: withState ? ", " + Self.fencedStateColumns : "")
                \(unescaped: Self.fenceFrom)
                WHERE r.id = \(runId) \(unescaped: lock ? (withState ? "FOR UPDATE OF r, v" : "FOR UPDATE OF r") : "")
                """, logger)
        else {
            let now = try await db.one("SELECT \(unescaped: Self.databaseNow) + \(offset) AS lease_now", logger)?.int64("lease_now") ?? 0
            return (nil, now)
        }
        return (row, try row.int64("lease_now"))
    }

    /// The columns of a fence row (``fencedRun(_:)`` reads them), but the lease clock's now.
    static let fenceColumns = """
        r.id, r.status, r.attempts, r.heartbeat_at + r.lease_seconds * 1000000 AS lease_end, r.kind, r.started_at, r.queued_at,
            r.deletion_generation AS run_generation, r.results, r.variant_pk, v.connection_pk, v.deletion_generation, v.sync_name, v.variant,
            c.environment, c.provider_config_key, c.connection_id
        """
    /// The tables a fence row comes from (`r`, `v`, `c`).
    static let fenceFrom = "FROM runs r JOIN sync_variants v ON v.id = r.variant_pk JOIN connections c ON c.id = v.connection_pk"

    /// ``fence(_:_:)`` and the dataset a fenced run writes `model` to in one round trip: the run,
    /// locked and checked, and the dataset, found and locked or created on the model's first write,
    /// in the order every writer locks them (run row, then dataset row). Should the run be lost, the
    /// dataset row just created or locked goes with the transaction the failed check rolls back.
    func fenceForWrite(_ db: PostgresConnection, _ lease: RunLease, model: String) async throws -> (FencedRun, DatasetHead) {
        let offset = leaseClockOffset()
        let row = try await db.one(
            """
            WITH f AS (
                SELECT \(unescaped: Self.fenceColumns), \(unescaped: Self.databaseNow) + \(offset) AS lease_now
                \(unescaped: Self.fenceFrom)
                WHERE r.id = \(lease.runId) FOR UPDATE OF r),
            found AS (
                SELECT d.id, d.last_seq, d.last_write_at, d.record_count FROM datasets d JOIN f ON d.connection_pk = f.connection_pk AND d.variant = f.variant
                WHERE d.model = \(model) FOR UPDATE OF d),
            created AS (
                INSERT INTO datasets(connection_pk, sync_name, model, variant, last_seq)
                SELECT f.connection_pk, f.sync_name, \(model), f.variant, (SELECT value FROM store_meta WHERE key = 'seq_floor') FROM f
                WHERE NOT EXISTS (SELECT 1 FROM found)
                ON CONFLICT (connection_pk, model, variant) DO NOTHING RETURNING id, last_seq, last_write_at, record_count),
            head AS (SELECT * FROM found UNION ALL SELECT * FROM created)
            SELECT f.*, head.id AS dataset_id, head.last_seq, head.last_write_at, head.record_count FROM f LEFT JOIN head ON true
            """, logger)
        guard let row else {
            // No such run: the fence's own read fails with the reason.
            _ = try await fence(db, lease)
            throw StoreMessages.unknownRun(lease.runId)
        }
        let run = try fencedRun(row)
        try RunFence.check(lease, row: run.fence, now: try row.int64("lease_now"))
        guard let id = try row.optionalInt64("dataset_id") else {
            // Neither found nor created: another writer created it at the same moment (its insert
            // has committed since): read and lock it now.
            guard let head = try await findDataset(db, connectionPK: run.connectionPK, model: model, variant: run.variant.variant) else {
                throw TributaryError(.unknownConnection, "Dataset of model '\(model)' could not be created.")
            }
            return (run, head)
        }
        return (
            run,
            DatasetHead(
                id: id, lastSequence: try row.int64("last_seq"), lastWriteAt: try row.int64("last_write_at"), recordCount: try row.int64("record_count"))
        )
    }

    /// The variant's state columns a fence row lacks (``variantState(_:_:)`` reads them with the
    /// fence's `deletion_generation`, `sync_name` and `variant`).
    static let fencedStateColumns = "v.public_id, v.paused, v.frequency, v.next_run_at, v.last_sync_date, v.checkpoint, v.checkpoint_generation, v.created_at"

    private func fencedRun(_ row: PostgresRandomAccessRow) throws -> FencedRun {
        var run = FencedRun(
            id: try row.int64("id"), variantPK: try row.int64("variant_pk"), connectionPK: try row.int64("connection_pk"),
            variant: try variantRef(row),
            kind: RunKind(rawValue: try row.string("kind")) ?? .initial, startedAt: Timestamp(microseconds: try row.int64("started_at")),
            deletionGeneration: try row.optionalInt64("run_generation"), openWindow: try row.optionalInt64("deletion_generation"),
            results: try row.string("results"),
            fence: RunFence.Row(
                status: RunStatus(rawValue: try row.string("status")) ?? .failed, token: try row.int64("attempts"), leaseEnd: try row.int64("lease_end")))
        run.queuedAt = try row.optionalInt64("queued_at").map(Timestamp.init(microseconds:))
        return run
    }

    /// Adds a write's counts to the run's results (in the write's transaction; the run row is locked).
    func addResults(_ db: PostgresConnection, _ run: FencedRun, model: String, _ result: ModelResult) async throws {
        guard !result.isEmpty else { return }
        try await db.query("UPDATE runs SET results = \(try run.adding(result, for: model)) WHERE id = \(run.id)", logger: logger)
    }

    public func renewLease(_ lease: RunLease) async throws -> LeaseState {
        let offset = leaseClockOffset()
        return try await read { db in
            let renewed = try await db.count(
                """
                UPDATE runs SET heartbeat_at = \(unescaped: Self.databaseNow) + \(offset)
                WHERE id = \(lease.runId) AND status = 'running' AND attempts = \(lease.token)
                    AND heartbeat_at + lease_seconds * 1000000 > \(unescaped: Self.databaseNow) + \(offset)
                RETURNING id
                """, self.logger)
            if renewed == 1 { return .held }
            let (run, now) = try await self.fencedRun(db, lease.runId, lock: false)
            return RunFence.state(of: lease, row: run?.fence, now: now)
        }
    }

    public func leaseState(_ lease: RunLease) async throws -> LeaseState {
        try await read { db in
            let (run, now) = try await self.fencedRun(db, lease.runId, lock: false)
            return RunFence.state(of: lease, row: run?.fence, now: now)
        }
    }

    public func appendLog(_ lease: RunLease, level: LogLevel, message: String) async throws {
        let now = clock()
        try await transaction { db in
            _ = try await self.fence(db, lease)
            try await self.insertLog(db, run: lease.runId, level: level, message: message, now: now)
        }
    }

    public func saveCheckpoint(_ checkpoint: Checkpoint, for lease: RunLease) async throws {
        // A literal checkpoint is checked here at the latest: an invalid one stored would make the variant unreadable.
        let checkpoint = try checkpoint.validated()
        try await transaction { db in
            let run = try await self.fence(db, lease)
            guard run.kind != .webhook else { throw StoreMessages.checkpointInWebhookRun }
            try await self.writeCheckpoint(db, checkpoint, run)
        }
    }

    /// Stores `checkpoint` (validated) as the variant's, in the deletion window of `run` (fenced).
    func writeCheckpoint(_ db: PostgresConnection, _ checkpoint: Checkpoint, _ run: FencedRun) async throws {
        let json = checkpoint.json
        try await db.query(
            "UPDATE sync_variants SET checkpoint = \(json), checkpoint_generation = \(run.deletionGeneration) WHERE id = \(run.variantPK)",
            logger: logger)
    }

    public func clearCheckpoint(for lease: RunLease) async throws {
        try await transaction { db in
            let run = try await self.fence(db, lease)
            guard run.kind != .webhook else { throw StoreMessages.checkpointInWebhookRun }
            try await db.query(
                "UPDATE sync_variants SET checkpoint = NULL, checkpoint_generation = NULL WHERE id = \(run.variantPK)", logger: self.logger)
        }
    }

    public func setMetadata(_ metadata: JSONObject, for lease: RunLease) async throws {
        try await changeMetadata(for: lease) { _ in metadata }
    }

    public func updateMetadata(_ metadata: JSONObject, for lease: RunLease) async throws {
        try await changeMetadata(for: lease) { $0.shallowMerging(metadata) }
    }

    private func changeMetadata(for lease: RunLease, _ change: @escaping @Sendable (JSONObject) -> JSONObject) async throws {
        let now = clock()
        try await transaction { db in
            let run = try await self.fence(db, lease)
            try await self.changeMetadata(db, connectionPKs: [run.connectionPK], now: now, change)
        }
    }

    public func completeRun(_ lease: RunLease, _ completion: RunCompletion) async throws -> RunRecord {
        // What the run saved is what its datasets hold, whatever the outcome (StoredHashes).
        defer { storedHashes.finish(lease) }
        return try await transaction { db in
            // The run row lock: expiry (which skips locked rows), cancels, resets and deletes wait for this outcome.
            let (run, state) = try await self.fenceWithState(db, lease)
            let now = self.clock()
            let row = try run.completionRow()
            let decision = RunCompletionRule.decide(completion, row: row)
            var results = decision.results
            if let (models, generation) = decision.deleteUnseen {
                for model in models {
                    let deleted = try await self.deleteUnseen(db, connectionPK: run.connectionPK, run.variant.dataset(model), generation: generation)
                    if deleted > 0 || results[model] != nil { results[model, default: ModelResult()].deleted += deleted }
                }
            }
            // What the variant's row gets: its sync date and window closed, its next run — in one statement.
            var variantChanges: [String] = []
            if let update = decision.variant {
                variantChanges.append("last_sync_date = \(update.lastSyncDate.microseconds), deletion_generation = NULL")
                if update.clearCheckpoint { variantChanges.append("checkpoint = NULL, checkpoint_generation = NULL") }
            }
            if decision.plansNextRun, let plan = completion.nextRun {
                var earlier: [RunRecord] = []
                if RunCompletionRule.countsEarlierFailures(decision) {
                    earlier = try await db.all(
                        """
                        SELECT * FROM runs WHERE variant_pk = \(run.variantPK) AND id < \(run.id) AND kind <> 'WEBHOOK' AND status NOT IN ('queued', 'running')
                        ORDER BY id DESC LIMIT \(Int64(plan.retry.maxAttempts + 1))
                        """, self.logger
                    ).map { try self.runRecord($0, variant: run.variant) }
                }
                let failures = RunCompletionRule.consecutiveRetryableFailures(before: earlier, decision: decision)
                let next = plan.next(for: state, activeSince: run.queuedAt ?? row.startedAt, retry: decision.retry, consecutiveRetryableFailures: failures)
                variantChanges.append("next_run_at = \(next.microseconds)")
            } else if decision.keepsVariantScheduled {
                variantChanges.append("next_run_at = coalesce(next_run_at, \(now.microseconds))")
            }
            if !variantChanges.isEmpty {
                // Numbers of this store's own, written as literals.
                try await db.query(
                    PostgresQuery(unsafeSQL: "UPDATE sync_variants SET \(variantChanges.joined(separator: ", ")) WHERE id = \(run.variantPK)"),
                    logger: self.logger)
            }
            guard
                let finishedRow = try await db.one(
                    """
                    UPDATE runs SET status = \(decision.status.rawValue), finished_at = \(now.microseconds), results = \(ModelResult.encodeRunResults(results)),
                        error = \(decision.error), retryable = \(decision.retry != nil), retry_after_ms = \(NextRunPlan.milliseconds(decision.retry))
                    WHERE id = \(run.id) RETURNING *
                    """, self.logger)
            else { throw StoreMessages.unknownRun(run.id) }
            let finished = try self.runRecord(finishedRow, variant: run.variant)
            if let reopens = decision.webhookTaskReopens {
                try await db.query(
                    "UPDATE provider_webhook_tasks SET status = \(reopens ? "pending" : "done") WHERE run_id = \(run.id) AND status = 'claimed'",
                    logger: self.logger)
            }
            try await self.queueWebhooks(db, for: finished, variantPK: run.variantPK, plan: completion.webhooks, now: now)
            return finished
        }
    }

    @discardableResult
    public func releaseRun(_ lease: RunLease, reason: String) async throws -> RunRecord {
        defer { storedHashes.finish(lease) }
        return try await transaction { db in
            let run = try await self.fence(db, lease)
            let now = self.clock()
            if run.kind == .webhook {
                // A provider webhook execution is not queued: it ends, and its task is claimed again.
                try await db.query(
                    "UPDATE runs SET status = 'cancelled', finished_at = \(now.microseconds), error = \(reason) WHERE id = \(run.id)", logger: self.logger)
                try await db.query(
                    "UPDATE provider_webhook_tasks SET status = 'pending' WHERE run_id = \(run.id) AND status = 'claimed'", logger: self.logger)
                return try await self.fetchRun(db, run.id)!
            }
            try await db.query("UPDATE runs SET status = 'queued', worker = NULL WHERE id = \(run.id)", logger: self.logger)
            try await self.insertLog(db, run: run.id, level: .info, message: reason, now: now)
            return try await self.fetchRun(db, run.id)!
        }
    }
}
