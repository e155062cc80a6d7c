import TributaryCore

/// Which sync webhooks a finishing run (or webhook execution) queues, decided by the engine from the
/// environment's settings and the connection's override; the store turns it into outbox rows in the
/// transaction that finishes the run (``SyncWebhookBody``).
public struct SyncWebhookPlan: Sendable, Hashable {
    /// Receivers; every message goes to each.
    public var urls: [String]
    /// Also send for models with no changes.
    public var sendOnZeroChanges: Bool
    /// Send one failure webhook when the run fails.
    public var sendOnFailure: Bool
    /// The sync's models, in configuration order (one success webhook each; the failure webhook names them all).
    public var models: [String]
    /// The integration's credential query parameters, removed from links in the checkpoint a
    /// webhook carries (``Checkpoint/redactingLinkCredentials(_:)``).
    public var linkCredentials: Set<String>

    public init(urls: [String], sendOnZeroChanges: Bool, sendOnFailure: Bool, models: [String], linkCredentials: Set<String> = []) {
        self.urls = urls
        self.sendOnZeroChanges = sendOnZeroChanges
        self.sendOnFailure = sendOnFailure
        self.models = models
        self.linkCredentials = linkCredentials
    }
}

/// One webhook to one receiver, as the outbox holds it.
public struct OutboxMessage: Sendable, Hashable {
    public var url: String
    /// The exact body bytes sent (and signed) on every attempt.
    public var body: [UInt8]
    /// What the webhook is about, for listing: the model (or models, comma-separated, on failure).
    public var model: String
    public var success: Bool

    public init(url: String, body: [UInt8], model: String, success: Bool) {
        self.url = url
        self.body = body
        self.model = model
        self.success = success
    }
}

/// Where a webhook delivery stands.
public enum DeliveryStatus: String, Sendable, Hashable, CaseIterable {
    /// Waiting for its first or next attempt.
    case pending
    /// The receiver answered 2xx.
    case delivered
    /// Given up: the receiver refused it (a 4xx other than 408/429), or kept failing past the give-up time.
    case failed
}

/// A webhook to the app and its delivery history (`GET /webhooks/deliveries`).
public struct WebhookDelivery: Sendable, Hashable {
    public var id: Int64
    /// Stable across attempts; sent as `Idempotency-Key` so a receiver can drop a repeat.
    public var idempotencyKey: String
    public var environment: String
    public var url: String
    public var body: [UInt8]
    public var status: DeliveryStatus
    /// Attempts made so far.
    public var attempts: Int
    /// The last attempt's error (status code and a short reason, or the network error); nil once delivered.
    public var lastError: String?
    /// The last attempt's HTTP status, if the receiver answered.
    public var lastStatusCode: Int?
    public var createdAt: Timestamp
    public var nextAttemptAt: Timestamp?
    public var deliveredAt: Timestamp?
    /// The run (or webhook execution) that produced it.
    public var runId: Int64?
    public var connectionId: String
    public var providerConfigKey: String
    public var syncName: String
    public var variant: String
    public var model: String
    public var success: Bool

    public init(
        id: Int64, idempotencyKey: String, environment: String, url: String, body: [UInt8], status: DeliveryStatus, attempts: Int,
        lastError: String?, lastStatusCode: Int?, createdAt: Timestamp, nextAttemptAt: Timestamp?, deliveredAt: Timestamp?, runId: Int64?,
        connectionId: String, providerConfigKey: String, syncName: String, variant: String, model: String, success: Bool
    ) {
        self.id = id
        self.idempotencyKey = idempotencyKey
        self.environment = environment
        self.url = url
        self.body = body
        self.status = status
        self.attempts = attempts
        self.lastError = lastError
        self.lastStatusCode = lastStatusCode
        self.createdAt = createdAt
        self.nextAttemptAt = nextAttemptAt
        self.deliveredAt = deliveredAt
        self.runId = runId
        self.connectionId = connectionId
        self.providerConfigKey = providerConfigKey
        self.syncName = syncName
        self.variant = variant
        self.model = model
        self.success = success
    }
}

/// What one delivery attempt came to (``Store/recordDeliveryAttempt(_:_:)``).
public enum DeliveryAttemptResult: Sendable, Hashable {
    case delivered(statusCode: Int)
    /// Failed; try again at `nextAttemptAt`.
    case retry(error: String, statusCode: Int?, nextAttemptAt: Timestamp)
    /// Failed for good.
    case gaveUp(error: String, statusCode: Int?)
}

/// Which deliveries to list.
public struct DeliveryQuery: Sendable, Hashable {
    public var environment: String
    public var status: DeliveryStatus?
    public var providerConfigKey: String?
    public var connectionId: String?
    /// Only deliveries with a smaller id (paging backwards from the newest).
    public var beforeId: Int64?
    public var limit: Int

    public init(
        environment: String, status: DeliveryStatus? = nil, providerConfigKey: String? = nil, connectionId: String? = nil, beforeId: Int64? = nil,
        limit: Int = 100
    ) {
        self.environment = environment
        self.status = status
        self.providerConfigKey = providerConfigKey
        self.connectionId = connectionId
        self.beforeId = beforeId
        self.limit = limit
    }
}

/// A provider webhook accepted for one (connection, sync), waiting for a worker to run its handler
/// on the base variant. Kept until handled, so an accepted webhook survives a restart.
public struct ProviderWebhookTask: Sendable, Hashable {
    public var id: Int64
    /// The base variant of the sync whose handler runs.
    public var variant: VariantRef
    /// The webhook's type (nil when the integration does not say where it is).
    public var type: String?
    /// The body as the provider sent it.
    public var payload: [UInt8]
    /// Claims so far (a claim whose worker died is taken over once its lease runs out).
    public var attempts: Int
    public var receivedAt: Timestamp

    public init(id: Int64, variant: VariantRef, type: String?, payload: [UInt8], attempts: Int, receivedAt: Timestamp) {
        self.id = id
        self.variant = variant
        self.type = type
        self.payload = payload
        self.attempts = attempts
        self.receivedAt = receivedAt
    }
}

/// A provider webhook task a worker claimed: a `running` run of kind `WEBHOOK` was opened for it.
public struct ClaimedProviderWebhook: Sendable {
    public var task: ProviderWebhookTask
    /// The run recording this execution (logs, results, outcome).
    public var started: StartedRun

    public init(task: ProviderWebhookTask, started: StartedRun) {
        self.task = task
        self.started = started
    }
}
