import Foundation
import PostgresNIO
import TributaryCore
import TributaryStore

extension PostgresStore {
    public func startAction(_ start: ActionRunStart) async throws -> (run: ActionRun, lease: ActionLease) {
        let now = clock()
        let offset = leaseClockOffset()
        return try await transaction { db in
            let id = try await self.insertAction(db, start, status: .running, now: now, offset: offset)
            let run = try await self.actionRun(db, id: id)!
            return (run, ActionLease(id: id, token: 1))
        }
    }

    public func queueAction(_ start: ActionRunStart) async throws -> ActionRun {
        let now = clock()
        let offset = leaseClockOffset()
        return try await transaction { db in
            let id = try await self.insertAction(db, start, status: .queued, now: now, offset: offset)
            return try await self.actionRun(db, id: id)!
        }
    }

    private func insertAction(_ db: PostgresConnection, _ start: ActionRunStart, status: ActionRunStatus, now: Timestamp, offset: Int64) async throws
        -> String
    {
        let pk = try await requireConnectionPK(db, start.connection)
        let id = UUID().uuidString.lowercased()
        let running = status == .running
        // The heartbeat is on the lease clock (the database's), the rest on this process's.
        try await db.query(
            """
            INSERT INTO action_runs(id, connection_pk, action_name, is_async, status, input, attempts, max_retries, lease_seconds,
                heartbeat_at, next_attempt_at, created_at, started_at)
            VALUES (\(id), \(pk), \(start.actionName), \(start.isAsync), \(status.rawValue), \(Data(start.input)), \(Int64(running ? 1 : 0)),
                \(Int64(start.maxRetries)), \(Int64(start.leaseSeconds)),
                CASE WHEN \(running) THEN \(unescaped: Self.databaseNow) + \(offset) END, \(running ? nil : now.microseconds), \(now.microseconds),
                \(running ? now.microseconds : nil))
            """, logger: logger)
        return id
    }

    public func claimAction(worker: String, maxExpiries: Int, webhook: @escaping @Sendable (ConnectionRef, JSONObject) -> ActionWebhookPlan?) async throws
        -> ClaimedAction?
    {
        let offset = leaseClockOffset()
        return try await transaction { db in
            let now = self.clock()
            // A running execution whose lease ran out: its process died or stalled. An async one is
            // claimed again (the next attempt, same id) — or failed once it ran out too often; a
            // synchronous one is failed (the app that waited for it is gone). Rows another process
            // holds are left to it.
            while let row = try await db.one(
                """
                SELECT id, is_async, expiries + 1 AS expiries FROM action_runs
                WHERE status = 'running' AND heartbeat_at + lease_seconds * 1000000 <= \(unescaped: Self.databaseNow) + \(offset)
                ORDER BY heartbeat_at LIMIT 1 FOR UPDATE SKIP LOCKED
                """, self.logger)
            {
                let expired = try row.string("id")
                let expiries = try row.int64("expiries")
                let isAsync = try row.bool("is_async")
                if expiries >= Int64(maxExpiries) || !isAsync {
                    let failure = ActionAttemptRule.expired(after: Int(expiries))
                    try await db.query(
                        """
                        UPDATE action_runs SET status = 'failed', expiries = \(expiries), failure = \(failure.json), finished_at = \(now.microseconds),
                            heartbeat_at = NULL
                        WHERE id = \(expired)
                        """, logger: self.logger)
                    let run = try await self.actionRun(db, id: expired)!
                    if run.isAsync {
                        let config = try await db.one(
                            "SELECT c.connection_config::text AS config FROM action_runs a JOIN connections c ON c.id = a.connection_pk WHERE a.id = \(expired)",
                            self.logger)?.optionalString("config")
                        let connectionConfig = config.flatMap { try? JSONParser.parse(Array($0.utf8)).objectValue } ?? [:]
                        try await self.queueActionWebhook(db, run, plan: webhook(run.connection, connectionConfig), now: now)
                    }
                } else {
                    try await db.query(
                        """
                        UPDATE action_runs SET status = 'queued', expiries = \(expiries), next_attempt_at = \(now.microseconds), heartbeat_at = NULL
                        WHERE id = \(expired)
                        """, logger: self.logger)
                    try await self.insertActionLog(
                        db, id: expired, level: .warn, message: "The worker running this action stopped (its lease ran out); running it again.", now: now)
                }
            }
            guard
                let id = try await db.one(
                    """
                    SELECT id FROM action_runs WHERE status = 'queued' AND next_attempt_at <= \(now.microseconds)
                    ORDER BY next_attempt_at, created_at LIMIT 1 FOR UPDATE SKIP LOCKED
                    """, self.logger)?.string("id")
            else { return nil }
            try await db.query(
                """
                UPDATE action_runs SET status = 'running', attempts = attempts + 1, heartbeat_at = \(unescaped: Self.databaseNow) + \(offset),
                    next_attempt_at = NULL, started_at = coalesce(started_at, \(now.microseconds)), worker = \(worker)
                WHERE id = \(id)
                """, logger: self.logger)
            let run = try await self.actionRun(db, id: id)!
            let input = try await db.one("SELECT input FROM action_runs WHERE id = \(id)", self.logger)?.bytes("input") ?? Array("null".utf8)
            return ClaimedAction(run: run, lease: ActionLease(id: id, token: Int64(run.attempts)), input: input)
        }
    }

    public func releaseAction(_ lease: ActionLease, reason: String) async throws {
        let now = clock()
        let offset = leaseClockOffset()
        try await transaction { db in
            let (row, leaseNow) = try await self.actionFence(db, lease.id, offset: offset)
            try ActionAttemptRule.check(lease, row: row, now: leaseNow)
            try await db.query(
                "UPDATE action_runs SET status = 'queued', heartbeat_at = NULL, next_attempt_at = \(now.microseconds) WHERE id = \(lease.id)",
                logger: self.logger)
            try await self.insertActionLog(db, id: lease.id, level: .warn, message: reason, now: now)
        }
    }

    public func renewActionLease(_ lease: ActionLease) async throws -> LeaseState {
        let offset = leaseClockOffset()
        return try await transaction { db in
            let (row, now) = try await self.actionFence(db, lease.id, offset: offset)
            let state = ActionAttemptRule.state(of: lease, row: row, now: now)
            if state.isHeld {
                try await db.query("UPDATE action_runs SET heartbeat_at = \(now) WHERE id = \(lease.id)", logger: self.logger)
            }
            return state
        }
    }

    public func appendActionLog(_ lease: ActionLease, level: LogLevel, message: String) async throws {
        let now = clock()
        let offset = leaseClockOffset()
        try await transaction { db in
            let (row, leaseNow) = try await self.actionFence(db, lease.id, offset: offset)
            try ActionAttemptRule.check(lease, row: row, now: leaseNow)
            try await self.insertActionLog(db, id: lease.id, level: level, message: message, now: now)
        }
    }

    public func changeMetadata(_ metadata: JSONObject, merge: Bool, for lease: ActionLease) async throws {
        let now = clock()
        let offset = leaseClockOffset()
        try await transaction { db in
            let (row, leaseNow) = try await self.actionFence(db, lease.id, offset: offset)
            try ActionAttemptRule.check(lease, row: row, now: leaseNow)
            let pk = try await db.one("SELECT connection_pk FROM action_runs WHERE id = \(lease.id)", self.logger)!.int64("connection_pk")
            try await self.changeMetadata(db, connectionPKs: [pk], now: now) { merge ? $0.shallowMerging(metadata) : metadata }
        }
    }

    public func completeAction(_ lease: ActionLease, _ outcome: ActionOutcome, keepOutput: Bool, retryDelaySeconds: Double, webhook: ActionWebhookPlan?)
        async throws -> ActionRun
    {
        let now = clock()
        let offset = leaseClockOffset()
        return try await transaction { db in
            let (row, leaseNow) = try await self.actionFence(db, lease.id, offset: offset)
            try ActionAttemptRule.check(lease, row: row, now: leaseNow)
            let current = try await self.actionRun(db, id: lease.id)!
            let ending = ActionAttemptRule.ending(
                outcome, isAsync: current.isAsync, retryableFailures: current.retryableFailures, maxRetries: current.maxRetries,
                retryDelaySeconds: retryDelaySeconds, now: now)
            var output: Data? = nil
            var outputBytes: Int64? = nil
            var failure: String? = nil
            switch outcome {
            case .succeeded(let bytes):
                output = keepOutput ? Data(bytes) : nil
                outputBytes = Int64(bytes.count)
            case .failed(let error, _):
                failure = error.json
            }
            try await db.query(
                """
                UPDATE action_runs SET status = \(ending.status.rawValue), output = \(output), output_bytes = \(outputBytes), failure = \(failure),
                    heartbeat_at = NULL, next_attempt_at = \(ending.nextAttemptAt?.microseconds),
                    retryable_failures = retryable_failures + \(Int64(ending.countsRetryableFailure ? 1 : 0)),
                    finished_at = \(ending.status.isFinished ? now.microseconds : nil)
                WHERE id = \(lease.id)
                """, logger: self.logger)
            let run = try await self.actionRun(db, id: lease.id)!
            if ending.sendsWebhook { try await self.queueActionWebhook(db, run, plan: webhook, now: now) }
            return run
        }
    }

    public func actionRun(_ id: String, environment: String) async throws -> ActionRun? {
        try await read { db in
            guard let run = try await self.actionRun(db, id: id), run.connection.environment == environment else { return nil }
            return run
        }
    }

    public func actionRuns(environment: String, connection: ConnectionRef?, limit: Int) async throws -> [ActionRun] {
        try await read { db in
            let rows: [PostgresRandomAccessRow]
            if let connection {
                rows = try await db.all(
                    """
                    \(unescaped: Self.actionSelect) WHERE c.environment = \(environment) AND c.provider_config_key = \(connection.providerConfigKey)
                        AND c.connection_id = \(connection.connectionId)
                    ORDER BY a.created_at DESC, a.id LIMIT \(Int64(max(0, limit)))
                    """, self.logger)
            } else {
                rows = try await db.all(
                    "\(unescaped: Self.actionSelect) WHERE c.environment = \(environment) ORDER BY a.created_at DESC, a.id LIMIT \(Int64(max(0, limit)))",
                    self.logger)
            }
            return try rows.map(Self.actionRun)
        }
    }

    public func actionLogs(_ id: String, limit: Int) async throws -> [RunLogEntry] {
        try await read { db in
            try await db.all("SELECT at, level, message FROM action_logs WHERE action_id = \(id) ORDER BY id LIMIT \(Int64(max(0, limit)))", self.logger)
                .map { row in
                    RunLogEntry(
                        at: Timestamp(microseconds: try row.int64("at")), level: LogLevel(rawValue: try row.string("level")) ?? .info,
                        message: try row.string("message"))
                }
        }
    }

    // MARK: helpers

    static let actionSelect = """
        SELECT a.id, a.action_name, a.is_async, a.status, a.output, a.output_bytes, a.failure, a.attempts, a.max_retries, a.retryable_failures,
            a.expiries, a.created_at, a.started_at, a.finished_at, a.next_attempt_at, a.worker, c.environment, c.provider_config_key, c.connection_id
        FROM action_runs a JOIN connections c ON c.id = a.connection_pk
        """

    func actionRun(_ db: PostgresConnection, id: String) async throws -> ActionRun? {
        try await db.one("\(unescaped: Self.actionSelect) WHERE a.id = \(id)", logger).map(Self.actionRun)
    }

    static func actionRun(_ row: PostgresRandomAccessRow) throws -> ActionRun {
        ActionRun(
            id: try row.string("id"),
            connection: ConnectionRef(
                environment: try row.string("environment"), providerConfigKey: try row.string("provider_config_key"),
                connectionId: try row.string("connection_id")),
            actionName: try row.string("action_name"), isAsync: try row.bool("is_async"),
            status: ActionRunStatus(rawValue: try row.string("status")) ?? .failed, output: try row.optionalBytes("output"),
            outputBytes: try row.optionalInt("output_bytes"), failure: try row.optionalString("failure").map(ActionFailure.init(json:)),
            attempts: try row.int("attempts"), maxRetries: try row.int("max_retries"), retryableFailures: try row.int("retryable_failures"),
            expiries: try row.int("expiries"), createdAt: Timestamp(microseconds: try row.int64("created_at")),
            startedAt: try row.optionalInt64("started_at").map(Timestamp.init(microseconds:)),
            finishedAt: try row.optionalInt64("finished_at").map(Timestamp.init(microseconds:)),
            nextAttemptAt: try row.optionalInt64("next_attempt_at").map(Timestamp.init(microseconds:)), worker: try row.optionalString("worker"))
    }

    /// The execution's fence row (locked) and the lease clock's now.
    func actionFence(_ db: PostgresConnection, _ id: String, offset: Int64) async throws -> (ActionAttemptRule.Row?, Int64) {
        let row = try await db.one(
            """
            SELECT status, attempts, coalesce(heartbeat_at, 0) + lease_seconds * 1000000 AS lease_end, \(unescaped: Self.databaseNow) + \(offset) AS lease_now
            FROM action_runs WHERE id = \(id) FOR UPDATE
            """, logger)
        guard let row else {
            let now = try await db.one("SELECT \(unescaped: Self.databaseNow) + \(offset) AS lease_now", logger)?.int64("lease_now") ?? 0
            return (nil, now)
        }
        return (
            ActionAttemptRule.Row(
                status: ActionRunStatus(rawValue: try row.string("status")) ?? .failed, token: try row.int64("attempts"),
                leaseEnd: try row.int64("lease_end")),
            try row.int64("lease_now")
        )
    }

    func insertActionLog(_ db: PostgresConnection, id: String, level: LogLevel, message: String, now: Timestamp) async throws {
        try await db.query(
            "INSERT INTO action_logs(action_id, at, level, message) VALUES (\(id), \(now.microseconds), \(level.rawValue), \(message))", logger: logger)
    }

    /// The `async_action` webhook of an execution that ended, into the outbox (in the ending transaction).
    func queueActionWebhook(_ db: PostgresConnection, _ run: ActionRun, plan: ActionWebhookPlan?, now: Timestamp) async throws {
        guard let plan else { return }
        let body = Data(AsyncActionWebhookBody.body(for: run))
        for url in plan.urls {
            try await db.query(
                """
                INSERT INTO webhook_deliveries(idempotency_key, environment, url, body, status, created_at, next_attempt_at, run_id,
                    provider_config_key, connection_id, sync_name, variant, model, success)
                VALUES (\(UUID().uuidString.lowercased()), \(run.connection.environment), \(url), \(body), 'pending', \(now.microseconds),
                    \(now.microseconds), NULL, \(run.connection.providerConfigKey), \(run.connection.connectionId), \(run.actionName), '', '',
                    \(run.status == .succeeded))
                """, logger: logger)
        }
    }
}
