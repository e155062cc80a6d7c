import GRDB
import TributaryCore
import TributaryStore

extension SQLiteStore {
    public func startRun(_ variant: VariantRef, _ start: RunStart) async throws -> StartedRun {
        let now = clock()
        return try await pool.write { db in
            let (variantPK, state) = start.createsVariant ? try self.ensureVariantRow(db, variant, now: now) : try self.requireVariant(db, variant)
            try self.refuseIfActive(db, variantPK: variantPK, variant, now: now)
            try db.execute(
                sql: "INSERT INTO runs(variant_pk, status, kind, started_at, heartbeat_at, lease_seconds) VALUES (?, 'running', 'INITIAL', ?, ?, ?)",
                arguments: [variantPK, now.microseconds, now.microseconds, start.leaseSeconds])
            return try self.begin(db, run: db.lastInsertedRowID, variantPK: variantPK, state: state, tracksDeletes: start.tracksDeletes, now: now)
        }
    }

    @discardableResult
    public func enqueueRuns(_ variants: [VariantRef]) async throws -> [RunRecord] {
        let now = clock()
        return try await pool.write { db in
            var queued: [RunRecord] = []
            for variant in variants {
                let (variantPK, _) = try self.requireVariant(db, variant)
                try self.refuseIfActive(db, variantPK: variantPK, variant, now: now)
                queued.append(try self.insertQueuedRun(db, variantPK: variantPK, variant, now: now))
            }
            return queued
        }
    }

    public func enqueueScheduledRuns(_ variants: [VariantRef], dueAt due: Timestamp) async throws -> [VariantRef] {
        guard !variants.isEmpty else { return [] }
        let now = clock()
        return try await pool.write { db in
            var queued: [VariantRef] = []
            for variant in variants {
                guard let (variantPK, state) = try? self.requireVariant(db, variant), !state.paused,
                    let next = state.nextRunAt, next.microseconds <= due.microseconds
                else { continue }
                do {
                    try self.refuseIfActive(db, variantPK: variantPK, variant, now: now)
                } catch let error as TributaryError where error.code == .syncRunning {
                    continue
                }
                _ = try self.insertQueuedRun(db, variantPK: variantPK, variant, now: now)
                queued.append(variant)
            }
            return queued
        }
    }

    public func claimRun(_ claim: RunClaim) async throws -> ClaimedRun? {
        let now = clock()
        return try await pool.write { db in
            while true {
                // The fairest claimable run: fewest running runs on its connection (across all workers), oldest first.
                guard
                    let row = try Row.fetchOne(
                        db,
                        sql: """
                            WITH load AS (
                                SELECT v.connection_pk AS connection_pk, count(*) AS running
                                FROM runs r JOIN sync_variants v ON v.id = r.variant_pk
                                WHERE r.status = 'running' GROUP BY v.connection_pk)
                            SELECT q.id, q.variant_pk FROM runs q
                            JOIN sync_variants v ON v.id = q.variant_pk
                            LEFT JOIN load ON load.connection_pk = v.connection_pk
                            WHERE q.status = 'queued' AND coalesce(load.running, 0) < ?
                            ORDER BY coalesce(load.running, 0), q.id LIMIT 1
                            """,
                        arguments: [claim.maxRunsPerConnection])
                else { return nil }
                let runId: Int64 = row["id"]
                let variantPK: Int64 = row["variant_pk"]
                let variant = try self.variantRef(db, variantPK: variantPK)
                guard let tracksDeletes = claim.tracksDeletes(variant) else {
                    try db.execute(
                        sql: "UPDATE runs SET status = 'failed', finished_at = ?, error = ? WHERE id = ?",
                        arguments: [now.microseconds, StoreMessages.syncNoLongerConfigured(variant), runId])
                    continue
                }
                let (_, state) = try self.requireVariant(db, variant)
                try db.execute(
                    sql: "UPDATE runs SET status = 'running', started_at = ?, heartbeat_at = ?, lease_seconds = ?, worker = ? WHERE id = ?",
                    arguments: [now.microseconds, now.microseconds, claim.leaseSeconds, claim.worker, runId])
                // No next run is planned while this one runs: the worker plans it when the run ends
                // (otherwise a scheduler could queue the variant again between the run's end and that plan).
                try db.execute(sql: "UPDATE sync_variants SET next_run_at = NULL WHERE id = ?", arguments: [variantPK])
                let started = try self.begin(db, run: runId, variantPK: variantPK, state: state, tracksDeletes: tracksDeletes, now: now)
                return ClaimedRun(variant: variant, started: started)
            }
        }
    }

    public func activeRun(of variant: VariantRef) async throws -> RunRecord? {
        try await pool.read { db in
            guard let (pk, _) = try self.lookupVariant(db, variant) else { return nil }
            return try Row.fetchOne(db, sql: "SELECT * FROM runs WHERE variant_pk = ? AND status IN ('queued', 'running') AND kind <> 'WEBHOOK'", arguments: [pk])
                .map { try self.runRecord($0, variant: variant) }
        }
    }

    @discardableResult
    public func requestCancel(of variant: VariantRef, reason: String) async throws -> RunRecord? {
        let now = clock()
        return try await pool.write { db in
            guard let (pk, _) = try self.lookupVariant(db, variant),
                let row = try Row.fetchOne(
                    db, sql: "SELECT id, status FROM runs WHERE variant_pk = ? AND status IN ('queued', 'running') AND kind <> 'WEBHOOK'", arguments: [pk])
            else { return nil }
            let id: Int64 = row["id"]
            if row["status"] == RunStatus.queued.rawValue {
                try db.execute(
                    sql: "UPDATE runs SET status = 'cancelled', finished_at = ?, error = ? WHERE id = ?", arguments: [now.microseconds, reason, id])
            } else {
                try db.execute(sql: "UPDATE runs SET cancel_requested = 1 WHERE id = ?", arguments: [id])
            }
            return try self.fetchRun(db, id)
        }
    }

    public func shouldStop(run: Int64) async throws -> Bool {
        try await pool.read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT status, cancel_requested FROM runs WHERE id = ?", arguments: [run]) else { return true }
            return row["status"] != RunStatus.running.rawValue || row["cancel_requested"] as Bool
        }
    }

    public func expireRuns() async throws -> [RunRecord] {
        let now = clock()
        return try await pool.write { db in
            let rows = try Row.fetchAll(
                db,
                sql: "SELECT r.id, r.variant_pk, r.kind, v.paused FROM runs r JOIN sync_variants v ON v.id = r.variant_pk WHERE r.status = 'running' AND r.heartbeat_at + r.lease_seconds * 1000000 <= ?",
                arguments: [now.microseconds])
            var expired: [RunRecord] = []
            for row in rows {
                let id: Int64 = row["id"]
                try self.markExpired(db, run: id, now: now)
                expired.append(try self.fetchRun(db, id)!)
                let variantPK: Int64 = row["variant_pk"]
                if row["kind"] == RunKind.webhook.rawValue {
                    // A provider webhook execution: its task is claimed again (``claimProviderWebhook``), no sync run is queued.
                    continue
                } else if row["paused"] as Bool {
                    // Its worker will never plan the next run: when started again, the variant runs at once.
                    try db.execute(
                        sql: "UPDATE sync_variants SET next_run_at = coalesce(next_run_at, ?) WHERE id = ?", arguments: [now.microseconds, variantPK])
                } else {
                    _ = try self.insertQueuedRun(db, variantPK: variantPK, try self.variantRef(db, variantPK: variantPK), now: now)
                }
            }
            return expired
        }
    }

    /// Throws `sync_running` when the variant has a queued run or a running one with a live lease; a
    /// running run whose lease ran out is marked expired instead.
    private func refuseIfActive(_ db: Database, variantPK: Int64, _ variant: VariantRef, now: Timestamp) throws {
        let active = try Row.fetchAll(
            db,
            sql: "SELECT id, status, heartbeat_at, lease_seconds FROM runs WHERE variant_pk = ? AND status IN ('queued', 'running') AND kind <> 'WEBHOOK'",
            arguments: [variantPK])
        for row in active {
            let id: Int64 = row["id"]
            let heartbeat: Int64 = row["heartbeat_at"]
            let lease: Int64 = row["lease_seconds"]
            if row["status"] == RunStatus.queued.rawValue || heartbeat + lease * 1_000_000 > now.microseconds {
                throw StoreMessages.syncRunning(variant, queued: row["status"] == RunStatus.queued.rawValue, run: id)
            }
            try markExpired(db, run: id, now: now)
        }
    }

    func markExpired(_ db: Database, run: Int64, now: Timestamp) throws {
        try db.execute(
            sql: "UPDATE runs SET status = 'expired', finished_at = ?, error = ? WHERE id = ?",
            arguments: [now.microseconds, StoreMessages.leaseExpired, run])
    }

    private func insertQueuedRun(_ db: Database, variantPK: Int64, _ variant: VariantRef, now: Timestamp) throws -> RunRecord {
        try db.execute(
            sql: "INSERT INTO runs(variant_pk, status, kind, started_at, heartbeat_at, lease_seconds) VALUES (?, 'queued', 'INITIAL', ?, ?, 0)",
            arguments: [variantPK, now.microseconds, now.microseconds])
        return try fetchRun(db, db.lastInsertedRowID)!
    }

    /// Records how a run that has just become `running` starts (``StartedRun/begin(run:startedAt:state:tracksDeletes:)``).
    private func begin(_ db: Database, run runId: Int64, variantPK: Int64, state: VariantState, tracksDeletes: Bool, now: Timestamp) throws -> StartedRun {
        let started = StartedRun.begin(run: runId, startedAt: now, state: state, tracksDeletes: tracksDeletes)
        if started.deletionGeneration != state.deletionGeneration {
            try db.execute(
                sql: "UPDATE sync_variants SET deletion_generation = ? WHERE id = ?", arguments: [started.deletionGeneration, variantPK])
        }
        try db.execute(
            sql: "UPDATE runs SET kind = ?, deletion_generation = ? WHERE id = ?", arguments: [started.kind.rawValue, started.deletionGeneration, runId])
        return started
    }

    public func heartbeat(run: Int64) async throws {
        let now = clock()
        try await pool.write { db in
            try db.execute(
                sql: "UPDATE runs SET heartbeat_at = ? WHERE id = ? AND status = 'running'", arguments: [now.microseconds, run])
        }
    }

    public func appendLog(run: Int64, level: LogLevel, message: String) async throws {
        let now = clock()
        try await pool.write { db in
            try db.execute(
                sql: "INSERT INTO run_logs(run_id, at, level, message) VALUES (?, ?, ?, ?)",
                arguments: [run, now.microseconds, level.rawValue, message])
        }
    }

    public func completeRun(_ run: Int64, _ completion: RunCompletion) async throws -> RunRecord {
        let now = clock()
        return try await pool.write { db in
            guard
                let row = try Row.fetchOne(
                    db, sql: "SELECT variant_pk, status, kind, deletion_generation, started_at FROM runs WHERE id = ?", arguments: [run])
            else {
                throw TributaryError(.unknownSync, "Run \(run) does not exist.")
            }
            let status: String = row["status"]
            guard status == RunStatus.running.rawValue else {
                throw StoreMessages.runNotRunning(run, status: status)
            }
            let variantPK: Int64 = row["variant_pk"]
            if row["kind"] == RunKind.webhook.rawValue {
                return try self.completeWebhookRun(db, run, completion, now: now)
            }
            let startedAt: Int64 = row["started_at"]
            let generation: Int64? = row["deletion_generation"]
            var results = completion.results
            let finalStatus: RunStatus
            var errorMessage: String? = nil

            switch completion.outcome {
            case .succeeded:
                finalStatus = .succeeded
                if let generation, !completion.deleteUnseenModels.isEmpty {
                    let variant = try self.variantRef(db, variantPK: variantPK)
                    for model in completion.deleteUnseenModels {
                        let deleted = try self.deleteUnseen(db, variant.dataset(model), generation: generation)
                        if deleted > 0 || results[model] != nil { results[model, default: ModelResult()].deleted += deleted }
                    }
                }
                try db.execute(
                    sql: """
                        UPDATE sync_variants SET last_sync_date = ?, deletion_generation = NULL,
                            checkpoint = CASE WHEN ? THEN NULL ELSE checkpoint END
                        WHERE id = ?
                        """,
                    arguments: [startedAt, completion.clearCheckpoint, variantPK])
            case .failed(let message):
                finalStatus = .failed
                errorMessage = message
            case .cancelled(let reason):
                finalStatus = .cancelled
                errorMessage = reason
            }
            let retry = finalStatus == .failed ? completion.retry : nil
            try db.execute(
                sql: "UPDATE runs SET status = ?, finished_at = ?, results = ?, error = ?, retryable = ?, retry_after_ms = ? WHERE id = ?",
                arguments: [
                    finalStatus.rawValue, now.microseconds, ModelResult.encodeRunResults(results), errorMessage, retry != nil,
                    retry?.afterSeconds.map { Int64($0 * 1000) }, run,
                ])
            let finished = try self.fetchRun(db, run)!
            try self.queueWebhooks(db, for: finished, plan: completion.webhooks, now: now)
            return finished
        }
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
            worker: row["worker"])
    }
}
