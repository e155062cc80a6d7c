import Foundation
import GRDB
import TributaryCore
import TributaryStore

extension SQLiteStore {
    public func startAction(_ start: ActionRunStart) async throws -> (run: ActionRun, lease: ActionLease) {
        try await pool.write { db in
            let now = self.clock()
            let id = try self.insertAction(db, start, status: .running, now: now)
            let run = try self.actionRun(db, id: id)!
            return (run, ActionLease(id: id, token: 1))
        }
    }

    public func queueAction(_ start: ActionRunStart) async throws -> ActionRun {
        try await pool.write { db in
            let id = try self.insertAction(db, start, status: .queued, now: self.clock())
            return try self.actionRun(db, id: id)!
        }
    }

    private func insertAction(_ db: Database, _ start: ActionRunStart, status: ActionRunStatus, now: Timestamp) throws -> String {
        let pk = try requireConnectionPK(db, start.connection)
        let id = UUID().uuidString.lowercased()
        let running = status == .running
        try db.execute(
            sql: """
                INSERT INTO action_runs(id, connection_pk, action_name, is_async, status, input, attempts, max_retries, lease_seconds,
                    heartbeat_at, next_attempt_at, created_at, started_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [
                id, pk, start.actionName, start.isAsync, status.rawValue, Data(start.input), running ? 1 : 0, start.maxRetries, start.leaseSeconds,
                running ? now.microseconds : nil, running ? nil : now.microseconds, now.microseconds, running ? now.microseconds : nil,
            ])
        return id
    }

    public func claimAction(worker: String, maxExpiries: Int, webhook: @escaping @Sendable (ConnectionRef, JSONObject) -> ActionWebhookPlan?) async throws
        -> ClaimedAction?
    {
        try await pool.write { db in
            let now = self.clock()
            // A running execution whose lease ran out: its process died or stalled. An async one is
            // claimed again (the next attempt, same id) — or failed once it ran out too often; a
            // synchronous one is failed (the app that waited for it is gone).
            while let row = try Row.fetchOne(
                db,
                sql: """
                    SELECT id, is_async, expiries + 1 AS expiries FROM action_runs
                    WHERE status = 'running' AND heartbeat_at + lease_seconds * 1000000 <= ? ORDER BY heartbeat_at LIMIT 1
                    """,
                arguments: [now.microseconds])
            {
                let expired: String = row["id"]
                let expiries: Int = row["expiries"]
                if expiries >= maxExpiries || !row["is_async"] {
                    let failure = ActionAttemptRule.expired(after: expiries)
                    try db.execute(
                        sql: "UPDATE action_runs SET status = 'failed', expiries = ?, failure = ?, finished_at = ?, heartbeat_at = NULL WHERE id = ?",
                        arguments: [expiries, failure.json, now.microseconds, expired])
                    let run = try self.actionRun(db, id: expired)!
                    if run.isAsync {
                        let config = try String.fetchOne(
                            db, sql: "SELECT c.connection_config FROM action_runs a JOIN connections c ON c.id = a.connection_pk WHERE a.id = ?", arguments: [expired])
                        let connectionConfig = config.flatMap { try? JSONParser.parse($0).objectValue } ?? [:]
                        try self.queueActionWebhook(db, run, plan: webhook(run.connection, connectionConfig), now: now)
                    }
                } else {
                    try db.execute(
                        sql: "UPDATE action_runs SET status = 'queued', expiries = ?, next_attempt_at = ?, heartbeat_at = NULL WHERE id = ?",
                        arguments: [expiries, now.microseconds, expired])
                    try self.insertActionLog(
                        db, id: expired, level: .warn, message: "The worker running this action stopped (its lease ran out); running it again.", now: now)
                }
            }
            guard
                let id = try String.fetchOne(
                    db, sql: "SELECT id FROM action_runs WHERE status = 'queued' AND next_attempt_at <= ? ORDER BY next_attempt_at, created_at LIMIT 1",
                    arguments: [now.microseconds])
            else { return nil }
            try db.execute(
                sql: """
                    UPDATE action_runs SET status = 'running', attempts = attempts + 1, heartbeat_at = ?, next_attempt_at = NULL,
                        started_at = coalesce(started_at, ?), worker = ?
                    WHERE id = ?
                    """,
                arguments: [now.microseconds, now.microseconds, worker, id])
            let run = try self.actionRun(db, id: id)!
            let input = try Data.fetchOne(db, sql: "SELECT input FROM action_runs WHERE id = ?", arguments: [id]) ?? Data("null".utf8)
            return ClaimedAction(run: run, lease: ActionLease(id: id, token: Int64(run.attempts)), input: Array(input))
        }
    }

    public func releaseAction(_ lease: ActionLease, reason: String) async throws {
        try await pool.write { db in
            let now = self.clock()
            try ActionAttemptRule.check(lease, row: try self.actionFenceRow(db, lease.id), now: now.microseconds)
            try db.execute(
                sql: "UPDATE action_runs SET status = 'queued', heartbeat_at = NULL, next_attempt_at = ? WHERE id = ?", arguments: [now.microseconds, lease.id])
            try self.insertActionLog(db, id: lease.id, level: .warn, message: reason, now: now)
        }
    }

    public func renewActionLease(_ lease: ActionLease) async throws -> LeaseState {
        try await pool.write { db in
            let now = self.clock()
            let state = ActionAttemptRule.state(of: lease, row: try self.actionFenceRow(db, lease.id), now: now.microseconds)
            if state.isHeld {
                try db.execute(sql: "UPDATE action_runs SET heartbeat_at = ? WHERE id = ?", arguments: [now.microseconds, lease.id])
            }
            return state
        }
    }

    public func appendActionLog(_ lease: ActionLease, level: LogLevel, message: String) async throws {
        try await pool.write { db in
            let now = self.clock()
            try ActionAttemptRule.check(lease, row: try self.actionFenceRow(db, lease.id), now: now.microseconds)
            try self.insertActionLog(db, id: lease.id, level: level, message: message, now: now)
        }
    }

    public func changeMetadata(_ metadata: JSONObject, merge: Bool, for lease: ActionLease) async throws {
        try await pool.write { db in
            let now = self.clock()
            try ActionAttemptRule.check(lease, row: try self.actionFenceRow(db, lease.id), now: now.microseconds)
            let pk = try Int64.fetchOne(db, sql: "SELECT connection_pk FROM action_runs WHERE id = ?", arguments: [lease.id])!
            try self.changeMetadata(db, connectionPKs: [pk], now: now) { merge ? $0.shallowMerging(metadata) : metadata }
        }
    }

    public func completeAction(_ lease: ActionLease, _ outcome: ActionOutcome, keepOutput: Bool, retryDelaySeconds: Double, webhook: ActionWebhookPlan?)
        async throws -> ActionRun
    {
        try await pool.write { db in
            let now = self.clock()
            try ActionAttemptRule.check(lease, row: try self.actionFenceRow(db, lease.id), now: now.microseconds)
            let current = try self.actionRun(db, id: lease.id)!
            let ending = ActionAttemptRule.ending(
                outcome, isAsync: current.isAsync, retryableFailures: current.retryableFailures, maxRetries: current.maxRetries,
                retryDelaySeconds: retryDelaySeconds, now: now)
            var output: Data? = nil
            var outputBytes: Int? = nil
            var failure: String? = nil
            switch outcome {
            case .succeeded(let bytes):
                output = keepOutput ? Data(bytes) : nil
                outputBytes = bytes.count
            case .failed(let error, _):
                failure = error.json
            }
            try db.execute(
                sql: """
                    UPDATE action_runs SET status = ?, output = ?, output_bytes = ?, failure = ?, heartbeat_at = NULL, next_attempt_at = ?,
                        retryable_failures = retryable_failures + ?, finished_at = ?
                    WHERE id = ?
                    """,
                arguments: [
                    ending.status.rawValue, output, outputBytes, failure, ending.nextAttemptAt?.microseconds, ending.countsRetryableFailure ? 1 : 0,
                    ending.status.isFinished ? now.microseconds : nil, lease.id,
                ])
            let run = try self.actionRun(db, id: lease.id)!
            if ending.sendsWebhook { try self.queueActionWebhook(db, run, plan: webhook, now: now) }
            return run
        }
    }

    public func actionRun(_ id: String, environment: String) async throws -> ActionRun? {
        try await pool.read { db in
            guard let run = try self.actionRun(db, id: id), run.connection.environment == environment else { return nil }
            return run
        }
    }

    public func actionRuns(environment: String, connection: ConnectionRef?, limit: Int) async throws -> [ActionRun] {
        try await pool.read { db in
            var sql = "\(Self.actionSelect) WHERE c.environment = ?"
            var arguments: StatementArguments = [environment]
            if let connection {
                sql += " AND c.provider_config_key = ? AND c.connection_id = ?"
                arguments += [connection.providerConfigKey, connection.connectionId]
            }
            sql += " ORDER BY a.created_at DESC, a.id LIMIT ?"
            arguments += [max(0, limit)]
            return try Row.fetchAll(db, sql: sql, arguments: arguments).map(Self.actionRun)
        }
    }

    public func actionLogs(_ id: String, limit: Int) async throws -> [RunLogEntry] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT at, level, message FROM action_logs WHERE action_id = ? ORDER BY id LIMIT ?", arguments: [id, max(0, limit)]).map { row in
                RunLogEntry(at: Timestamp(microseconds: row["at"]), level: LogLevel(rawValue: row["level"]) ?? .info, message: row["message"])
            }
        }
    }

    // MARK: helpers

    static let actionSelect = """
        SELECT a.id, a.action_name, a.is_async, a.status, a.output, a.output_bytes, a.failure, a.attempts, a.max_retries, a.retryable_failures,
            a.expiries, a.created_at, a.started_at, a.finished_at, a.next_attempt_at, a.worker, c.environment, c.provider_config_key, c.connection_id
        FROM action_runs a JOIN connections c ON c.id = a.connection_pk
        """

    func actionRun(_ db: Database, id: String) throws -> ActionRun? {
        try Row.fetchOne(db, sql: "\(Self.actionSelect) WHERE a.id = ?", arguments: [id]).map(Self.actionRun)
    }

    static func actionRun(_ row: Row) -> ActionRun {
        ActionRun(
            id: row["id"],
            connection: ConnectionRef(environment: row["environment"], providerConfigKey: row["provider_config_key"], connectionId: row["connection_id"]),
            actionName: row["action_name"], isAsync: row["is_async"], status: ActionRunStatus(rawValue: row["status"]) ?? .failed,
            output: (row["output"] as Data?).map { Array($0) }, outputBytes: row["output_bytes"], failure: (row["failure"] as String?).map(ActionFailure.init(json:)),
            attempts: row["attempts"], maxRetries: row["max_retries"], retryableFailures: row["retryable_failures"], expiries: row["expiries"],
            createdAt: Timestamp(microseconds: row["created_at"]), startedAt: (row["started_at"] as Int64?).map(Timestamp.init(microseconds:)),
            finishedAt: (row["finished_at"] as Int64?).map(Timestamp.init(microseconds:)),
            nextAttemptAt: (row["next_attempt_at"] as Int64?).map(Timestamp.init(microseconds:)), worker: row["worker"])
    }

    func actionFenceRow(_ db: Database, _ id: String) throws -> ActionAttemptRule.Row? {
        try Row.fetchOne(
            db, sql: "SELECT status, attempts, coalesce(heartbeat_at, 0) + lease_seconds * 1000000 AS lease_end FROM action_runs WHERE id = ?",
            arguments: [id]
        ).map { row in
            ActionAttemptRule.Row(status: ActionRunStatus(rawValue: row["status"]) ?? .failed, token: row["attempts"], leaseEnd: row["lease_end"])
        }
    }

    func insertActionLog(_ db: Database, id: String, level: LogLevel, message: String, now: Timestamp) throws {
        try db.execute(
            sql: "INSERT INTO action_logs(action_id, at, level, message) VALUES (?, ?, ?, ?)", arguments: [id, now.microseconds, level.rawValue, message])
    }

    /// The `async_action` webhook of an execution that ended, into the outbox (in the ending transaction).
    func queueActionWebhook(_ db: Database, _ run: ActionRun, plan: ActionWebhookPlan?, now: Timestamp) throws {
        guard let plan else { return }
        let body = AsyncActionWebhookBody.body(for: run)
        for url in plan.urls {
            try db.execute(
                sql: """
                    INSERT INTO webhook_deliveries(idempotency_key, environment, url, body, status, created_at, next_attempt_at, run_id,
                        provider_config_key, connection_id, sync_name, variant, model, success)
                    VALUES (?, ?, ?, ?, 'pending', ?, ?, NULL, ?, ?, ?, '', '', ?)
                    """,
                arguments: [
                    UUID().uuidString.lowercased(), run.connection.environment, url, Data(body), now.microseconds, now.microseconds,
                    run.connection.providerConfigKey, run.connection.connectionId, run.actionName, run.status == .succeeded,
                ])
        }
    }
}
