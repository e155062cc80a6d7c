import Logging
import Synchronization
import TributaryCore
import TributaryStore

/// Runs a sync function once for one variant and records the run.
///
/// The run's life: the store records its start (and refuses a second live run of the variant) and
/// hands out its lease (``RunLease``); the function runs against a ``SyncContext`` whose every write
/// presents the lease; a watcher renews the lease and stops the function as soon as the lease is
/// lost (the run was ended by a cancel, reset or delete from any process, expired, or taken over);
/// and the store finishes the run in one transaction (``RunLeaseStore/completeRun(_:_:)``):
/// - success: records not seen in the deletion-tracking window are marked deleted (full refresh
///   with `track_deletes`), `lastSyncDate` becomes the run's first start, a full refresh's
///   checkpoint is cleared;
/// - failure (the function threw): the run is `failed` with the error's message;
/// - cancellation: the run is `cancelled` — or, when ``Options/requeuesWhenCancelled`` says so (a
///   graceful shutdown), queued again to resume from its checkpoint;
/// - in every case the variant's next run is planned there (``Options/nextRun``), and the run's sync
///   webhooks enter the outbox.
///
/// A run whose lease is gone records nothing: whoever ended it recorded its end.
public struct SyncExecutor: Sendable {
    public let store: any Store
    public let functions: SyncFunctionRegistry
    public let logger: Logger
    /// How long a run's lease lasts without a heartbeat; a heartbeat renews it every quarter of that.
    public let leaseSeconds: Int64

    /// How often a running run checks that it still holds its lease (a cancel, reset or delete
    /// through the store by any process ends it); at most a quarter of the lease.
    public let stopCheckInterval: Duration
    /// How sync functions reach providers (``SyncContext/send(_:)``); nil: they cannot.
    public let providers: ProviderAccess?
    /// Which sync webhooks finished runs queue; nil: none.
    public let webhooks: SyncWebhookPlanner?
    /// Where run, record and store-write figures go.
    public let metrics: TributaryMetrics
    /// Where a run's span (and its provider-call and store-write children) goes.
    public let tracer: TributaryTracer

    /// How one execution is driven by its worker.
    public struct Options: Sendable {
        /// Stops the function from outside (a local cancel, a shutdown); nil: only the lease stops it.
        public var stop: RunStop?
        /// How the variant's next run is planned when the run ends (nil: `next_run_at` is left alone —
        /// `dryrun`, tests).
        public var nextRun: (@Sendable () -> NextRunPlan)?
        /// Asked when the function stopped cancelled: true queues the run again instead of finishing it.
        public var requeuesWhenCancelled: @Sendable () -> Bool

        public init(
            stop: RunStop? = nil, nextRun: (@Sendable () -> NextRunPlan)? = nil, requeuesWhenCancelled: @escaping @Sendable () -> Bool = { false }
        ) {
            self.stop = stop
            self.nextRun = nextRun
            self.requeuesWhenCancelled = requeuesWhenCancelled
        }
    }

    public init(
        store: any Store, functions: SyncFunctionRegistry, providers: ProviderAccess? = nil, webhooks: SyncWebhookPlanner? = nil, logger: Logger,
        leaseSeconds: Int64 = 120, stopCheckInterval: Duration = .seconds(1), metrics: TributaryMetrics = .disabled, tracer: TributaryTracer = .disabled
    ) {
        self.metrics = metrics
        self.tracer = tracer
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
    ///   already running, a storage failure, the run was ended or deleted elsewhere while it ran —
    ///   `unknown_run` then). A failing sync function does not throw here: it yields a run with status `failed`.
    public func run(_ variant: VariantRef, sync: SyncConfig, createsVariant: Bool = true, options: Options = Options()) async throws -> RunRecord {
        let function = try functions.function(for: sync)
        try Task.checkCancellation()
        let started = try await store.startRun(
            variant, RunStart(tracksDeletes: sync.detectsDeletes, leaseSeconds: leaseSeconds, createsVariant: createsVariant))
        return try await execute(started, of: variant, sync: sync, options: options) { try await function.exec($0) }
    }

    /// Runs a run a worker claimed from the store's queue (already `running`, its lease held) and
    /// returns the run as it ended. When no function is registered for the sync, the run fails with that reason.
    public func run(_ claimed: ClaimedRun, sync: SyncConfig, options: Options = Options()) async throws -> RunRecord {
        Failpoint.hit("run.claimed")
        let function: any SyncFunction
        do {
            function = try functions.function(for: sync)
        } catch {
            return try await fail(claimed.started, error.message, variant: claimed.variant, sync: sync, options: options)
        }
        return try await execute(claimed.started, of: claimed.variant, sync: sync, options: options) { try await function.exec($0) }
    }

    /// Runs a provider webhook's handler on the base variant it was routed to — the sync's declarative
    /// `webhook:` handler, else its function's `onWebhook` — as a `WEBHOOK` run, and returns the
    /// finished run. Its sync webhooks say `syncType: "WEBHOOK"`.
    public func runWebhook(_ claimed: ClaimedProviderWebhook, sync: SyncConfig, options: Options = Options()) async throws -> RunRecord {
        let task = claimed.task
        let payload: JSONValue
        do {
            payload = try JSONParser.parse(task.payload)
        } catch {
            return try await fail(claimed.started, "The webhook's body is not valid JSON: \(error)", variant: task.variant, sync: sync, options: options)
        }
        if let handler = sync.webhookHandler {
            return try await execute(claimed.started, of: task.variant, sync: sync, options: options) { context in
                try await DeclarativeWebhookHandling(handler: handler, shape: sync.declarative).handle(payload, type: task.type, context: context)
            }
        }
        let function: any SyncFunction
        do {
            function = try functions.function(for: sync)
        } catch {
            return try await fail(claimed.started, error.message, variant: task.variant, sync: sync, options: options)
        }
        return try await execute(claimed.started, of: task.variant, sync: sync, options: options) { try await function.onWebhook($0, payload: payload) }
    }

    private func execute(
        _ started: StartedRun, of variant: VariantRef, sync: SyncConfig, options: Options, body: @escaping @Sendable (RunContext) async throws -> Void
    ) async throws -> RunRecord {
        try await traced(started, of: variant) { try await executeInSpan(started, of: variant, sync: sync, options: options, body: body) }
    }

    /// Runs one attempt inside its `tributary.run` span: the span names the variant, the run and its
    /// attempt, and when the attempt ends, its status and what it changed; a failed run fails the span.
    private func traced(_ started: StartedRun, of variant: VariantRef, _ attempt: () async throws -> RunRecord) async throws -> RunRecord {
        try await tracer.span(TributaryTracer.Name.run) { span in
            TributaryTracer.annotate(span, variant: variant)
            span?.attributes["tributary.run_id"] = started.runId
            span?.attributes["tributary.run.kind"] = started.kind.rawValue
            span?.attributes["tributary.run.attempt"] = started.attempt
            if let queuedAt = started.queuedAt {
                span?.attributes["tributary.run.queue_wait_seconds"] = Double(started.startedAt.microseconds - queuedAt.microseconds) / 1e6
            }
            let finished = try await attempt()
            if let span {
                span.attributes["tributary.run.status"] = finished.status.rawValue
                let changed = finished.results.values.reduce(ModelResult(), +)
                span.attributes["tributary.records.added"] = changed.added
                span.attributes["tributary.records.updated"] = changed.updated
                span.attributes["tributary.records.deleted"] = changed.deleted
                if finished.status == .failed { TributaryTracer.fail(span, finished.error ?? "The run failed.") }
            }
            return finished
        }
    }

    private func executeInSpan(
        _ started: StartedRun, of variant: VariantRef, sync: SyncConfig, options: Options, body: @escaping @Sendable (RunContext) async throws -> Void
    ) async throws -> RunRecord {
        var logger = self.logger
        logger[metadataKey: "run"] = "\(started.runId)"
        logger[metadataKey: "variant"] = "\(variant)"
        logger.info(
            "run started",
            metadata: ["kind": "\(started.kind.rawValue)", "attempt": "\(started.attempt)", "resumes": "\(started.resumesWindow)"])

        let began = ContinuousClock.now
        metrics.runStarted(
            variant, kind: started.kind, queuedSeconds: started.queuedAt.map { Double(started.startedAt.microseconds - $0.microseconds) / 1e6 })
        let context = RunContext(store: store, ref: variant, sync: sync, started: started, providers: providers, metrics: metrics, tracer: tracer, logger: logger)
        let watch = LeaseWatch()
        var outcome: RunOutcome
        var retry: RetryAdvice? = nil
        do {
            try await runFunction(lease: started.lease, watch: watch, stop: options.stop, logger: logger) { try await body(context) }
            // A function that swallowed cancellation and returned did not finish its work.
            outcome = options.stop?.isStopped == true || Task.isCancelled ? .cancelled(reason: "The run was cancelled.") : .succeeded
        } catch is CancellationError {
            outcome = .cancelled(reason: "The run was cancelled.")
        } catch let error as TributaryError where error.code == .leaseLost || error.code == .runNotRunning || error.code == .unknownRun {
            watch.lose(error.message)
            outcome = .cancelled(reason: error.message)
        } catch let error as TributaryError where error.code == .storeUnavailable {
            // The database was out of reach (a restart, a failover): temporary, so the run is retried
            // with backoff once it is back rather than at the variant's next slot.
            outcome = .failed(message: error.message)
            retry = RetryAdvice()
        } catch let error as TributaryError {
            outcome = .failed(message: error.message)
        } catch {
            outcome = .failed(message: String(describing: error))
            if let temporary = error as? any RetryableError { retry = RetryAdvice(afterSeconds: temporary.retryAfterSeconds) }
        }
        // A function stopped from outside (a cancel here, a shutdown) may surface its stop as any error
        // (an HTTP client's own, a wrapped one): it was stopped, it did not fail.
        if case .failed = outcome, options.stop?.isStopped == true || Task.isCancelled {
            outcome = .cancelled(reason: "The run was cancelled.")
            retry = nil
        }
        if let reason = watch.lostReason {
            // Whoever ended the run recorded its end; nothing of this attempt is written any more.
            logger.info("run stopped: it no longer holds its lease", metadata: ["reason": "\(reason)"])
            guard let run = try await store.run(started.runId) else {
                throw TributaryError(.unknownRun, "Run \(started.runId) no longer exists: its variant or connection was deleted while it ran.")
            }
            return run
        }
        if case .failed(let message) = outcome {
            await context.log("Run failed: \(message)", level: .error)
        }
        Failpoint.hit("run.before-complete")
        if case .cancelled = outcome, started.kind != .webhook, options.requeuesWhenCancelled() {
            Failpoint.hit("shutdown.before-release")
            // One short transaction, recorded also when this task was cancelled (the group is going down
            // hard), within a few seconds at most (the database may be unreachable).
            let store = self.store
            let lease = started.lease
            let reason = "Attempt \(started.attempt) was stopped by a shutdown; the run is queued again and resumes from its checkpoint."
            let released = try await shielded { try await store.releaseRun(lease, reason: reason) }
            Failpoint.hit("shutdown.released")
            logger.info("run queued again for another worker (shutdown)")
            return released
        }
        let isRun = started.kind != .webhook
        let finished = try await finish(
            started.lease,
            RunCompletion(
                outcome: outcome, models: sync.models, deleteUnseenModels: isRun && sync.detectsDeletes ? sync.models : [],
                clearCheckpoint: isRun && sync.syncType == .full, retry: isRun ? retry : nil, nextRun: isRun ? options.nextRun?() : nil),
            variant: variant, sync: sync)
        metrics.runFinished(finished, kind: started.kind, seconds: TributaryMetrics.seconds(since: began))
        Failpoint.hit("run.completed")
        logger.info(
            "run finished",
            metadata: [
                "status": "\(finished.status.rawValue)",
                "results": "\(finished.results.sorted { $0.key < $1.key }.map { "\($0.key)+\($0.value.added)~\($0.value.updated)-\($0.value.deleted)" })",
            ])
        return finished
    }

    /// Fails a run before its function started (no function, unreadable input).
    private func fail(_ started: StartedRun, _ message: String, variant: VariantRef, sync: SyncConfig, options: Options) async throws -> RunRecord {
        try await traced(started, of: variant) { try await failInSpan(started, message, variant: variant, sync: sync, options: options) }
    }

    private func failInSpan(_ started: StartedRun, _ message: String, variant: VariantRef, sync: SyncConfig, options: Options) async throws -> RunRecord {
        let isRun = started.kind != .webhook
        metrics.runStarted(variant, kind: started.kind, queuedSeconds: nil)
        let finished = try await finish(
            started.lease,
            RunCompletion(outcome: .failed(message: message), models: sync.models, nextRun: isRun ? options.nextRun?() : nil),
            variant: variant, sync: sync)
        metrics.runFinished(finished, kind: started.kind, seconds: 0)
        return finished
    }

    /// Records the outcome with the run's sync webhooks. When the store cannot be reached it tries
    /// again with backoff while the lease would still be held — a short database outage loses no
    /// outcome; a longer one leaves the run to expire and be retried from its checkpoint. When this
    /// task was cancelled (its caller gave up, or the process is going down) it makes one attempt, in
    /// a task of its own (awaited here; the store's own timeout bounds it), and no retries.
    private func finish(_ lease: RunLease, _ completion: RunCompletion, variant: VariantRef, sync: SyncConfig) async throws -> RunRecord {
        var completion = completion
        let store = self.store
        if Task.isCancelled {
            let planner = webhooks
            let unplanned = completion
            return try await shielded {
                var completion = unplanned
                completion.webhooks = await planner?.plan(for: variant, sync: sync, store: store)
                return try await store.completeRun(lease, completion)
            }
        }
        completion.webhooks = await webhooks?.plan(for: variant, sync: sync, store: store)
        let deadline = ContinuousClock.now + .seconds(leaseSeconds)
        var failures = 0
        while true {
            do {
                return try await tracer.storeWrite("complete_run", metrics: metrics) { try await store.completeRun(lease, completion) }
            } catch let error as TributaryError where error.code == .leaseLost || error.code == .runNotRunning || error.code == .unknownRun {
                // After a failed attempt, the earlier attempt may have committed before its answer was lost.
                if failures > 0, let run = try? await store.run(lease.runId), run.status.isFinished { return run }
                throw error
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                failures += 1
                guard ContinuousClock.now < deadline else { throw error }
                logger.warning("could not record the run's outcome; trying again", metadata: ["run": "\(lease.runId)", "error": "\(error)"])
                try await Task.sleep(for: .milliseconds(min(5_000, 100 << min(failures, 6))))
            }
        }
    }

    /// Runs `body` in a task of its own (so ``RunStop`` cancels the function, not the recording of its
    /// outcome) while a watcher renews the lease every quarter of it — whether or not the function
    /// writes anything — and checks every ``stopCheckInterval`` that it is still held. A lost lease, or
    /// no confirmation from the store for a whole lease, stops the function (``LeaseWatch``).
    private func runFunction(
        lease: RunLease, watch: LeaseWatch, stop: RunStop?, logger: Logger, _ body: @escaping @Sendable () async throws -> Void
    ) async throws {
        let store = self.store
        let leaseDuration = Duration.seconds(leaseSeconds)
        let renewEvery = Duration.milliseconds(leaseSeconds * 250)
        let checkEvery = min(stopCheckInterval, renewEvery)
        // Owned here: awaited below; cancelled with this task, by the watcher, or by `stop`.
        let task = Task {
            try await withThrowingTaskGroup(of: Bool.self) { group in
                group.addTask {
                    try await body()
                    return true
                }
                group.addTask {
                    var sinceRenewal = Duration.zero
                    var confirmed = ContinuousClock.now
                    while true {
                        try await Task.sleep(for: checkEvery)
                        sinceRenewal += checkEvery
                        do {
                            let renew = sinceRenewal >= renewEvery
                            let state = renew ? try await store.renewLease(lease) : try await store.leaseState(lease)
                            if case .lost(let reason) = state {
                                watch.lose(reason)
                                return false
                            }
                            if renew { sinceRenewal = .zero }
                            confirmed = ContinuousClock.now
                        } catch is CancellationError {
                            throw CancellationError()
                        } catch {
                            logger.warning("lease check failed", metadata: ["error": "\(error)"])
                            if ContinuousClock.now - confirmed >= leaseDuration {
                                watch.lose("the store could not confirm the lease for \(leaseDuration)")
                                return false
                            }
                        }
                    }
                }
                defer { group.cancelAll() }
                // The body finishing (or throwing) ends the watcher; a lost lease cancels the body.
                if try await group.next() == false {
                    group.cancelAll()
                    throw CancellationError()
                }
            }
        }
        stop?.attach(task)
        try await withTaskCancellationHandler {
            try await task.value
        } onCancel: {
            task.cancel()
        }
    }
}

/// Whether a run lost its lease while its function ran, and why.
final class LeaseWatch: Sendable {
    private let reason = Mutex<String?>(nil)
    func lose(_ why: String) { reason.withLock { $0 = $0 ?? why } }
    var lostReason: String? { reason.withLock { $0 } }
}
