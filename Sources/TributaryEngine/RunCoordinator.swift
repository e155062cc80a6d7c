#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
import ServiceLifecycle
import Synchronization
import TributaryCore
import TributaryStore

/// The worker: claims queued runs from the store's run queue and runs them, at most
/// `maxConcurrentRuns` at once in this process. Runs are rows in the store — queued by the API
/// (``RunQueue``) or the ``Scheduler`` of any process — so whichever worker claims a run executes it,
/// and a run queued just before a crash is still there after it.
///
/// Claiming is atomic and fair (``Store/claimRun(_:)``): the next run comes from the connection with
/// the fewest running runs across all workers, oldest first, never more than `maxRunsPerConnection`
/// per connection — so one connection with a hundred variants cannot starve another, and a slow
/// variant only ever holds its own slot.
///
/// When a run ends, the variant's next scheduled run is set to the first slot of its grid after the
/// end (``Schedule``), or earlier for a retry after a temporary failure (``RetryPolicy``).
///
/// A `Service`: its `run()` owns every run in a task group. It claims when woken (``wake()``, called
/// after a local enqueue) and every `Limits.poll` otherwise. On graceful shutdown it claims nothing
/// more; running runs get `Limits.drain` to finish, then are cancelled and queued again — they keep
/// their checkpoint, so whichever worker claims them next resumes where they stopped.
public final class RunCoordinator: Service, Sendable {
    /// Concurrency limits.
    public struct Limits: Sendable {
        /// Runs active at once in this process.
        public var maxConcurrentRuns: Int
        /// Runs of one connection running at once across all workers sharing the store.
        public var maxRunsPerConnection: Int
        /// On graceful shutdown, how long running runs may take to finish before they are cancelled.
        public var drain: Duration
        /// When runs that failed with a ``RetryableError`` are retried.
        public var retry: RetryPolicy
        /// How often the worker looks for queued runs when nothing wakes it.
        public var poll: Duration

        public init(
            maxConcurrentRuns: Int = 16, maxRunsPerConnection: Int = 4, drain: Duration = .seconds(30), retry: RetryPolicy = RetryPolicy(),
            poll: Duration = .seconds(1)
        ) {
            self.maxConcurrentRuns = max(1, maxConcurrentRuns)
            self.maxRunsPerConnection = max(1, maxRunsPerConnection)
            self.drain = drain
            self.retry = retry
            self.poll = poll
        }
    }

    private struct State {
        /// Runs executing in this process, with the task that runs each (for prompt local cancellation).
        var tasks: [VariantRef: Task<RunRecord?, Never>] = [:]
        /// Slots taken: runs executing plus claims in flight.
        var slots = 0
        /// Runs cancelled by the shutdown (queued again when they end cancelled).
        var cancelledByShutdown: Set<VariantRef> = []
        var accepting = true
        /// The drain time is over: every run, also one registering late, is cancelled.
        var drained = false
    }

    private let executor: SyncExecutor
    private let config: TributaryConfig
    private let limits: Limits
    private let clock: @Sendable () -> Timestamp
    private let logger: Logger
    private let wakeups: AsyncStream<Void>
    private let wakeContinuation: AsyncStream<Void>.Continuation
    private let state = Mutex(State())

    public init(
        executor: SyncExecutor, config: TributaryConfig, limits: Limits = Limits(), clock: @escaping @Sendable () -> Timestamp = { Timestamp.now() },
        logger: Logger
    ) {
        self.executor = executor
        self.config = config
        self.limits = limits
        self.clock = clock
        self.logger = logger
        (wakeups, wakeContinuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    private var store: any Store { executor.store }

    public func run() async throws {
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.pollUntilShutdown() }
                for await _ in wakeups {
                    for claimed in await claimStartable() {
                        group.addTask { await self.execute(claimed) }
                    }
                }
                // Shutting down: let running runs finish within the drain time, then cancel the rest.
                let deadline = ContinuousClock.now + limits.drain
                // (When the whole group is cancelled instead — another service failed — the runs are
                // cancelled with this task; waiting would only spin.)
                while state.withLock({ $0.slots > 0 }), ContinuousClock.now < deadline, !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(20))
                }
                cancelForShutdown()
            }
        } onGracefulShutdown: {
            self.state.withLock { $0.accepting = false }
            self.wakeContinuation.finish()
        }
    }

    /// Asks the worker to look for queued runs now (after this process queued one).
    public func wake() {
        wakeContinuation.yield()
    }

    /// Whether `ref` is running in this process.
    public func isRunningHere(_ ref: VariantRef) -> Bool {
        state.withLock { $0.tasks[ref] != nil }
    }

    /// Cancels `ref`'s run if it runs in this process — at once, without waiting for the run's next
    /// stop check. (A cancel through the store reaches runs in any process; this makes it prompt here.)
    public func cancelHere(_ ref: VariantRef) {
        state.withLock { $0.tasks[ref]?.cancel() }
    }

    private func pollUntilShutdown() async {
        while state.withLock({ $0.accepting }), !Task.isCancelled {
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: self.limits.poll) }
            wakeContinuation.yield()
        }
    }

    private func cancelForShutdown() {
        state.withLock { state in
            state.drained = true
            for (ref, task) in state.tasks {
                state.cancelledByShutdown.insert(ref)
                task.cancel()
            }
        }
    }

    /// This process as runs record it (`host/pid`).
    static let workerName = "\(ProcessInfo.processInfo.hostName)/\(ProcessInfo.processInfo.processIdentifier)"

    /// Claims queued runs while this process has free slots and the store has claimable runs.
    private func claimStartable() async -> [ClaimedRun] {
        let config = self.config
        let claim = RunClaim(
            leaseSeconds: executor.leaseSeconds, maxRunsPerConnection: limits.maxRunsPerConnection, worker: Self.workerName,
            tracksDeletes: { config.sync(for: $0)?.detectsDeletes })
        var claimed: [ClaimedRun] = []
        while reserveSlot() {
            do {
                guard let run = try await store.claimRun(claim) else {
                    releaseSlot()
                    break
                }
                claimed.append(run)
            } catch {
                releaseSlot()
                logger.error("could not claim a queued run", metadata: ["error": "\(error)"])
                break
            }
        }
        return claimed
    }

    private func reserveSlot() -> Bool {
        state.withLock { state in
            guard state.accepting, state.slots < limits.maxConcurrentRuns else { return false }
            state.slots += 1
            return true
        }
    }

    private func releaseSlot() {
        state.withLock { $0.slots -= 1 }
    }

    private func execute(_ claimed: ClaimedRun) async {
        let ref = claimed.variant
        let executor = self.executor
        let logger = self.logger
        // A sync that left the configuration between claim and now fails its run (the claim checked it).
        let sync = config.sync(for: ref)
        // Owned here: awaited below, and cancelled with this child task or by `cancelHere(_:)`.
        let task = Task { () -> RunRecord? in
            do {
                guard let sync else {
                    return try await executor.store.completeRun(
                        claimed.started.runId, RunCompletion(outcome: .failed(message: "Sync '\(ref.syncName)' is no longer configured."), results: [:]))
                }
                return try await executor.run(claimed, sync: sync)
            } catch {
                logger.warning("run could not be recorded", metadata: ["variant": "\(ref)", "error": "\(error)"])
                return nil
            }
        }
        let cancelNow = state.withLock { state -> Bool in
            state.tasks[ref] = task
            if state.drained { state.cancelledByShutdown.insert(ref) }
            return state.drained
        }
        if cancelNow { task.cancel() }
        let finished = await withTaskCancellationHandler {
            await task.value
        } onCancel: {
            task.cancel()
        }
        // Stopped by the shutdown (also when the whole group is cancelled: `run()` then goes straight
        // to `cancelForShutdown`): queued again, to resume from its checkpoint in the next worker.
        let requeue = state.withLock { $0.cancelledByShutdown.remove(ref) != nil } && finished?.status == .cancelled
        if let finished, let sync { await afterRun(ref, sync: sync, finished, requeue: requeue) }
        state.withLock { state in
            state.tasks.removeValue(forKey: ref)
            state.slots -= 1
        }
        wakeContinuation.yield()
    }

    /// Plans what follows a run: the first grid slot after now becomes the variant's next run (slots
    /// missed while running are skipped) — or, after a temporary failure, an earlier retry per the
    /// ``RetryPolicy``. A run cancelled by the shutdown is queued again, to resume from its checkpoint.
    private func afterRun(_ ref: VariantRef, sync: SyncConfig, _ run: RunRecord, requeue: Bool) async {
        let policy = limits.retry
        do {
            // Not part of a cancelled run's work: record it even when this task was cancelled.
            try await Task { [executor, clock] in
                let store = executor.store
                if requeue { try await store.enqueueRuns([ref]) }
                guard let state = try await store.variantState(ref) else { return }
                let now = clock()
                var next = Schedule.nextSlot(after: now, origin: state.createdAt, intervalSeconds: state.frequency(configured: sync.frequency).seconds)
                if run.status == .failed, let advice = run.retry {
                    // (Provider webhook executions run beside the variant's runs; they are not attempts.)
                    let recent = try await store.runs(of: ref, limit: policy.maxAttempts + 1, includingWebhooks: false)
                    let attempt = recent.prefix { $0.status == .failed && $0.retry != nil }.count
                    if let delay = policy.delay(attempt: attempt, retryAfterSeconds: advice.afterSeconds) {
                        next = min(next, Timestamp(microseconds: now.microseconds + Int64(delay * 1_000_000)))
                    }
                }
                try await store.setNextRun(next, for: ref)
            }.value
        } catch {
            logger.error("could not plan the next run", metadata: ["variant": "\(ref)", "error": "\(error)"])
        }
    }
}
