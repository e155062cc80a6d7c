import Logging
import TributaryCore
import TributaryStore

/// Runs a sync function once for one variant and records the run.
///
/// The run's life: the store records its start (and refuses a second live run of the variant),
/// the function runs against a ``SyncContext`` bound to the variant, and the store finishes it:
/// - success: records not seen in the deletion-tracking window are marked deleted (full refresh
///   with `track_deletes`), `lastSyncDate` becomes the run's start time, a full refresh's checkpoint
///   is cleared;
/// - failure (the function threw): the run is `failed` with the error's message, nothing else changes;
/// - cancellation: the run is `cancelled`, nothing else changes.
///
/// With a ``SyncWebhookPlanner``, the run's sync webhooks enter the outbox in the transaction that
/// finishes it. The executor also runs provider webhook executions (``runWebhook(_:sync:)``).
public struct SyncExecutor: Sendable {
    public let store: any Store
    public let functions: SyncFunctionRegistry
    public let logger: Logger
    /// How long a run's lease lasts without a heartbeat; a heartbeat renews it every quarter of that.
    public let leaseSeconds: Int64

    /// How often a running run checks whether it must stop (a cancel requested through the store by
    /// any process, or the run finished elsewhere); at most a quarter of the lease.
    public let stopCheckInterval: Duration
    /// How sync functions reach providers (``SyncContext/send(_:)``); nil: they cannot.
    public let providers: ProviderAccess?
    /// Which sync webhooks finished runs queue; nil: none.
    public let webhooks: SyncWebhookPlanner?

    public init(
        store: any Store, functions: SyncFunctionRegistry, providers: ProviderAccess? = nil, webhooks: SyncWebhookPlanner? = nil, logger: Logger,
        leaseSeconds: Int64 = 120, stopCheckInterval: Duration = .seconds(1)
    ) {
        self.webhooks = webhooks
        self.providers = providers
        self.store = store
        self.functions = functions
        self.logger = logger
        self.leaseSeconds = max(1, leaseSeconds)
        self.stopCheckInterval = stopCheckInterval
    }

    /// Starts a run of `sync` for `variant` and returns the finished run.
    ///
    /// - Parameter createsVariant: create the variant when it does not exist (local development, `dryrun`).
    /// - Throws: only when the run cannot start or be recorded (unknown function, the variant is
    ///   already running, a storage failure). A failing sync function does not throw here: it
    ///   yields a run with status `failed`.
    public func run(_ variant: VariantRef, sync: SyncConfig, createsVariant: Bool = true) async throws -> RunRecord {
        let function = try functions.function(for: sync)
        try Task.checkCancellation()
        let started = try await store.startRun(
            variant, RunStart(tracksDeletes: sync.detectsDeletes, leaseSeconds: leaseSeconds, createsVariant: createsVariant))
        return try await execute(started, of: variant, sync: sync) { try await function.exec($0) }
    }

    /// Runs a run a worker claimed from the store's queue (already `running`, its lease held) and
    /// returns the finished run. When no function is registered for the sync, the run fails with that reason.
    public func run(_ claimed: ClaimedRun, sync: SyncConfig) async throws -> RunRecord {
        let function: any SyncFunction
        do {
            function = try functions.function(for: sync)
        } catch {
            return try await fail(claimed.started.runId, error.message, variant: claimed.variant, sync: sync)
        }
        return try await execute(claimed.started, of: claimed.variant, sync: sync) { try await function.exec($0) }
    }

    /// Runs a provider webhook's handler on the base variant it was routed to — the sync's declarative
    /// `webhook:` handler, else its function's `onWebhook` — as a `WEBHOOK` run, and returns the
    /// finished run. Its sync webhooks say `syncType: "WEBHOOK"`.
    public func runWebhook(_ claimed: ClaimedProviderWebhook, sync: SyncConfig) async throws -> RunRecord {
        let task = claimed.task
        let payload: JSONValue
        do {
            payload = try JSONParser.parse(task.payload)
        } catch {
            return try await fail(claimed.started.runId, "The webhook's body is not valid JSON: \(error)", variant: task.variant, sync: sync)
        }
        if let handler = sync.webhookHandler {
            return try await execute(claimed.started, of: task.variant, sync: sync) { context in
                try await DeclarativeWebhookHandling(handler: handler, shape: sync.declarative).handle(payload, type: task.type, context: context)
            }
        }
        let function: any SyncFunction
        do {
            function = try functions.function(for: sync)
        } catch {
            return try await fail(claimed.started.runId, error.message, variant: task.variant, sync: sync)
        }
        return try await execute(claimed.started, of: task.variant, sync: sync) { try await function.onWebhook($0, payload: payload) }
    }

    private func execute(
        _ started: StartedRun, of variant: VariantRef, sync: SyncConfig, body: @escaping @Sendable (RunContext) async throws -> Void
    ) async throws -> RunRecord {
        var logger = self.logger
        logger[metadataKey: "run"] = "\(started.runId)"
        logger[metadataKey: "variant"] = "\(variant)"
        logger.info("run started", metadata: ["kind": "\(started.kind.rawValue)", "resumes": "\(started.resumesWindow)"])

        let context = RunContext(store: store, ref: variant, sync: sync, started: started, providers: providers, logger: logger)
        let outcome: RunOutcome
        var retry: RetryAdvice? = nil
        do {
            try await withHeartbeat(run: started.runId, logger: logger) { try await body(context) }
            // A function that swallowed cancellation and returned did not finish its work.
            outcome = Task.isCancelled ? .cancelled(reason: "The run was cancelled.") : .succeeded
        } catch is CancellationError {
            outcome = .cancelled(reason: "The run was cancelled.")
        } catch let error as TributaryError {
            outcome = .failed(message: error.message)
        } catch {
            outcome = .failed(message: String(describing: error))
            if let temporary = error as? any RetryableError { retry = RetryAdvice(afterSeconds: temporary.retryAfterSeconds) }
        }
        if case .failed(let message) = outcome {
            await context.log("Run failed: \(message)", level: .error)
        }

        let isRun = started.kind != .webhook
        let finished = try await finish(
            started.runId,
            RunCompletion(
                outcome: outcome, results: context.results, deleteUnseenModels: isRun && sync.detectsDeletes ? sync.models : [],
                clearCheckpoint: isRun && sync.syncType == .full, retry: isRun ? retry : nil),
            variant: variant, sync: sync)
        logger.info(
            "run finished",
            metadata: [
                "status": "\(finished.status.rawValue)",
                "results": "\(finished.results.sorted { $0.key < $1.key }.map { "\($0.key)+\($0.value.added)~\($0.value.updated)-\($0.value.deleted)" })",
            ])
        return finished
    }

    /// Fails a run before its function started (no function, unreadable input).
    private func fail(_ runId: Int64, _ message: String, variant: VariantRef, sync: SyncConfig) async throws -> RunRecord {
        try await finish(runId, RunCompletion(outcome: .failed(message: message), results: [:]), variant: variant, sync: sync)
    }

    /// Records the outcome with the run's sync webhooks — also when this task was cancelled: in a task
    /// that does not inherit the cancellation, awaited here.
    private func finish(_ runId: Int64, _ completion: RunCompletion, variant: VariantRef, sync: SyncConfig) async throws -> RunRecord {
        let store = self.store
        let planner = self.webhooks
        return try await Task {
            var completion = completion
            completion.webhooks = await planner?.plan(for: variant, sync: sync, store: store)
            return try await store.completeRun(runId, completion)
        }.value
    }

    /// Runs `body` while a watcher renews the run's lease every quarter of it — whether or not the
    /// function writes anything, so a long provider call does not look like a dead process — and
    /// checks every ``stopCheckInterval`` whether the run must stop; then it cancels `body`
    /// (cooperative cancellation reaches the function) and the run ends as cancelled.
    private func withHeartbeat(run: Int64, logger: Logger, _ body: @escaping @Sendable () async throws -> Void) async throws {
        let store = self.store
        let renewEvery = Duration.milliseconds(leaseSeconds * 250)
        let checkEvery = min(stopCheckInterval, renewEvery)
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                try await body()
                return true
            }
            group.addTask {
                var sinceRenewal = Duration.zero
                while true {
                    try await Task.sleep(for: checkEvery)
                    sinceRenewal += checkEvery
                    do {
                        if sinceRenewal >= renewEvery {
                            try await store.heartbeat(run: run)
                            sinceRenewal = .zero
                        }
                        if try await store.shouldStop(run: run) { return false }
                    } catch is CancellationError {
                        throw CancellationError()
                    } catch {
                        logger.warning("heartbeat failed", metadata: ["error": "\(error)"])
                    }
                }
            }
            defer { group.cancelAll() }
            // The body finishing (or throwing) ends the watcher; the watcher asking to stop cancels the body.
            if try await group.next() == false {
                logger.info("run stops: a cancel was requested, or the run was finished elsewhere")
                group.cancelAll()
                throw CancellationError()
            }
        }
    }
}
