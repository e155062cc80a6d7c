import PostgresNIO
import TributaryCore
import TributaryStore

extension PostgresStore {
    public func startRun(_ variant: VariantRef, _ start: RunStart) async throws -> StartedRun {
        return try await transaction { db in
            try await self.lock(db, .runQueue)
            let now = self.clock()
            let (variantPK, state) =
                start.createsVariant ? try await self.ensureVariantRow(db, variant, now: now) : try await self.requireVariant(db, variant)
            try await self.refuseIfActive(db, variantPK: variantPK, variant)
            let runId = try await self.insertRun(db, variantPK: variantPK, status: .running, kind: .initial, now: now, leaseSeconds: start.leaseSeconds)
            return try await self.begin(
                db, run: runId, row: .new, variantPK: variantPK, state: state, tracksDeletes: start.tracksDeletes, leaseSeconds: start.leaseSeconds,
                worker: nil, clearsNextRun: false, now: now)
        }
    }

    @discardableResult
    public func enqueueRuns(_ variants: [VariantRef]) async throws -> [RunRecord] {
        return try await transaction { db in
            try await self.lock(db, .runQueue)
            let now = self.clock()
            var queued: [RunRecord] = []
            for variant in variants {
                let (variantPK, _) = try await self.requireVariant(db, variant)
                try await self.refuseIfActive(db, variantPK: variantPK, variant)
                let id = try await self.insertRun(db, variantPK: variantPK, status: .queued, kind: .initial, now: now, leaseSeconds: 0)
                queued.append(try await self.fetchRun(db, id)!)
            }
            if !queued.isEmpty { try await self.notify(db, .runsQueued) }
            return queued
        }
    }

    public func enqueueScheduledRuns(_ variants: [VariantRef], dueAt due: Timestamp) async throws -> [VariantRef] {
        let variants = variants.uniqued
        guard !variants.isEmpty else { return [] }
        return try await transaction { db in
            try await self.lock(db, .runQueue)
            let now = self.clock()
            // One statement for the whole list, under the queue lock: the variants still due, started
            // and idle get a queued run each, in the list's order (so their run ids, the queue's order,
            // follow it). It answers with the positions in the list of those it queued.
            let rows = try await db.query(
                """
                WITH due AS (
                    SELECT * FROM unnest(\(variants.map(\.connection.environment))::text[], \(variants.map(\.connection.providerConfigKey))::text[],
                        \(variants.map(\.connection.connectionId))::text[], \(variants.map(\.syncName))::text[], \(variants.map(\.variant))::text[])
                        WITH ORDINALITY AS d(environment, provider_config_key, connection_id, sync_name, variant, n)),
                chosen AS (
                    SELECT v.id, d.n FROM due d
                    JOIN connections c ON c.environment = d.environment AND c.provider_config_key = d.provider_config_key
                        AND c.connection_id = d.connection_id
                    JOIN sync_variants v ON v.connection_pk = c.id AND v.sync_name = d.sync_name AND v.variant = d.variant
                    WHERE NOT v.paused AND v.next_run_at <= \(due.microseconds) AND NOT EXISTS (
                        SELECT 1 FROM runs r WHERE r.variant_pk = v.id AND r.status IN ('queued', 'running') AND r.kind <> 'WEBHOOK')),
                queued AS (
                    INSERT INTO runs(variant_pk, status, kind, started_at, queued_at, heartbeat_at, lease_seconds)
                    SELECT id, \(RunStatus.queued.rawValue), \(RunKind.initial.rawValue), \(now.microseconds), \(now.microseconds),
                        \(unescaped: Self.databaseNow) + \(self.leaseClockOffset()), 0
                    FROM chosen ORDER BY n RETURNING variant_pk)
                SELECT chosen.n FROM chosen JOIN queued ON queued.variant_pk = chosen.id ORDER BY chosen.n
                """, logger: self.logger)
            var queued: [VariantRef] = []
            for try await n in rows.decode(Int64.self) {
                guard n >= 1, n <= variants.count else { continue }
                queued.append(variants[Int(n) - 1])
            }
            return queued
        }
    }

    /// How many of the oldest queued runs a claim's first query looks at (see ``claimRun(_:)``).
    static let claimHead = 128

    /// What a claim reads of the chosen run's variant and connection, beside the run's own columns:
    /// the variant's names and state, so the claim needs no second read.
    static let claimedVariantColumns = "c.environment, c.provider_config_key, c.connection_id, " + qualifiedVariantColumns

    public func claimRun(_ claim: RunClaim) async throws -> ClaimedRun? {
        try await claimRuns(claim, limit: 1).first
    }

    public func claimRuns(_ claim: RunClaim, limit: Int) async throws -> [ClaimedRun] {
        guard limit > 0 else { return [] }
        return try await transaction { db in
            // One claim at a time across all processes: the per-connection count below sees every running run.
            // A batch takes the lock once; each claim in it sees the runs the ones before it started.
            try await self.lock(db, .runQueue)
            let now = self.clock()
            // Runs of syncs this worker does not run stay queued for one that does (another version of
            // the configuration during a rolling deploy, say): the query looks past them, however many.
            let known = claim.syncKeys
            var claimed: [ClaimedRun] = []
            while claimed.count < limit, let run = try await self.claimOne(db, claim, known: known, now: now) { claimed.append(run) }
            return claimed
        }
    }

    /// The fairest claimable run, started — in the caller's transaction, which holds the queue lock.
    /// `known`: the claim's sync keys (``RunClaim/syncKeys``).
    private func claimOne(_ db: PostgresConnection, _ claim: RunClaim, known: [String], now: Timestamp) async throws -> ClaimedRun? {
        // The fairest claimable run: fewest running runs on its connection (across all workers), oldest first.
        // Most often that is the oldest queued run on a connection with nothing running, and it is
        // near the head of the queue: that query takes the busy connections once, then walks the
        // queue from its oldest run, one index probe and one variant lookup per step, and stops at
        // the first run of a known sync on an idle connection (or after ``claimHead`` runs). It walks
        // a prefix of the queue, so that run is the oldest on any idle connection. The walk, one
        // probe at a time carrying the run's columns, keeps the plan from depending on statistics:
        // with the queue's share of `runs` underestimated (it grows faster than ANALYZE runs), a
        // plain `ORDER BY id LIMIT` read and sorted every queued run, and a join from the queue
        // became a pass over every variant — 3–18 ms per claim, under the queue lock, with thousands
        // queued. When the head holds no such run (every connection in it busy, or its syncs run by
        // other workers), the full query decides. The walk starts from a sentinel row (id 0, before
        // every run, never returned), so one recursive step reads every run.
        var fairest: PostgresRandomAccessRow? = nil
        if claim.maxRunsPerConnection > 0 {
            fairest = try await db.one(
                """
                WITH RECURSIVE busy AS MATERIALIZED (
                    SELECT DISTINCT rv.connection_pk FROM runs r JOIN sync_variants rv ON rv.id = r.variant_pk WHERE r.status = 'running'),
                walk(id, variant_pk, attempts, started_at, kind, deletion_generation, n, fits) AS (
                    SELECT 0::bigint, NULL::bigint, NULL::bigint, NULL::bigint, NULL::text, NULL::bigint, 0, false
                    UNION ALL
                    SELECT q.id, q.variant_pk, q.attempts, q.started_at, q.kind, q.deletion_generation, w.n + 1, EXISTS (
                        SELECT 1 FROM sync_variants v JOIN connections c ON c.id = v.connection_pk
                        WHERE v.id = q.variant_pk AND v.connection_pk NOT IN (SELECT connection_pk FROM busy)
                            AND c.environment || chr(31) || c.provider_config_key || chr(31) || v.sync_name = ANY(\(known)::text[]))
                    FROM walk w, LATERAL (SELECT * FROM runs r WHERE r.status = 'queued' AND r.id > w.id ORDER BY r.id LIMIT 1) q
                    WHERE NOT w.fits AND w.n < \(Self.claimHead))
                SELECT w.id AS run_id, w.attempts, w.started_at, w.kind, w.deletion_generation AS run_generation, \(unescaped: Self.claimedVariantColumns)
                FROM walk w JOIN sync_variants v ON v.id = w.variant_pk JOIN connections c ON c.id = v.connection_pk WHERE w.fits
                """, self.logger)
        }
        if fairest == nil {
            fairest = try await db.one(
                """
                WITH load AS (
                    SELECT v.connection_pk AS connection_pk, count(*) AS running
                    FROM runs r JOIN sync_variants v ON v.id = r.variant_pk
                    WHERE r.status = 'running' GROUP BY v.connection_pk)
                SELECT q.id AS run_id, q.attempts, q.started_at, q.kind, q.deletion_generation AS run_generation, \(unescaped: Self.claimedVariantColumns)
                FROM runs q
                JOIN sync_variants v ON v.id = q.variant_pk
                JOIN connections c ON c.id = v.connection_pk
                LEFT JOIN load ON load.connection_pk = v.connection_pk
                WHERE q.status = 'queued' AND coalesce(load.running, 0) < \(Int64(claim.maxRunsPerConnection))
                    AND c.environment || chr(31) || c.provider_config_key || chr(31) || v.sync_name = ANY(\(known)::text[])
                ORDER BY coalesce(load.running, 0), q.id LIMIT 1
                """, self.logger)
        }
        guard let row = fairest else { return nil }
        let runId = try row.int64("run_id")
        let variantPK = try row.int64("id")
        let variant = try self.variantRef(row)
        let state = try self.variantState(variant, row)
        guard let tracksDeletes = claim.syncs[SyncAddress(variant)] else { return nil }
        let runRow = RunStartRule.Row(
            attempts: try row.int64("attempts"), startedAt: Timestamp(microseconds: try row.int64("started_at")),
            kind: RunKind(rawValue: try row.string("kind")) ?? .initial, deletionGeneration: try row.optionalInt64("run_generation"))
        // No next run is planned while this one runs: its end plans it, in the same transaction.
        let started = try await self.begin(
            db, run: runId, row: runRow, variantPK: variantPK, state: state, tracksDeletes: tracksDeletes, leaseSeconds: claim.leaseSeconds,
            worker: claim.worker, clearsNextRun: true, now: now)
        return ClaimedRun(variant: variant, started: started)
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

    public func expireRuns(_ policy: RunExpiry.Policy) async throws -> [RunRecord] {
        let offset = leaseClockOffset()
        // Most passes find no lease run out: a read says so without the queue lock, which claims wait on.
        let anyEnded = try await read { db in
            try await db.one(
                """
                SELECT 1 AS x FROM runs
                WHERE status = 'running' AND heartbeat_at + lease_seconds * 1000000 <= \(unescaped: Self.databaseNow) + \(offset) LIMIT 1
                """, self.logger) != nil
        }
        guard anyEnded else { return [] }
        return try await transaction { db in
            try await self.lock(db, .runQueue)
            let now = self.clock()
            // A run row locked by a transaction (its finish, or one of its writes) is skipped: that run is alive.
            let rows = try await db.all(
                """
                SELECT r.id, r.variant_pk, r.kind, r.attempts, r.expiries, r.worker, v.paused FROM runs r JOIN sync_variants v ON v.id = r.variant_pk
                WHERE r.status = 'running' AND r.heartbeat_at + r.lease_seconds * 1000000 <= \(unescaped: Self.databaseNow) + \(offset)
                ORDER BY r.id FOR UPDATE OF r SKIP LOCKED
                """, self.logger)
            var handled: [RunRecord] = []
            for row in rows {
                let id = try row.int64("id")
                let attempts = try row.int64("attempts")
                let expiries = try row.int64("expiries") + 1
                let paused = try row.bool("paused")
                let action = RunExpiry.action(
                    kind: RunKind(rawValue: try row.string("kind")) ?? .initial, expiries: expiries - 1, variantPaused: paused, now: now, policy: policy)
                try await db.query("UPDATE runs SET expiries = \(expiries) WHERE id = \(id)", logger: self.logger)
                switch action {
                case .requeue:
                    try await db.query("UPDATE runs SET status = 'queued', worker = NULL WHERE id = \(id)", logger: self.logger)
                    try await self.insertLog(
                        db, run: id, level: .warn, message: RunExpiry.interruptedMessage(attempt: attempts, worker: try row.optionalString("worker")), now: now)
                case .giveUp(let next):
                    try await self.markExpired(db, run: id, now: now, error: paused ? nil : RunExpiry.gaveUpMessage(expiries: expiries))
                    if let next {
                        try await db.query(
                            "UPDATE sync_variants SET next_run_at = \(next.microseconds) WHERE id = \(try row.int64("variant_pk"))", logger: self.logger)
                    }
                case .expireWebhookExecution:
                    // Its task is claimed again (``claimProviderWebhook``).
                    try await self.markExpired(db, run: id, now: now)
                }
                if let run = try await self.fetchRun(db, id) { handled.append(run) }
            }
            return handled
        }
    }

    /// Throws `sync_running` when the variant has a queued or running run. A running run whose lease
    /// ran out counts too: the scheduler's expiry (``RunExpiry``) queues the same run again, so it keeps
    /// its first start and counts — replacing it here would lose both.
    private func refuseIfActive(_ db: PostgresConnection, variantPK: Int64, _ variant: VariantRef) async throws {
        if let active = try await db.one(
            "SELECT id, status FROM runs WHERE variant_pk = \(variantPK) AND status IN ('queued', 'running') AND kind <> 'WEBHOOK'", logger)
        {
            throw StoreMessages.syncRunning(variant, queued: try active.string("status") == RunStatus.queued.rawValue, run: try active.int64("id"))
        }
    }

    /// Marks a running run expired; false when it is no longer running.
    @discardableResult
    func markExpired(_ db: PostgresConnection, run: Int64, now: Timestamp, error: String? = nil) async throws -> Bool {
        try await db.count(
            """
            UPDATE runs SET status = 'expired', finished_at = \(now.microseconds), error = \(error ?? StoreMessages.leaseExpired)
            WHERE id = \(run) AND status = 'running' RETURNING id
            """, logger) == 1
    }

    func insertRun(_ db: PostgresConnection, variantPK: Int64, status: RunStatus, kind: RunKind, now: Timestamp, leaseSeconds: Int64) async throws
        -> Int64
    {
        do {
            return try await db.one(
                """
                INSERT INTO runs(variant_pk, status, kind, started_at, queued_at, heartbeat_at, lease_seconds)
                VALUES (\(variantPK), \(status.rawValue), \(kind.rawValue), \(now.microseconds), \(now.microseconds),
                    \(unescaped: Self.databaseNow) + \(leaseClockOffset()), \(leaseSeconds)) RETURNING id
                """, logger)!.int64("id")
        } catch where Self.isUniqueViolation(error) {
            // `runs_active`: another run of this variant became active first (the transaction is aborted now, so no lookup).
            throw TributaryError(.syncRunning, "Another run of this variant became active at the same moment.")
        }
    }

    /// Starts the next attempt of a run that has just become `running` (``RunStartRule``) and writes
    /// what the rule decided: the run's lease, start, kind and window, and the variant's window — in
    /// one statement. With `clearsNextRun` the variant's next run is unplanned too (its end plans it).
    private func begin(
        _ db: PostgresConnection, run runId: Int64, row: RunStartRule.Row, variantPK: Int64, state: VariantState, tracksDeletes: Bool,
        leaseSeconds: Int64, worker: String?, clearsNextRun: Bool, now: Timestamp
    ) async throws -> StartedRun {
        let decision = RunStartRule.begin(runId: runId, row: row, now: now, state: state, tracksDeletes: tracksDeletes)
        let started = decision.started
        // The variant's changes ride along as a data-modifying CTE (numbers of this store's own, written as literals).
        var variantChanges: [String] = []
        if clearsNextRun { variantChanges.append("next_run_at = NULL") }
        if let window = decision.variantWindow { variantChanges.append("deletion_generation = " + (window.map(String.init) ?? "NULL")) }
        let variantUpdate =
            variantChanges.isEmpty ? "" : "WITH variant AS (UPDATE sync_variants SET \(variantChanges.joined(separator: ", ")) WHERE id = \(variantPK)) "
        try await db.query(
            """
            \(unescaped: variantUpdate)UPDATE runs SET status = 'running', attempts = \(started.attempt), started_at = \(started.startedAt.microseconds),
                heartbeat_at = \(unescaped: Self.databaseNow) + \(leaseClockOffset()), lease_seconds = \(leaseSeconds), worker = \(worker),
                kind = \(started.kind.rawValue), deletion_generation = \(started.deletionGeneration)
            WHERE id = \(runId)
            """, logger: logger)
        if started.distrustsCheckpoint {
            try await insertLog(db, run: runId, level: .warn, message: StoreMessages.distrustedCheckpoint, now: now)
        }
        return started
    }

    func insertLog(_ db: PostgresConnection, run: Int64, level: LogLevel, message: String, now: Timestamp) async throws {
        try await db.query(
            "INSERT INTO run_logs(run_id, at, level, message) VALUES (\(run), \(now.microseconds), \(level.rawValue), \(message))", logger: logger)
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
            worker: try row.optionalString("worker"),
            attempts: try row.int("attempts"))
    }
}
