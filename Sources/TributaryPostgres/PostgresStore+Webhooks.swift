import Foundation
import PostgresNIO
import TributaryCore
import TributaryStore

extension PostgresStore {
    // MARK: Outbox (inside the run-finishing transaction)

    /// Writes `run`'s sync webhooks into the outbox (nothing when `plan` is nil or the run sends none),
    /// with the checkpoint of its variant (`variantPK`) as the run left it.
    func queueWebhooks(_ db: PostgresConnection, for run: RunRecord, variantPK: Int64, plan: SyncWebhookPlan?, now: Timestamp) async throws {
        guard let plan else { return }
        let ref = run.variant
        // A stored checkpoint that no longer reads (it was written by this store) shows as null rather than losing the webhooks.
        let checkpoint = try await db.one("SELECT checkpoint FROM sync_variants WHERE id = \(variantPK)", logger)?
            .optionalString("checkpoint").flatMap { try? Checkpoint(json: $0) }
        for message in SyncWebhookBody.messages(for: run, plan: plan, checkpoint: checkpoint) {
            try await db.query(
                """
                INSERT INTO webhook_deliveries(idempotency_key, environment, url, body, status, created_at, next_attempt_at, run_id,
                    provider_config_key, connection_id, sync_name, variant, model, success)
                VALUES (\(UUID().uuidString.lowercased()), \(ref.connection.environment), \(message.url), \(Data(message.body)), 'pending',
                    \(now.microseconds), \(now.microseconds), \(run.id), \(ref.connection.providerConfigKey), \(ref.connection.connectionId),
                    \(ref.syncName), \(ref.variant), \(message.model), \(message.success))
                """, logger: logger)
        }
    }

    // MARK: Delivery

    public func claimDeliveries(now: Timestamp, limit: Int, leaseSeconds: Double) async throws -> [WebhookDelivery] {
        let lockedUntil = now.microseconds + Int64(leaseSeconds * 1_000_000)
        return try await transaction { db in
            // Claims are serialised across processes, so two never take the same receiver's head.
            try await self.lock(db, .deliveries)
            // The head (oldest pending delivery) of each receiver's queue, when due and not claimed.
            return try await db.all(
                """
                UPDATE webhook_deliveries SET locked_until = \(lockedUntil)
                WHERE id IN (
                    SELECT d.id FROM webhook_deliveries d
                    WHERE d.status = 'pending'
                        AND d.id = (SELECT min(x.id) FROM webhook_deliveries x WHERE x.url = d.url AND x.status = 'pending')
                        AND coalesce(d.next_attempt_at, 0) <= \(now.microseconds) AND coalesce(d.locked_until, 0) <= \(now.microseconds)
                    ORDER BY coalesce(d.next_attempt_at, 0), d.id LIMIT \(Int64(limit)))
                RETURNING *
                """, self.logger
            ).map(Self.delivery).sorted { ($0.nextAttemptAt?.microseconds ?? 0, $0.id) < ($1.nextAttemptAt?.microseconds ?? 0, $1.id) }
        }
    }

    public func recordDeliveryAttempt(_ id: Int64, _ result: DeliveryAttemptResult) async throws {
        let now = clock()
        try await read { db in
            switch result {
            case .delivered(let code):
                try await db.query(
                    """
                    UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1, last_error = NULL, last_status_code = \(Int64(code)),
                        delivered_at = \(now.microseconds), ended_at = \(now.microseconds), next_attempt_at = NULL, locked_until = NULL WHERE id = \(id)
                    """, logger: self.logger)
            case .retry(let error, let code, let next):
                try await db.query(
                    """
                    UPDATE webhook_deliveries SET attempts = attempts + 1, last_error = \(error), last_status_code = \(code.map(Int64.init)),
                        next_attempt_at = \(next.microseconds), locked_until = NULL WHERE id = \(id)
                    """, logger: self.logger)
            case .gaveUp(let error, let code):
                try await db.query(
                    """
                    UPDATE webhook_deliveries SET status = 'failed', attempts = attempts + 1, last_error = \(error),
                        last_status_code = \(code.map(Int64.init)), next_attempt_at = NULL, locked_until = NULL, ended_at = \(now.microseconds) WHERE id = \(id)
                    """, logger: self.logger)
            }
        }
    }

    public func deliveries(_ query: DeliveryQuery) async throws -> [WebhookDelivery] {
        var binds = PostgresBindings()
        binds.append(query.environment)
        var conditions = ["environment = $1"]
        if let status = query.status {
            binds.append(status.rawValue)
            conditions.append("status = $\(binds.count)")
        }
        if let key = query.providerConfigKey {
            binds.append(key)
            conditions.append("provider_config_key = $\(binds.count)")
        }
        if let id = query.connectionId {
            binds.append(id)
            conditions.append("connection_id = $\(binds.count)")
        }
        if let before = query.beforeId {
            binds.append(before)
            conditions.append("id < $\(binds.count)")
        }
        binds.append(Int64(query.limit))
        let sql = "SELECT * FROM webhook_deliveries WHERE \(conditions.joined(separator: " AND ")) ORDER BY id DESC LIMIT $\(binds.count)"
        let statement = PostgresQuery(unsafeSQL: sql, binds: binds)
        return try await read { db in try await db.all(statement, self.logger).map(Self.delivery) }
    }

    public func delivery(_ id: Int64, environment: String) async throws -> WebhookDelivery? {
        try await read { db in
            try await db.one("SELECT * FROM webhook_deliveries WHERE id = \(id) AND environment = \(environment)", self.logger).map(Self.delivery)
        }
    }

    public func retryDelivery(_ id: Int64, environment: String, now: Timestamp) async throws -> WebhookDelivery? {
        try await transaction { db in
            try await db.query(
                """
                UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = \(now.microseconds), locked_until = NULL, delivered_at = NULL, ended_at = NULL
                WHERE id = \(id) AND environment = \(environment) AND status <> 'pending'
                """, logger: self.logger)
            return try await db.one("SELECT * FROM webhook_deliveries WHERE id = \(id) AND environment = \(environment)", self.logger)
                .map(Self.delivery)
        }
    }

    static func delivery(_ row: PostgresRandomAccessRow) throws -> WebhookDelivery {
        WebhookDelivery(
            id: try row.int64("id"), idempotencyKey: try row.string("idempotency_key"), environment: try row.string("environment"),
            url: try row.string("url"), body: try row.bytes("body"),
            status: DeliveryStatus(rawValue: try row.string("status")) ?? .pending, attempts: try row.int("attempts"),
            lastError: try row.optionalString("last_error"), lastStatusCode: try row.optionalInt("last_status_code"),
            createdAt: Timestamp(microseconds: try row.int64("created_at")),
            nextAttemptAt: try row.optionalInt64("next_attempt_at").map(Timestamp.init(microseconds:)),
            deliveredAt: try row.optionalInt64("delivered_at").map(Timestamp.init(microseconds:)), runId: try row.optionalInt64("run_id"),
            connectionId: try row.string("connection_id"), providerConfigKey: try row.string("provider_config_key"),
            syncName: try row.string("sync_name"), variant: try row.string("variant"), model: try row.string("model"),
            success: try row.bool("success"))
    }

    // MARK: Provider webhooks

    public func enqueueProviderWebhook(for variants: [VariantRef], type: String?, payload: [UInt8]) async throws -> [ProviderWebhookTask] {
        let now = clock()
        let data = Data(payload)
        return try await transaction { db in
            var tasks: [ProviderWebhookTask] = []
            for variant in variants {
                guard let (pk, _) = try await self.lookupVariant(db, variant) else { continue }
                let id = try await db.one(
                    """
                    INSERT INTO provider_webhook_tasks(variant_pk, type, payload, status, received_at)
                    VALUES (\(pk), \(type), \(data), 'pending', \(now.microseconds)) RETURNING id
                    """, self.logger)!.int64("id")
                tasks.append(ProviderWebhookTask(id: id, variant: variant, type: type, payload: payload, attempts: 0, receivedAt: now))
            }
            return tasks
        }
    }

    public func claimProviderWebhook(leaseSeconds: Int64, maxAttempts: Int) async throws -> ClaimedProviderWebhook? {
        let offset = leaseClockOffset()
        return try await transaction { db in
            // Serialised with the run queue's other changes (deletes and resets lock runs and variants in
            // that order, after this lock), so a claim never waits for them holding a task row.
            try await self.lock(db, .runQueue)
            let now = self.clock()
            // Heads whose previous run is being finished right now: left for the next claim.
            var busy: [Int64] = []
            while true {
                // The head of a variant's queue (its oldest open task: a variant's webhooks run one at a
                // time, in arrival order), when never claimed or claimed by a run that is no longer
                // alive. A head another process is claiming right now is skipped (its next task is not
                // a head while it is open), not waited for.
                guard
                    let row = try await db.one(
                        """
                        SELECT t.id, t.variant_pk, t.type, t.payload, t.attempts, t.received_at, t.run_id, r.status AS run_status
                        FROM provider_webhook_tasks t LEFT JOIN runs r ON r.id = t.run_id
                        WHERE t.status IN ('pending', 'claimed')
                            AND t.id = (SELECT min(x.id) FROM provider_webhook_tasks x WHERE x.variant_pk = t.variant_pk AND x.status IN ('pending', 'claimed'))
                            AND (t.status = 'pending' OR r.id IS NULL OR r.status <> 'running'
                                OR r.heartbeat_at + r.lease_seconds * 1000000 <= \(unescaped: Self.databaseNow) + \(offset))
                            AND t.id <> ALL(\(busy)::int8[])
                        ORDER BY t.id LIMIT 1
                        FOR UPDATE OF t SKIP LOCKED
                        """, self.logger)
                else { return nil }
                let taskId = try row.int64("id")
                let variantPK = try row.int64("variant_pk")
                if let previous = try row.optionalInt64("run_id"), try row.optionalString("run_status") == RunStatus.running.rawValue {
                    // Its run's row is locked by a transaction finishing it (run row, then task row):
                    // skip rather than wait, which could deadlock with it.
                    guard try await db.one("SELECT id FROM runs WHERE id = \(previous) FOR UPDATE SKIP LOCKED", self.logger) != nil else {
                        busy.append(taskId)
                        continue
                    }
                    try await self.markExpired(db, run: previous, now: now)
                }
                let attempts = try row.int("attempts") + 1
                let runId = try await self.insertRun(db, variantPK: variantPK, status: .running, kind: .webhook, now: now, leaseSeconds: leaseSeconds)
                try await db.query("UPDATE runs SET attempts = 1 WHERE id = \(runId)", logger: self.logger)
                guard attempts <= maxAttempts else {
                    try await db.query(
                        """
                        UPDATE runs SET status = 'failed', finished_at = \(now.microseconds), error = \(StoreMessages.webhookGivenUp(after: attempts - 1))
                        WHERE id = \(runId)
                        """, logger: self.logger)
                    try await db.query(
                        "UPDATE provider_webhook_tasks SET status = 'failed', run_id = \(runId) WHERE id = \(taskId)", logger: self.logger)
                    continue
                }
                try await db.query(
                    "UPDATE provider_webhook_tasks SET status = 'claimed', attempts = \(Int64(attempts)), run_id = \(runId) WHERE id = \(taskId)",
                    logger: self.logger)
                let (variant, state) = try await self.variant(db, variantPK: variantPK)
                let task = ProviderWebhookTask(
                    id: taskId, variant: variant, type: try row.optionalString("type"), payload: try row.bytes("payload"), attempts: attempts,
                    receivedAt: Timestamp(microseconds: try row.int64("received_at")))
                let started = StartedRun(
                    lease: RunLease(runId: runId, token: 1), startedAt: now, kind: .webhook, state: state, deletionGeneration: nil, resumesWindow: false)
                return ClaimedProviderWebhook(task: task, started: started)
            }
        }
    }
}
