import PostgresNIO
import TributaryCore
import TributaryStore

extension PostgresStore {
    public func startRun(_ variant: VariantRef, _ start: RunStart) async throws -> StartedRun {
        let now = clock()
        return try await transaction { db in
            try await self.lock(db, .runQueue)
            let (variantPK, state) =
                start.createsVariant ? try await self.ensureVariantRow(db, variant, now: now) : try await self.requireVariant(db, variant)
            try await self.refuseIfActive(db, variantPK: variantPK, variant, now: now)
            let runId = try await self.insertRun(db, variantPK: variantPK, status: .running, kind: .initial, now: now, leaseSeconds: start.leaseSeconds)
            return try await self.begin(db, run: runId, variantPK: variantPK, state: state, tracksDeletes: start.tracksDeletes, now: now)
        }
    }

    @discardableResult
    public func enqueueRuns(_ variants: [VariantRef]) async throws -> [RunRecord] {
        let now = clock()
        return try await transaction { db in
            try await self.lock(db, .runQueue)
            var queued: [RunRecord] = []
            for variant in variants {
                let (variantPK, _) = try await self.requireVariant(db, variant)
                try await self.refuseIfActive(db, variantPK: variantPK, variant, now: now)
                let id = try await self.insertRun(db, variantPK: variantPK, status: .queued, kind: .initial, now: now, leaseSeconds: 0)
                queued.append(try await self.fetchRun(db, id)!)
            }
            return queued
        }
    }

    public func enqueueScheduledRuns(_ variants: [VariantRef], dueAt due: Timestamp) async throws -> [VariantRef] {
        guard !variants.isEmpty else { return [] }
        let now = clock()
        return try await transaction { db in
            try await self.lock(db, .runQueue)
            var queued: [VariantRef] = []
            for variant in variants {
                guard let (variantPK, state) = try? await self.requireVariant(db, variant), !state.paused,
                    let next = state.nextRunAt, next.microseconds <= due.microseconds
                else { continue }
                do {
                    try await self.refuseIfActive(db, variantPK: variantPK, variant, now: now)
                } catch let error as TributaryError where error.code == .syncRunning {
                    continue
                }
                _ = try await self.insertRun(db, variantPK: variantPK, status: .queued, kind: .initial, now: now, leaseSeconds: 0)
                queued.append(variant)
            }
            return queued
        }
    }

    public func claimRun(_ claim: RunClaim) async throws -> ClaimedRun? {
        let now = clock()
        return try await transaction { db in
            // One claim at a time across all processes: the per-connection count below sees every running run.
            try await self.lock(db, .runQueue)
            while true {
                // The fairest claimable run: fewest running runs on its connection (across all workers), oldest first.
                guard
                    let row = try await db.one(
                        """
                        WITH load AS (
                            SELECT v.connection_pk AS connection_pk, count(*) AS running
                            FROM runs r JOIN sync_variants v ON v.id = r.variant_pk
                            WHERE r.status = 'running' GROUP BY v.connection_pk)
                        SELECT q.id, q.variant_pk FROM runs q
                        JOIN sync_variants v ON v.id = q.variant_pk
                        LEFT JOIN load ON load.connection_pk = v.connection_pk
                        WHERE q.status = 'queued' AND coalesce(load.running, 0) < \(Int64(claim.maxRunsPerConnection))
                        ORDER BY coalesce(load.running, 0), q.id LIMIT 1
                        """, self.logger)
                else { return nil }
                let runId = try row.int64("id")
                let variantPK = try row.int64("variant_pk")
                let variant = try await self.variantRef(db, variantPK: variantPK)
                guard let tracksDeletes = claim.tracksDeletes(variant) else {
                    try await db.query(
                        """
                        UPDATE runs SET status = 'failed', finished_at = \(now.microseconds), error = \(StoreMessages.syncNoLongerConfigured(variant))
                        WHERE id = \(runId)
                        """, logger: self.logger)
                    continue
                }
                let (_, state) = try await self.requireVariant(db, variant)
                try await db.query(
                    """
                    UPDATE runs SET status = 'running', started_at = \(now.microseconds), heartbeat_at = \(now.microseconds),
                        lease_seconds = \(claim.leaseSeconds), worker = \(claim.worker) WHERE id = \(runId)
                    """, logger: self.logger)
                // No next run is planned while this one runs: the worker plans it when the run ends.
                try await db.query("UPDATE sync_variants SET next_run_at = NULL WHERE id = \(variantPK)", logger: self.logger)
                let started = try await self.begin(db, run: runId, variantPK: variantPK, state: state, tracksDeletes: tracksDeletes, now: now)
                return ClaimedRun(variant: variant, started: started)
            }
        }
    }

    public func activeRun(of variant: VariantRef) async throws -> RunRecord? {
        try await read { db in
            guard let (pk, _) = try await self.lookupVariant(db, variant),
                let row = try await db.one(
                    "SELECT * FROM runs WHERE variant_pk = \(pk) AND status IN ('queued', 'running') AND kind <> 'WEBHOOK'", self.logger)
            else { return nil }
            return try self.runRecord(row, variant: variant)
        }
    }

    @discardableResult
    public func requestCancel(of variant: VariantRef, reason: String) async throws -> RunRecord? {
        let now = clock()
        return try await transaction { db in
            try await self.lock(db, .runQueue)
            guard let (pk, _) = try await self.lookupVariant(db, variant),
                let row = try await db.one(
                    "SELECT id, status FROM runs WHERE variant_pk = \(pk) AND status IN ('queued', 'running') AND kind <> 'WEBHOOK'", self.logger)
            else { return nil }
            let id = try row.int64("id")
            if try row.string("status") == RunStatus.queued.rawValue {
                try await db.query(
                    "UPDATE runs SET status = 'cancelled', finished_at = \(now.microseconds), error = \(reason) WHERE id = \(id)", logger: self.logger)
            } else {
                try await db.query("UPDATE runs SET cancel_requested = true WHERE id = \(id)", logger: self.logger)
            }
            return try await self.fetchRun(db, id)
        }
    }

    public func shouldStop(run: Int64) async throws -> Bool {
        try await read { db in
            guard let row = try await db.one("SELECT status, cancel_requested FROM runs WHERE id = \(run)", self.logger) else { return true }
            return try row.string("status") != RunStatus.running.rawValue || row.bool("cancel_requested")
        }
    }

    public func expireRuns() async throws -> [RunRecord] {
        let now = clock()
        return try await transaction { db in
            try await self.lock(db, .runQueue)
            // A run row locked by its finishing transaction is skipped: that run is ending, not dead.
            let rows = try await db.all(
                """
                SELECT r.id, r.variant_pk, r.kind, v.paused FROM runs r JOIN sync_variants v ON v.id = r.variant_pk
                WHERE r.status = 'running' AND r.heartbeat_at + r.lease_seconds * 1000000 <= \(now.microseconds)
                ORDER BY r.id FOR UPDATE OF r SKIP LOCKED
                """, self.logger)
            var expired: [RunRecord] = []
            for row in rows {
                let id = try row.int64("id")
                guard try await self.markExpired(db, run: id, now: now) else { continue }
                expired.append(try await self.fetchRun(db, id)!)
                let variantPK = try row.int64("variant_pk")
                if try row.string("kind") == RunKind.webhook.rawValue {
                    // A provider webhook execution: its task is claimed again (``claimProviderWebhook``), no sync run is queued.
                    continue
                } else if try row.bool("paused") {
                    // Its worker will never plan the next run: when started again, the variant runs at once.
                    try await db.query(
                        "UPDATE sync_variants SET next_run_at = coalesce(next_run_at, \(now.microseconds)) WHERE id = \(variantPK)",
                        logger: self.logger)
                } else {
                    _ = try await self.insertRun(db, variantPK: variantPK, status: .queued, kind: .initial, now: now, leaseSeconds: 0)
                }
            }
            return expired
        }
    }

    /// Throws `sync_running` when the variant has a queued run or a running one with a live lease; a
    /// running run whose lease ran out is marked expired instead.
    private func refuseIfActive(_ db: PostgresConnection, variantPK: Int64, _ variant: VariantRef, now: Timestamp) async throws {
        let active = try await db.all(
            """
            SELECT id, status, heartbeat_at, lease_seconds FROM runs
            WHERE variant_pk = \(variantPK) AND status IN ('queued', 'running') AND kind <> 'WEBHOOK'
            """, logger)
        for row in active {
            let id = try row.int64("id")
            let queued = try row.string("status") == RunStatus.queued.rawValue
            let leaseEnd = try row.int64("heartbeat_at") + row.int64("lease_seconds") * 1_000_000
            if queued || leaseEnd > now.microseconds {
                throw StoreMessages.syncRunning(variant, queued: queued, run: id)
            }
            // False when it finished meanwhile (its transaction committed while this one waited): the variant is free either way.
            try await markExpired(db, run: id, now: now)
        }
    }

    /// Marks a running run expired; false when it is no longer running.
    @discardableResult
    func markExpired(_ db: PostgresConnection, run: Int64, now: Timestamp) async throws -> Bool {
        try await db.count(
            """
            UPDATE runs SET status = 'expired', finished_at = \(now.microseconds), error = \(StoreMessages.leaseExpired)
            WHERE id = \(run) AND status = 'running' RETURNING id
            """, logger) == 1
    }

    func insertRun(_ db: PostgresConnection, variantPK: Int64, status: RunStatus, kind: RunKind, now: Timestamp, leaseSeconds: Int64) async throws
        -> Int64
    {
        do {
            return try await db.one(
                """
                INSERT INTO runs(variant_pk, status, kind, started_at, heartbeat_at, lease_seconds)
                VALUES (\(variantPK), \(status.rawValue), \(kind.rawValue), \(now.microseconds), \(now.microseconds), \(leaseSeconds)) RETURNING id
                """, logger)!.int64("id")
        } catch where Self.isUniqueViolation(error) {
            // `runs_active`: another run of this variant became active first (the transaction is aborted now, so no lookup).
            throw TributaryError(.syncRunning, "Another run of this variant became active at the same moment.")
        }
    }

    /// Records how a run that has just become `running` starts (``StartedRun/begin(run:startedAt:state:tracksDeletes:)``).
    private func begin(_ db: PostgresConnection, run runId: Int64, variantPK: Int64, state: VariantState, tracksDeletes: Bool, now: Timestamp)
        async throws -> StartedRun
    {
        let started = StartedRun.begin(run: runId, startedAt: now, state: state, tracksDeletes: tracksDeletes)
        let generation = started.deletionGeneration
        if generation != state.deletionGeneration {
            try await db.query("UPDATE sync_variants SET deletion_generation = \(generation) WHERE id = \(variantPK)", logger: logger)
        }
        try await db.query("UPDATE runs SET kind = \(started.kind.rawValue), deletion_generation = \(generation) WHERE id = \(runId)", logger: logger)
        return started
    }

    public func heartbeat(run: Int64) async throws {
        let now = clock()
        try await read { db in
            try await db.query("UPDATE runs SET heartbeat_at = \(now.microseconds) WHERE id = \(run) AND status = 'running'", logger: self.logger)
        }
    }

    public func appendLog(run: Int64, level: LogLevel, message: String) async throws {
        let now = clock()
        try await read { db in
            try await db.query(
                "INSERT INTO run_logs(run_id, at, level, message) VALUES (\(run), \(now.microseconds), \(level.rawValue), \(message))",
                logger: self.logger)
        }
    }

    public func completeRun(_ run: Int64, _ completion: RunCompletion) async throws -> RunRecord {
        let now = clock()
        return try await transaction { db in
            // The run row lock: expiry (which skips locked rows) and cancels wait for this outcome.
            guard
                let row = try await db.one(
                    "SELECT variant_pk, status, kind, deletion_generation, started_at FROM runs WHERE id = \(run) FOR UPDATE", self.logger)
            else {
                throw TributaryError(.unknownSync, "Run \(run) does not exist.")
            }
            let status = try row.string("status")
            guard status == RunStatus.running.rawValue else { throw StoreMessages.runNotRunning(run, status: status) }
            let variantPK = try row.int64("variant_pk")
            if try row.string("kind") == RunKind.webhook.rawValue {
                return try await self.completeWebhookRun(db, run, completion, now: now)
            }
            let startedAt = try row.int64("started_at")
            let generation = try row.optionalInt64("deletion_generation")
            var results = completion.results
            let (finalStatus, errorMessage) = completion.outcome.finalStatus
            if finalStatus == .succeeded {
                if let generation, !completion.deleteUnseenModels.isEmpty {
                    let variant = try await self.variantRef(db, variantPK: variantPK)
                    for model in completion.deleteUnseenModels {
                        let deleted = try await self.deleteUnseen(db, variant.dataset(model), generation: generation)
                        if deleted > 0 || results[model] != nil { results[model, default: ModelResult()].deleted += deleted }
                    }
                }
                try await db.query(
                    """
                    UPDATE sync_variants SET last_sync_date = \(startedAt), deletion_generation = NULL,
                        checkpoint = CASE WHEN \(completion.clearCheckpoint) THEN NULL ELSE checkpoint END
                    WHERE id = \(variantPK)
                    """, logger: self.logger)
            }
            let retry = finalStatus == .failed ? completion.retry : nil
            let retryAfter = retry?.afterSeconds.map { Int64($0 * 1000) }
            try await db.query(
                """
                UPDATE runs SET status = \(finalStatus.rawValue), finished_at = \(now.microseconds), results = \(ModelResult.encodeRunResults(results)),
                    error = \(errorMessage), retryable = \(retry != nil), retry_after_ms = \(retryAfter)
                WHERE id = \(run)
                """, logger: self.logger)
            let finished = try await self.fetchRun(db, run)!
            try await self.queueWebhooks(db, for: finished, plan: completion.webhooks, now: now)
            return finished
        }
    }

    public func runs(of variant: VariantRef, limit: Int, includingWebhooks: Bool) async throws -> [RunRecord] {
        try await read { db in
            guard let (pk, _) = try await self.lookupVariant(db, variant) else { return [] }
            return try await db.all(
                """
                SELECT * FROM runs WHERE variant_pk = \(pk) \(unescaped: includingWebhooks ? "" : "AND kind <> 'WEBHOOK'")
                ORDER BY id DESC LIMIT \(Int64(limit))
                """, self.logger
            ).map { try self.runRecord($0, variant: variant) }
        }
    }

    public func run(_ id: Int64) async throws -> RunRecord? {
        try await read { db in try await self.fetchRun(db, id) }
    }

    public func logs(ofRun id: Int64, limit: Int) async throws -> [RunLogEntry] {
        try await read { db in
            try await db.all("SELECT at, level, message FROM run_logs WHERE run_id = \(id) ORDER BY id LIMIT \(Int64(limit))", self.logger).map { row in
                RunLogEntry(
                    at: Timestamp(microseconds: try row.int64("at")), level: LogLevel(rawValue: try row.string("level")) ?? .info,
                    message: try row.string("message"))
            }
        }
    }

    // MARK: helpers

    func fetchRun(_ db: PostgresConnection, _ id: Int64) async throws -> RunRecord? {
        guard let row = try await db.one("SELECT * FROM runs WHERE id = \(id)", logger) else { return nil }
        return try runRecord(row, variant: try await variantRef(db, variantPK: try row.int64("variant_pk")))
    }

    func runRecord(_ row: PostgresRandomAccessRow, variant: VariantRef) throws -> RunRecord {
        RunRecord(
            id: try row.int64("id"), variant: variant,
            status: RunStatus(rawValue: try row.string("status")) ?? .failed,
            kind: RunKind(rawValue: try row.string("kind")) ?? .initial,
            startedAt: Timestamp(microseconds: try row.int64("started_at")),
            finishedAt: try row.optionalInt64("finished_at").map(Timestamp.init(microseconds:)),
            results: try ModelResult.decodeRunResults(try row.string("results")),
            error: try row.optionalString("error"),
            retry: try row.bool("retryable") ? RetryAdvice(afterSeconds: try row.optionalInt64("retry_after_ms").map { Double($0) / 1000 }) : nil,
            worker: try row.optionalString("worker"))
    }
}
