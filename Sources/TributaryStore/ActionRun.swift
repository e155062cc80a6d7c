import TributaryCore

/// Where an action execution stands.
public enum ActionRunStatus: String, Sendable, Hashable, CaseIterable {
    /// An async action waiting for a worker (first attempt, a retry, or after its worker died).
    case queued
    case running
    case succeeded
    /// Failed for good: no retry left, or an error that is not retried.
    case failed

    public var isFinished: Bool { self == .succeeded || self == .failed }
}

/// What starts an action execution.
public struct ActionRunStart: Sendable, Hashable {
    public var connection: ConnectionRef
    public var actionName: String
    /// The input as the app sent it (JSON text).
    public var input: [UInt8]
    /// `X-Async: true`: queued for a worker; the app reads the result with `GET /action/{id}`.
    public var isAsync: Bool
    /// How often a ``RetryableError`` runs it again (`X-Max-Retries`, 0…5).
    public var maxRetries: Int
    /// How long an attempt holds the execution without a heartbeat.
    public var leaseSeconds: Int

    public init(connection: ConnectionRef, actionName: String, input: [UInt8], isAsync: Bool, maxRetries: Int = 0, leaseSeconds: Int) {
        self.connection = connection
        self.actionName = actionName
        self.input = input
        self.isAsync = isAsync
        self.maxRetries = maxRetries
        self.leaseSeconds = leaseSeconds
    }
}

/// The lease an attempt of an action execution holds: every write it makes presents it
/// (``ActionFence``), so an attempt that lost it (its worker was presumed dead and another took over)
/// writes nothing.
public struct ActionLease: Sendable, Hashable, CustomStringConvertible {
    /// The execution's id (a UUID; also its idempotency key).
    public var id: String
    /// The attempt the lease was handed out for (1 for the first).
    public var token: Int64

    public init(id: String, token: Int64) {
        self.id = id
        self.token = token
    }

    public var description: String { "action \(id) attempt \(token)" }
}

/// Why an action execution failed, as the app is answered: the HTTP status and Nango's error body
/// (`{"error": {"code", "message", "payload"?}}`).
public struct ActionFailure: Sendable, Hashable, Error {
    public var status: Int
    public var code: String
    public var message: String
    /// An ``ActionError``'s payload.
    public var payload: JSONObject?

    public init(status: Int, code: String, message: String, payload: JSONObject? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.payload = payload
    }

    /// `{"error": {"code", "message", "payload"?}}`.
    public var body: JSONValue {
        var error: JSONObject = ["code": .string(code), "message": .string(message)]
        if let payload { error["payload"] = .object(payload) }
        return ["error": .object(error)]
    }

    /// The stored form: `{"status", "code", "message", "payload"?}`.
    public var json: String {
        var object: JSONObject = ["status": .number(JSONNumber(status)), "code": .string(code), "message": .string(message)]
        if let payload { object["payload"] = .object(payload) }
        return JSONWriter.string(.object(object))
    }

    /// Reads the stored form; a row that does not read is a plain failure.
    public init(json: String) {
        let object = (try? JSONParser.parse(json))?.objectValue ?? [:]
        let status = object["status"]?.int64Value.flatMap { Int(exactly: $0) } ?? 500
        self.init(
            status: (400...599).contains(status) ? status : 500, code: object["code"]?.stringValue ?? "action_script_failure",
            message: object["message"]?.stringValue ?? "The action failed.", payload: object["payload"]?.objectValue)
    }
}

/// How an attempt ended.
public enum ActionOutcome: Sendable, Hashable {
    /// The output's JSON text.
    case succeeded(output: [UInt8])
    /// `retryable`: a ``RetryableError`` (run again while retries are left).
    case failed(ActionFailure, retryable: Bool)
}

/// One action execution as recorded.
public struct ActionRun: Sendable, Hashable {
    public var id: String
    public var connection: ConnectionRef
    public var actionName: String
    public var isAsync: Bool
    public var status: ActionRunStatus
    /// The output's JSON text, kept for async executions until the history is pruned.
    public var output: [UInt8]?
    /// The output's size (also for a synchronous execution, whose output is not kept).
    public var outputBytes: Int?
    public var failure: ActionFailure?
    /// Attempts so far (the token of the latest).
    public var attempts: Int
    public var maxRetries: Int
    /// Attempts that failed with a retryable error.
    public var retryableFailures: Int
    /// Attempts whose lease ran out (their worker died or stalled).
    public var expiries: Int
    public var createdAt: Timestamp
    public var startedAt: Timestamp?
    public var finishedAt: Timestamp?
    /// When a queued execution may be claimed.
    public var nextAttemptAt: Timestamp?
    /// The worker (`host/pid`) of the latest attempt.
    public var worker: String?

    public init(
        id: String, connection: ConnectionRef, actionName: String, isAsync: Bool, status: ActionRunStatus, output: [UInt8]? = nil,
        outputBytes: Int? = nil, failure: ActionFailure? = nil, attempts: Int = 0, maxRetries: Int = 0, retryableFailures: Int = 0,
        expiries: Int = 0, createdAt: Timestamp, startedAt: Timestamp? = nil, finishedAt: Timestamp? = nil, nextAttemptAt: Timestamp? = nil,
        worker: String? = nil
    ) {
        self.id = id
        self.connection = connection
        self.actionName = actionName
        self.isAsync = isAsync
        self.status = status
        self.output = output
        self.outputBytes = outputBytes
        self.failure = failure
        self.attempts = attempts
        self.maxRetries = maxRetries
        self.retryableFailures = retryableFailures
        self.expiries = expiries
        self.createdAt = createdAt
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.nextAttemptAt = nextAttemptAt
        self.worker = worker
    }

    /// The path the app polls: `/action/{id}` (Nango's `statusUrl`).
    public var statusURL: String { "/action/\(id)" }
}

/// An attempt a worker claimed: the execution and the lease its writes present.
public struct ClaimedAction: Sendable, Hashable {
    public var run: ActionRun
    public var lease: ActionLease
    /// The input's JSON text.
    public var input: [UInt8]

    public init(run: ActionRun, lease: ActionLease, input: [UInt8]) {
        self.run = run
        self.lease = lease
        self.input = input
    }
}

/// Where an async action's `async_action` webhook goes when it ends (nil: the environment sends none).
public struct ActionWebhookPlan: Sendable, Hashable {
    public var urls: [String]

    public init(urls: [String]) { self.urls = urls }
}
