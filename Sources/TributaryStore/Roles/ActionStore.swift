import TributaryCore

/// Action executions (`POST /action/trigger`): their rows, leases, logs and results. A synchronous
/// execution is started running by the API process; an async one is queued and claimed by a worker
/// (``claimAction(worker:maxExpiries:webhook:)``), and one whose worker died is claimed again after its
/// lease, as its next attempt with the same id — the idempotency key the action passes on.
public protocol ActionStore: Sendable {
    /// Records a synchronous execution, running as attempt 1 under the returned lease.
    /// - Throws: `unknown_connection` when the connection does not exist.
    func startAction(_ start: ActionRunStart) async throws -> (run: ActionRun, lease: ActionLease)
    /// Queues an async execution for a worker.
    /// - Throws: `unknown_connection` when the connection does not exist.
    func queueAction(_ start: ActionRunStart) async throws -> ActionRun
    /// Claims the oldest due async execution: a queued one whose time came, or a running one whose
    /// lease ran out (its next attempt; an execution whose lease ran out `maxExpiries` times is
    /// failed instead, its webhook going where `webhook` says for its connection and
    /// `connection_config`). Nil when there is none. Time is the store's, read in the transaction.
    func claimAction(worker: String, maxExpiries: Int, webhook: @escaping @Sendable (ConnectionRef, JSONObject) -> ActionWebhookPlan?) async throws
        -> ClaimedAction?
    /// Puts a running async execution back in the queue at once (fenced): its worker is stopping.
    /// The next claim is its next attempt; no lease expiry is counted.
    func releaseAction(_ lease: ActionLease, reason: String) async throws
    /// Renews the lease (a heartbeat) and answers whether it is still held.
    func renewActionLease(_ lease: ActionLease) async throws -> LeaseState
    /// Appends a line to the execution's log (fenced).
    func appendActionLog(_ lease: ActionLease, level: LogLevel, message: String) async throws
    /// Replaces or merges the metadata of the execution's connection (fenced).
    func changeMetadata(_ metadata: JSONObject, merge: Bool, for lease: ActionLease) async throws
    /// Ends the attempt (fenced, one transaction, ``ActionAttemptRule``): succeeded; failed for good;
    /// or, for a retryable failure with retries left, queued again with backoff. An async execution
    /// that ends queues its `async_action` webhook (``AsyncActionWebhookBody``) under `webhook`.
    @discardableResult
    func completeAction(_ lease: ActionLease, _ outcome: ActionOutcome, keepOutput: Bool, retryDelaySeconds: Double, webhook: ActionWebhookPlan?)
        async throws -> ActionRun
    /// The execution with `id` in `environment`.
    func actionRun(_ id: String, environment: String) async throws -> ActionRun?
    /// Executions of the environment (optionally one connection's), newest first.
    func actionRuns(environment: String, connection: ConnectionRef?, limit: Int) async throws -> [ActionRun]
    /// The execution's log lines, oldest first.
    func actionLogs(_ id: String, limit: Int) async throws -> [RunLogEntry]
}
