import Foundation
import GRDB
import TributaryCore
import TributaryStore

extension SQLiteStore {
    // MARK: Outbox (inside the run-finishing transaction)

    /// Writes `run`'s sync webhooks into the outbox (nothing when `plan` is nil or the run sends none),
    /// with the checkpoint of its variant (`variantPK`) as the run left it.
    func queueWebhooks(_ db: Database, for run: RunRecord, variantPK: Int64, plan: SyncWebhookPlan?, now: Timestamp) throws {
        guard let plan else { return }
        // A stored checkpoint that no longer reads (it was written by this store) shows as null rather than losing the webhooks.
        let checkpoint = try String.fetchOne(db, sql: "SELECT checkpoint FROM sync_variants WHERE id = ?", arguments: [variantPK])
            .flatMap { try? Checkpoint(json: $0) }
        let messages = SyncWebhookBody.messages(for: run, plan: plan, checkpoint: checkpoint)
        guard !messages.isEmpty else { return }
        let insert = try db.cachedStatement(
            sql: """
                INSERT INTO webhook_deliveries(idempotency_key, environment, url, body, status, created_at, next_attempt_at, run_id,
                    provider_config_key, connection_id, sync_name, variant, model, success)
                VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
        let ref = run.variant
        for message in messages {
            try insert.execute(arguments: [
                UUID().uuidString.lowercased(), ref.connection.environment, message.url, Data(message.body), now.microseconds, now.microseconds,
                run.id, ref.connection.providerConfigKey, ref.connection.connectionId, ref.syncName, ref.variant, message.model, message.success,
            ])
        }
    }

    // MARK: Delivery

    public func claimDeliveries(now: Timestamp, limit: Int, leaseSeconds: Double) async throws -> [WebhookDelivery] {
        try await pool.write { db in
            // The head (oldest pending delivery) of each receiver's queue, when due and not claimed.
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT d.* FROM webhook_deliveries d
                    WHERE d.status = 'pending'
                        AND d.id = (SELECT min(x.id) FROM webhook_deliveries x WHERE x.url = d.url AND x.status = 'pending')
                        AND coalesce(d.next_attempt_at, 0) <= ?1 AND coalesce(d.locked_until, 0) <= ?1
                    ORDER BY coalesce(d.next_attempt_at, 0), d.id LIMIT ?2
                    """,
                arguments: [now.microseconds, limit])
            let lockedUntil = now.microseconds + Int64(leaseSeconds * 1_000_000)
            return try rows.map { row in
                try db.execute(sql: "UPDATE webhook_deliveries SET locked_until = ? WHERE id = ?", arguments: [lockedUntil, row["id"] as Int64])
                return Self.delivery(row)
            }
        }
    }

    public func recordDeliveryAttempt(_ id: Int64, _ result: DeliveryAttemptResult) async throws {
        try await pool.write { db in
            let now = self.clock()
            switch result {
            case .delivered(let code):
                try db.execute(
                    sql: """
                        UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1, last_error = NULL, last_status_code = ?,
                            delivered_at = ?, ended_at = ?, next_attempt_at = NULL, locked_until = NULL WHERE id = ?
                        """,
                    arguments: [code, now.microseconds, now.microseconds, id])
            case .retry(let error, let code, let next):
                try db.execute(
                    sql: """
                        UPDATE webhook_deliveries SET attempts = attempts + 1, last_error = ?, last_status_code = ?, next_attempt_at = ?,
                            locked_until = NULL WHERE id = ?
                        """,
                    arguments: [error, code, next.microseconds, id])
            case .gaveUp(let error, let code):
                try db.execute(
                    sql: """
                        UPDATE webhook_deliveries SET status = 'failed', attempts = attempts + 1, last_error = ?, last_status_code = ?,
                            next_attempt_at = NULL, locked_until = NULL, ended_at = ? WHERE id = ?
                        """,
                    arguments: [error, code, now.microseconds, id])
            }
        }
    }

    public func deliveries(_ query: DeliveryQuery) async throws -> [WebhookDelivery] {
        var conditions = ["environment = ?"]
        var arguments: [any DatabaseValueConvertible] = [query.environment]
        if let status = query.status {
            conditions.append("status = ?")
            arguments.append(status.rawValue)
        }
        if let key = query.providerConfigKey {
            conditions.append("provider_config_key = ?")
            arguments.append(key)
        }
        if let id = query.connectionId {
            conditions.append("connection_id = ?")
            arguments.append(id)
        }
        if let before = query.beforeId {
            conditions.append("id < ?")
            arguments.append(before)
        }
        arguments.append(query.limit)
        let sql = "SELECT * FROM webhook_deliveries WHERE \(conditions.joined(separator: " AND ")) ORDER BY id DESC LIMIT ?"
        guard let statementArguments = StatementArguments(arguments) else { return [] }
        return try await pool.read { db in try Row.fetchAll(db, sql: sql, arguments: statementArguments).map(Self.delivery) }
    }

    public func delivery(_ id: Int64, environment: String) async throws -> WebhookDelivery? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM webhook_deliveries WHERE id = ? AND environment = ?", arguments: [id, environment])
                .map(Self.delivery)
        }
    }

    public func retryDelivery(_ id: Int64, environment: String, now: Timestamp) async throws -> WebhookDelivery? {
        try await pool.write { db in
            try db.execute(
                sql: """
                    UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?, locked_until = NULL, delivered_at = NULL, ended_at = NULL
                    WHERE id = ? AND environment = ? AND status <> 'pending'
                    """,
                arguments: [now.microseconds, id, environment])
            return try Row.fetchOne(db, sql: "SELECT * FROM webhook_deliveries WHERE id = ? AND environment = ?", arguments: [id, environment])
                .map(Self.delivery)
        }
    }

    static func delivery(_ row: Row) -> WebhookDelivery {
        let body: Data = row["body"]
        return WebhookDelivery(
            id: row["id"], idempotencyKey: row["idempotency_key"], environment: row["environment"], url: row["url"], body: Array(body),
            status: DeliveryStatus(rawValue: row["status"]) ?? .pending, attempts: row["attempts"], lastError: row["last_error"],
            lastStatusCode: row["last_status_code"], createdAt: Timestamp(microseconds: row["created_at"]),
            nextAttemptAt: (row["next_attempt_at"] as Int64?).map(Timestamp.init(microseconds:)),
            deliveredAt: (row["delivered_at"] as Int64?).map(Timestamp.init(microseconds:)), runId: row["run_id"],
            connectionId: row["connection_id"], providerConfigKey: row["provider_config_key"], syncName: row["sync_name"], variant: row["variant"],
            model: row["model"], success: row["success"])
    }

    // MARK: Provider webhooks

    public func enqueueProviderWebhook(for variants: [VariantRef], type: String?, payload: [UInt8]) async throws -> [ProviderWebhookTask] {
        return try await pool.write { db in
            let now = self.clock()
            var tasks: [ProviderWebhookTask] = []
            for variant in variants {
                guard let (pk, _) = try self.lookupVariant(db, variant) else { continue }
                try db.execute(
                    sql: "INSERT INTO provider_webhook_tasks(variant_pk, type, payload, status, received_at) VALUES (?, ?, ?, 'pending', ?)",
                    arguments: [pk, type, Data(payload), now.microseconds])
                tasks.append(
                    ProviderWebhookTask(id: db.lastInsertedRowID, variant: variant, type: type, payload: payload, attempts: 0, receivedAt: now))
            }
            return tasks
        }
    }

    public func claimProviderWebhook(leaseSeconds: Int64, maxAttempts: Int) async throws -> ClaimedProviderWebhook? {
        return try await pool.write { db in
            let now = self.clock()
            while true {
                // The head of a variant's queue (its oldest open task: a variant's webhooks run one at a
                // time, in arrival order), when never claimed or claimed by a run that is no longer
                // alive (its process died — lease ran out — or it ended without finishing the task).
                guard
                    let row = try Row.fetchOne(
                        db,
                        sql: """
                            SELECT t.id, t.variant_pk, t.type, t.payload, t.attempts, t.received_at, t.run_id, r.status AS run_status
                            FROM provider_webhook_tasks t LEFT JOIN runs r ON r.id = t.run_id
                            WHERE t.status IN ('pending', 'claimed')
                                AND t.id = (SELECT min(x.id) FROM provider_webhook_tasks x WHERE x.variant_pk = t.variant_pk AND x.status IN ('pending', 'claimed'))
                                AND (t.status = 'pending' OR r.id IS NULL OR r.status <> 'running' OR r.heartbeat_at + r.lease_seconds * 1000000 <= ?)
                            ORDER BY t.id LIMIT 1
                            """,
                        arguments: [now.microseconds])
                else { return nil }
                let taskId: Int64 = row["id"]
                let variantPK: Int64 = row["variant_pk"]
                if let previous = row["run_id"] as Int64?, row["run_status"] == RunStatus.running.rawValue {
                    try self.markExpired(db, run: previous, now: now)
                }
                let attempts = (row["attempts"] as Int) + 1
                try db.execute(
                    sql: """
                        INSERT INTO runs(variant_pk, status, kind, started_at, queued_at, heartbeat_at, lease_seconds, attempts)
                        VALUES (?, 'running', 'WEBHOOK', ?, ?, ?, ?, 1)
                        """,
                    arguments: [variantPK, now.microseconds, now.microseconds, now.microseconds, leaseSeconds])
                let runId = db.lastInsertedRowID
                guard attempts <= maxAttempts else {
                    try db.execute(
                        sql: "UPDATE runs SET status = 'failed', finished_at = ?, error = ? WHERE id = ?",
                        arguments: [
                            now.microseconds, StoreMessages.webhookGivenUp(after: attempts - 1), runId,
                        ])
                    try db.execute(sql: "UPDATE provider_webhook_tasks SET status = 'failed', run_id = ? WHERE id = ?", arguments: [runId, taskId])
                    continue
                }
                try db.execute(
                    sql: "UPDATE provider_webhook_tasks SET status = 'claimed', attempts = ?, run_id = ? WHERE id = ?",
                    arguments: [attempts, runId, taskId])
                let variant = try self.variantRef(db, variantPK: variantPK)
                let (_, state) = try self.requireVariant(db, variant)
                let payload: Data = row["payload"]
                let task = ProviderWebhookTask(
                    id: taskId, variant: variant, type: row["type"], payload: Array(payload), attempts: attempts,
                    receivedAt: Timestamp(microseconds: row["received_at"]))
                let started = StartedRun(
                    lease: RunLease(runId: runId, token: 1), startedAt: now, kind: .webhook, state: state, deletionGeneration: nil, resumesWindow: false)
                return ClaimedProviderWebhook(task: task, started: started)
            }
        }
    }
}
