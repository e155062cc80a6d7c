import GRDB
import TributaryCore
import TributaryStore

extension SQLiteStore {
    public func startRun(_ variant: VariantRef, _ start: RunStart) async throws -> StartedRun {
        return try await pool.write { db in
            let now = self.clock()
            let (variantPK, state) = start.createsVariant ? try self.ensureVariantRow(db, variant, now: now) : try self.requireVariant(db, variant)
            try self.refuseIfActive(db, variantPK: variantPK, variant)
            try db.execute(
                sql: "INSERT INTO runs(variant_pk, status, kind, started_at, queued_at, heartbeat_at, lease_seconds) VALUES (?, 'running', 'INITIAL', ?, ?, ?, ?)",
                arguments: [variantPK, now.microseconds, now.microseconds, now.microseconds, start.leaseSeconds])
            let runId = db.lastInsertedRowID
            return try self.begin(
                db, run: runId, row: .new, variantPK: variantPK, state: state, tracksDeletes: start.tracksDeletes, leaseSeconds: start.leaseSeconds,
                worker: nil, now: now)
        }
    }

    @discardableResult
    public func enqueueRuns(_ variants: [VariantRef]) async throws -> [RunRecord] {
        return try await pool.write { db in
            let now = self.clock()
            var queued: [RunRecord] = []
            for variant in variants {
                let (variantPK, _) = try self.requireVariant(db, variant)
                try self.refuseIfActive(db, variantPK: variantPK, variant)
                queued.append(try self.insertQueuedRun(db, variantPK: variantPK, now: now))
            }
            return queued
        }
    }

    public func enqueueScheduledRuns(_ variants: [VariantRef], dueAt due: Timestamp) async throws -> [VariantRef] {
        guard !variants.isEmpty else { return [] }
        return try await pool.write { db in
            let now = self.clock()
            var queued: [VariantRef] = []
            for variant in variants {
                guard let (variantPK, state) = try self.lookupVariant(db, variant), !state.paused,
                    let next = state.nextRunAt, next.microseconds <= due.microseconds
                else { continue }
                do {
                    try self.refuseIfActive(db, variantPK: variantPK, variant)
                } catch let error as TributaryError where error.code == .syncRunning {
                    continue
                }
                _ = try self.insertQueuedRun(db, variantPK: variantPK, now: now)
                queued.append(variant)
            }
            return queued
        }
    }

    public func claimRun(_ claim: RunClaim) async throws -> ClaimedRun? {
        return try await pool.write { db in
            let now = self.clock()
            // Runs of syncs this worker does not run stay queued for one that does (another version of
            // the configuration during a rolling deploy, say): the query looks past them, however many.
            let known = String(decoding: JSONWriter.bytes(.array(claim.syncKeys.map { .string($0) }), canonical: false), as: UTF8.self)
            // The fairest claimable run: fewest running runs on its connection (across all workers), oldest first.
            guard
                let row = try Row.fetchOne(
                    db,
                    sql: """
                        WITH load AS (
                            SELECT v.connection_pk AS connection_pk, count(*) AS running
                            FROM runs r JOIN sync_variants v ON v.id = r.variant_pk
                            WHERE r.status = 'running' GROUP BY v.connection_pk)
                        SELECT q.id, q.variant_pk, q.attempts, q.started_at, q.kind, q.deletion_generation FROM runs q
                        JOIN sync_variants v ON v.id = q.variant_pk
                        JOIN connections c ON c.id = v.connection_pk
                        LEFT JOIN load ON load.connection_pk = v.connection_pk
                        WHERE q.status = 'queued' AND coalesce(load.running, 0) < ?
                            AND c.environment || char(31) || c.provider_config_key || char(31) || v.sync_name IN (SELECT value FROM json_each(?))
                        ORDER BY coalesce(load.running, 0), q.id LIMIT 1
                        """,
                    arguments: [claim.maxRunsPerConnection, known])
            else { return nil }
            let runId: Int64 = row["id"]
            let variantPK: Int64 = row["variant_pk"]
            let variant = try self.variantRef(db, variantPK: variantPK)
            guard let tracksDeletes = claim.syncs[SyncAddress(variant)] else { return nil }
            let (_, state) = try self.requireVariant(db, variant)
            let runRow = RunStartRule.Row(
                attempts: row["attempts"], startedAt: Timestamp(microseconds: row["started_at"]),
                kind: RunKind(rawValue: row["kind"]) ?? .initial, deletionGeneration: row["deletion_generation"])
            // No next run is planned while this one runs: its end plans it, in the same transaction.
            try db.execute(sql: "UPDATE sync_variants SET next_run_at = NULL WHERE id = ?", arguments: [variantPK])
            let started = try self.begin(
                db, run: runId, row: runRow, variantPK: variantPK, state: state, tracksDeletes: tracksDeletes, leaseSeconds: claim.leaseSeconds,
                worker: claim.worker, now: now)
            return ClaimedRun(variant: variant, started: started)
        }
    }

    public func activeRun(of variant: VariantRef) async throws -> RunRecord? {
        try await pool.read { db in
            guard let (pk, _) = try self.lookupVariant(db, variant) else { return nil }
            return try Row.fetchOne(db, sql: "SELECT * FROM runs WHERE variant_pk = ? AND status IN ('queued', 'running') AND kind <> 'WEBHOOK'", arguments: [pk])
                .map { try self.runRecord($0, variant: variant) }
        }
    }

    public func expireRuns(_ policy: RunExpiry.Policy) async throws -> [RunRecord] {
        return try await pool.write { db in
            let now = self.clock()
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT r.id, r.variant_pk, r.kind, r.attempts, r.expiries, r.worker, v.paused FROM runs r JOIN sync_variants v ON v.id = r.variant_pk
                    WHERE r.status = 'running' AND r.heartbeat_at + r.lease_seconds * 1000000 <= ?
                    """,
                arguments: [now.microseconds])
            var handled: [RunRecord] = []
            for row in rows {
                let id: Int64 = row["id"]
                let attempts: Int64 = row["attempts"]
                let expiries = (row["expiries"] as Int64) + 1
                let action = RunExpiry.action(
                    kind: RunKind(rawValue: row["kind"]) ?? .initial, expiries: expiries - 1, variantPaused: row["paused"], now: now, policy: policy)
                try db.execute(sql: "UPDATE runs SET expiries = ? WHERE id = ?", arguments: [expiries, id])
                switch action {
                case .requeue:
                    try db.execute(sql: "UPDATE runs SET status = 'queued', worker = NULL WHERE id = ?", arguments: [id])
                    try self.insertLog(db, run: id, level: .warn, message: RunExpiry.interruptedMessage(attempt: attempts, worker: row["worker"]), now: now)
                case .giveUp(let next):
                    try self.markExpired(db, run: id, now: now, error: row["paused"] as Bool ? nil : RunExpiry.gaveUpMessage(expiries: expiries))
                    if let next {
                        try db.execute(sql: "UPDATE sync_variants SET next_run_at = ? WHERE id = ?", arguments: [next.microseconds, row["variant_pk"] as Int64])
                    }
                case .expireWebhookExecution:
                    // Its task is claimed again (``claimProviderWebhook``).
                    try self.markExpired(db, run: id, now: now)
                }
                if let run = try self.fetchRun(db, id) { handled.append(run) }
            }
            return handled
        }
    }

    /// Throws `sync_running` when the variant has a queued or running run. A running run whose lease
    /// ran out counts too: the scheduler's expiry (``RunExpiry``) queues the same run again, so it keeps
    /// its first start and counts — replacing it here would lose both.
    private func refuseIfActive(_ db: Database, variantPK: Int64, _ variant: VariantRef) throws {
        let active = try Row.fetchOne(
            db,
            sql: "SELECT id, status FROM runs WHERE variant_pk = ? AND status IN ('queued', 'running') AND kind <> 'WEBHOOK'",
            arguments: [variantPK])
        if let active {
            throw StoreMessages.syncRunning(variant, queued: active["status"] == RunStatus.queued.rawValue, run: active["id"])
        }
    }

    func markExpired(_ db: Database, run: Int64, now: Timestamp, error: String? = nil) throws {
        try db.execute(
            sql: "UPDATE runs SET status = 'expired', finished_at = ?, error = ? WHERE id = ? AND status = 'running'",
            arguments: [now.microseconds, error ?? StoreMessages.leaseExpired, run])
    }

    func insertQueuedRun(_ db: Database, variantPK: Int64, now: Timestamp) throws -> RunRecord {
        try db.execute(
            sql: "INSERT INTO runs(variant_pk, status, kind, started_at, queued_at, heartbeat_at, lease_seconds) VALUES (?, 'queued', 'INITIAL', ?, ?, ?, 0)",
            arguments: [variantPK, now.microseconds, now.microseconds, now.microseconds])
        return try fetchRun(db, db.lastInsertedRowID)!
    }

    /// Starts the next attempt of a run that has just become `running` (``RunStartRule``) and writes
    /// what the rule decided: the run's lease, start, kind and window, and the variant's window.
    private func begin(
        _ db: Database, run runId: Int64, row: RunStartRule.Row, variantPK: Int64, state: VariantState, tracksDeletes: Bool, leaseSeconds: Int64,
        worker: String?, now: Timestamp
    ) throws -> StartedRun {
        let decision = RunStartRule.begin(runId: runId, row: row, now: now, state: state, tracksDeletes: tracksDeletes)
        let started = decision.started
        if let window = decision.variantWindow {
            try db.execute(sql: "UPDATE sync_variants SET deletion_generation = ? WHERE id = ?", arguments: [window, variantPK])
        }
        try db.execute(
            sql: """
                UPDATE runs SET status = 'running', attempts = ?, started_at = ?, heartbeat_at = ?, lease_seconds = ?, worker = ?, kind = ?,
                    deletion_generation = ?
                WHERE id = ?
                """,
            arguments: [
                started.attempt, started.startedAt.microseconds, now.microseconds, leaseSeconds, worker, started.kind.rawValue,
                started.deletionGeneration, runId,
            ])
        if started.distrustsCheckpoint {
            try insertLog(db, run: runId, level: .warn, message: StoreMessages.distrustedCheckpoint, now: now)
        }
        return started
    }

    func insertLog(_ db: Database, run: Int64, level: LogLevel, message: String, now: Timestamp) throws {
        try db.execute(
            sql: "INSERT INTO run_logs(run_id, at, level, message) VALUES (?, ?, ?, ?)", arguments: [run, now.microseconds, level.rawValue, message])
    }

    public func runs(of variant: VariantRef, limit: Int, includingWebhooks: Bool) async throws -> [RunRecord] {
        try await pool.read { db in
            guard let (pk, _) = try self.lookupVariant(db, variant) else { return [] }
            let rows = try Row.fetchAll(
                db, sql: "SELECT * FROM runs WHERE variant_pk = ? \(includingWebhooks ? "" : "AND kind <> 'WEBHOOK'") ORDER BY id DESC LIMIT ?",
                arguments: [pk, limit])
            return try rows.map { try self.runRecord($0, variant: variant) }
        }
    }

    public func run(_ id: Int64) async throws -> RunRecord? {
        try await pool.read { db in try self.fetchRun(db, id) }
    }

    public func logs(ofRun id: Int64, limit: Int) async throws -> [RunLogEntry] {
        try await pool.read { db in
            try Row.fetchAll(
                db, sql: "SELECT at, level, message FROM run_logs WHERE run_id = ? ORDER BY id LIMIT ?", arguments: [id, limit]
            ).map { row in
                RunLogEntry(
                    at: Timestamp(microseconds: row["at"]), level: LogLevel(rawValue: row["level"]) ?? .info, message: row["message"])
            }
        }
    }

    // MARK: helpers

    func fetchRun(_ db: Database, _ id: Int64) throws -> RunRecord? {
        guard let row = try Row.fetchOne(db, sql: "SELECT * FROM runs WHERE id = ?", arguments: [id]) else { return nil }
        return try runRecord(row, variant: try variantRef(db, variantPK: row["variant_pk"]))
    }

    func variantRef(_ db: Database, variantPK: Int64) throws -> VariantRef {
        guard
            let row = try Row.fetchOne(
                db,
                sql: """
                    SELECT c.environment, c.provider_config_key, c.connection_id, v.sync_name, v.variant
                    FROM sync_variants v JOIN connections c ON c.id = v.connection_pk WHERE v.id = ?
                    """,
                arguments: [variantPK])
        else { throw TributaryError(.unknownVariant, "Variant \(variantPK) does not exist.") }
        return VariantRef(
            connection: ConnectionRef(environment: row[0], providerConfigKey: row[1], connectionId: row[2]),
            syncName: row[3], variant: row[4])
    }

    func runRecord(_ row: Row, variant: VariantRef) throws -> RunRecord {
        RunRecord(
            id: row["id"], variant: variant,
            status: RunStatus(rawValue: row["status"]) ?? .failed,
            kind: RunKind(rawValue: row["kind"]) ?? .initial,
            startedAt: Timestamp(microseconds: row["started_at"]),
            finishedAt: (row["finished_at"] as Int64?).map(Timestamp.init(microseconds:)),
            results: try ModelResult.decodeRunResults(row["results"]),
            error: row["error"],
            retry: (row["retryable"] as Bool? ?? false)
                ? RetryAdvice(afterSeconds: (row["retry_after_ms"] as Int64?).map { Double($0) / 1000 }) : nil,
            worker: row["worker"],
            attempts: row["attempts"] as Int? ?? 0)
    }
}
