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
/// When a run ends, the variant's next scheduled run is planned in the transaction that records the
/// end (``NextRunPlan``): the first slot of its grid after the end (``Schedule``), or earlier for a
/// retry after a temporary failure (``RetryPolicy``) — no crash between two steps can drop a variant
/// off the schedule.
///
/// A `Service`: its `run()` owns every run in a task group. It claims when woken (``wake()``, called
/// after a local enqueue) and every `Limits.poll` otherwise. On graceful shutdown it claims nothing
/// more; running runs get `Limits.drain` to finish, then their functions are stopped and the runs
/// queued again in one transaction each (``RunLeaseStore/releaseRun(_:reason:)``) — they keep their
/// checkpoint, first start and counts, so whichever worker claims them next resumes where they
/// stopped. Start it last in its `ServiceGroup` so it is the first to shut down.
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
        /// Runs executing in this process by lease (run and attempt), with their variant and the handle
        /// that stops each one's function. (By lease, not by variant or run: an ended run — or attempt —
        /// may still be unwinding here while the one that replaced it already executes.)
        var running: [RunLease: (variant: VariantRef, stop: RunStop)] = [:]
        /// Slots taken: runs executing plus claims in flight.
        var slots = 0
        /// Runs stopped by the shutdown (queued again rather than finished).
        var stoppedByShutdown: Set<RunLease> = []
        var accepting = true
        /// The drain time is over: every run, also one registering late, is stopped and queued again.
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
    /// The syncs this worker runs, and whether each tracks deletes (what a claim checks, as data).
    private let syncs: [SyncAddress: Bool]
    /// Awaited at shutdown between the end of the claim loop and the runs' stop (nothing outside
    /// tests: they hold the worker there to order a run's end before it).
    private let beforeShutdownStop: @Sendable () async -> Void

    /// A worker running `executor`'s runs of the syncs `config` declares, within `limits`, its
    /// runs' next slots planned from `clock`. Run it as a `Service` (``run()``).
    public convenience init(
        executor: SyncExecutor, config: TributaryConfig, limits: Limits = Limits(), clock: @escaping @Sendable () -> Timestamp = { Timestamp.now() },
        logger: Logger
    ) {
        self.init(executor: executor, config: config, limits: limits, clock: clock, logger: logger, beforeShutdownStop: {})
    }

    init(
        executor: SyncExecutor, config: TributaryConfig, limits: Limits, clock: @escaping @Sendable () -> Timestamp, logger: Logger,
        beforeShutdownStop: @escaping @Sendable () async -> Void
    ) {
        self.executor = executor
        self.config = config
        self.limits = limits
        self.clock = clock
        self.logger = logger
        self.beforeShutdownStop = beforeShutdownStop
        self.syncs = Self.runnableSyncs(config)
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
                await beforeShutdownStop()
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
        state.withLock { $0.running.values.contains { $0.variant == ref } }
    }

    /// Stops the function of run `runId` if it runs in this process — at once, without waiting for its
    /// next lease check. (Ending a run in the store reaches runs in any process within a lease check;
    /// this makes it prompt here.)
    public func cancelHere(run runId: Int64) {
        let stops = state.withLock { $0.running.filter { $0.key.runId == runId }.map(\.value.stop) }
        for stop in stops { stop.stop() }
    }

    private func pollUntilShutdown() async {
        while state.withLock({ $0.accepting }), !Task.isCancelled {
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: self.limits.poll) }
            wakeContinuation.yield()
        }
    }

    private func cancelForShutdown() {
        let stops = state.withLock { state -> [RunStop] in
            state.drained = true
            state.stoppedByShutdown.formUnion(state.running.keys)
            return state.running.values.map(\.stop)
        }
        for stop in stops { stop.stop() }
    }

    /// Every sync of every environment (as ``TributaryConfig/sync(for:)`` resolves it), with whether
    /// its runs track deletes.
    static func runnableSyncs(_ config: TributaryConfig) -> [SyncAddress: Bool] {
        var syncs: [SyncAddress: Bool] = [:]
        for environment in config.environments {
            for key in Set(config.integrations(in: environment.name).map(\.providerConfigKey)) {
                for sync in config.integration(key, in: environment.name)?.syncs ?? [] {
                    syncs[SyncAddress(environment: environment.name, providerConfigKey: key, syncName: sync.name)] = sync.detectsDeletes
                }
            }
        }
        return syncs
    }

    /// This process as runs record it (`host/pid`).
    static let workerName = "\(ProcessInfo.processInfo.hostName)/\(ProcessInfo.processInfo.processIdentifier)"

    /// Claims queued runs while this process has free slots and the store has claimable runs: every
    /// free slot in one batch (``Store/claimRuns(_:limit:)``), then again while a batch filled its slots.
    private func claimStartable() async -> [ClaimedRun] {
        let claim = RunClaim(
            leaseSeconds: executor.leaseSeconds, maxRunsPerConnection: limits.maxRunsPerConnection, worker: Self.workerName, syncs: syncs)
        var claimed: [ClaimedRun] = []
        while true {
            let reserved = reserveFreeSlots()
            guard reserved > 0 else { break }
            do {
                // A shutdown does not wait for the database (it may be unreachable). A claim cut short
                // after it committed leaves runs that expire and resume elsewhere.
                let batch = try await cancelWhenGracefulShutdown({ [store] in try await store.claimRuns(claim, limit: reserved) })
                releaseSlots(reserved - batch.count)
                claimed += batch
                if batch.count < reserved { break }
            } catch is CancellationError {
                releaseSlots(reserved)
                break
            } catch {
                releaseSlots(reserved)
                logger.error("could not claim a queued run", metadata: ["error": "\(error)"])
                break
            }
        }
        return claimed
    }

    /// Reserves every free slot; how many.
    private func reserveFreeSlots() -> Int {
        state.withLock { state in
            guard state.accepting else { return 0 }
            let free = max(0, limits.maxConcurrentRuns - state.slots)
            state.slots += free
            return free
        }
    }

    private func releaseSlots(_ count: Int) {
        guard count > 0 else { return }
        state.withLock { $0.slots -= count }
    }

    private func execute(_ claimed: ClaimedRun) async {
        let ref = claimed.variant
        let lease = claimed.started.lease
        let stop = RunStop()
        let stopNow = state.withLock { state -> Bool in
            state.running[lease] = (ref, stop)
            if state.drained { state.stoppedByShutdown.insert(lease) }
            return state.drained
        }
        if stopNow { stop.stop() }
        let policy = limits.retry
        let clock = self.clock
        let sync = config.sync(for: ref)
        // A sync that left the configuration keeps the variant on an hourly grid until it comes back.
        let frequency: Frequency? = sync?.frequency ?? (try? Frequency("every hour"))
        let plan: (@Sendable () -> NextRunPlan)?
        let schedule = sync?.schedule ?? SchedulePolicy()
        if let frequency {
            plan = { NextRunPlan(frequency: frequency, schedule: schedule, retry: policy, from: clock()) }
        } else {
            plan = nil
        }
        // Queued again when the shutdown stopped it: a drain that ran out marks it; a group cancelled
        // outright (another service failed) cancels this task — possibly before `run()` gets to mark
        // it, so that counts too (nothing else cancels a run's task: an API cancel stops it by `stop`).
        let options = SyncExecutor.Options(
            stop: stop, nextRun: plan, requeuesWhenCancelled: { Task.isCancelled || self.state.withLock { $0.stoppedByShutdown.contains(lease) } })
        do {
            if let sync {
                _ = try await executor.run(claimed, sync: sync, options: options)
            } else {
                // The sync left the configuration between the claim and now (the claim checked it).
                _ = try await executor.store.completeRun(
                    claimed.started.lease,
                    RunCompletion(outcome: .failed(message: "Sync '\(ref.syncName)' is no longer configured."), nextRun: options.nextRun?()))
            }
        } catch let error as TributaryError where error.code == .unknownRun {
            logger.info("run ended with its variant", metadata: ["variant": "\(ref)", "reason": "\(error.message)"])
        } catch {
            logger.warning("run could not be recorded; its lease will run out and it resumes", metadata: ["variant": "\(ref)", "error": "\(error)"])
        }
        state.withLock { state in
            state.running.removeValue(forKey: lease)
            state.stoppedByShutdown.remove(lease)
            state.slots -= 1
        }
        wakeContinuation.yield()
    }
}
