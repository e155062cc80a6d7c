import Logging
import ServiceLifecycle
import Synchronization
import TributaryCore
import TributaryStore

/// Runs variants — triggered through the API or due on their schedule — under concurrency limits:
/// at most one run per variant, at most `maxConcurrentRuns` in all and `maxRunsPerConnection` per
/// connection. Waiting runs start fairly: the next one comes from the connection with the fewest
/// active runs (oldest first among equals), so one connection with a hundred variants cannot starve
/// another, and a slow variant only ever holds its own slot.
///
/// When a run ends, the variant's next scheduled run is set to the first slot of its grid after the
/// end (``Schedule``). It is a `Service`: its `run()` owns every run in a task group. On graceful
/// shutdown it stops accepting runs and drops waiting ones; running ones get `Limits.drain` to
/// finish, then are cancelled (a cancelled run changes nothing but its own status and keeps its
/// checkpoint, so it resumes on the next start).
public final class RunCoordinator: Service, Sendable {
    /// Concurrency limits.
    public struct Limits: Sendable {
        public var maxConcurrentRuns: Int
        public var maxRunsPerConnection: Int
        /// On graceful shutdown, how long running runs may take to finish before they are cancelled.
        public var drain: Duration
        /// When runs that failed with a ``RetryableError`` are retried.
        public var retry: RetryPolicy

        public init(maxConcurrentRuns: Int = 16, maxRunsPerConnection: Int = 4, drain: Duration = .seconds(30), retry: RetryPolicy = RetryPolicy()) {
            self.maxConcurrentRuns = max(1, maxConcurrentRuns)
            self.maxRunsPerConnection = max(1, maxRunsPerConnection)
            self.drain = drain
            self.retry = retry
        }
    }

    struct Job: Sendable {
        var ref: VariantRef
        var sync: SyncConfig
    }

    /// How a job ended.
    enum StartResult: Sendable {
        case finished(RunRecord)
        /// The store refused the start: another run holds the lease.
        case leaseHeld
        case notStarted
    }

    private struct Entry {
        var task: Task<StartResult, Never>?
        var started = false
        var cancelRequested = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private struct State {
        var entries: [VariantRef: Entry] = [:]
        var pending: [Job] = []
        var running = 0
        var runningPerConnection: [ConnectionRef: Int] = [:]
        var accepting = true
    }

    private let executor: SyncExecutor
    private let limits: Limits
    private let clock: @Sendable () -> Timestamp
    private let logger: Logger
    private let wakeups: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation
    private let state = Mutex(State())

    public init(executor: SyncExecutor, limits: Limits = Limits(), clock: @escaping @Sendable () -> Timestamp = { Timestamp.now() }, logger: Logger) {
        self.executor = executor
        self.limits = limits
        self.clock = clock
        self.logger = logger
        (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    public func run() async throws {
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                for await _ in wakeups {
                    for job in takeStartable() {
                        group.addTask { await self.execute(job) }
                    }
                }
                // Shutting down: let running runs finish within the drain time, then cancel the rest.
                let deadline = ContinuousClock.now + limits.drain
                while state.withLock({ $0.running > 0 }), ContinuousClock.now < deadline {
                    try? await Task.sleep(for: .milliseconds(20))
                }
                cancelRunning()
            }
        } onGracefulShutdown: {
            let dropped = self.state.withLock { state -> [CheckedContinuation<Void, Never>] in
                state.accepting = false
                var waiters: [CheckedContinuation<Void, Never>] = []
                for job in state.pending { waiters += state.entries.removeValue(forKey: job.ref)?.waiters ?? [] }
                state.pending.removeAll()
                return waiters
            }
            for waiter in dropped { waiter.resume() }
            self.wake.finish()
        }
    }

    private func cancelRunning() {
        state.withLock { state in
            for key in state.entries.keys {
                state.entries[key]?.cancelRequested = true
                state.entries[key]?.task?.cancel()
            }
        }
    }

    /// Queues a run of `ref`; it starts as soon as the limits allow.
    ///
    /// - Throws: `sync_running` while that variant has a queued or running run, or when shutting down.
    public func trigger(_ ref: VariantRef, sync: SyncConfig) throws {
        try trigger([(ref, sync)])
    }

    /// Queues runs of several variants at once: all of them, or — if one is already queued or
    /// running — none (`sync_running`).
    public func trigger(_ batch: [(VariantRef, SyncConfig)]) throws {
        try state.withLock { state in
            guard state.accepting else { throw TributaryError(.syncRunning, "The server is shutting down and starts no new runs.") }
            var seen = Set<VariantRef>()
            for (ref, _) in batch where state.entries[ref] != nil || !seen.insert(ref).inserted {
                throw TributaryError(
                    .syncRunning,
                    "Sync '\(ref.syncName)' variant '\(ref.variant)' of connection '\(ref.connection.connectionId)' is already running; wait for it to finish, or trigger with opts.reset to restart it.")
            }
            for (ref, sync) in batch {
                state.entries[ref] = Entry()
                state.pending.append(Job(ref: ref, sync: sync))
            }
        }
        wake.yield()
    }

    /// Whether `ref` has a run in this process (queued or running).
    public func isRunning(_ ref: VariantRef) -> Bool {
        state.withLock { $0.entries[ref] != nil }
    }

    /// Cancels `ref`'s run (or drops it if still queued) and waits until it has finished.
    public func cancel(_ ref: VariantRef) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { state -> Bool in
                guard let entry = state.entries[ref] else { return true }
                if !entry.started {
                    state.pending.removeAll { $0.ref == ref }
                    let waiters = state.entries.removeValue(forKey: ref)?.waiters ?? []
                    for waiter in waiters { waiter.resume() }
                    return true
                }
                state.entries[ref]?.cancelRequested = true
                state.entries[ref]?.task?.cancel()
                state.entries[ref]?.waiters.append(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    /// Cancels every run of a connection and waits for them.
    public func cancelAll(of connection: ConnectionRef) async {
        let refs = state.withLock { Array($0.entries.keys.filter { $0.connection == connection }) }
        for ref in refs { await cancel(ref) }
    }

    /// Removes from the queue the jobs the limits allow to start now, fairest first.
    private func takeStartable() -> [Job] {
        state.withLock { state in
            var started: [Job] = []
            while state.running < limits.maxConcurrentRuns {
                var best: Int? = nil
                for (index, job) in state.pending.enumerated() {
                    let load = state.runningPerConnection[job.ref.connection, default: 0]
                    guard load < limits.maxRunsPerConnection else { continue }
                    if let current = best, state.runningPerConnection[state.pending[current].ref.connection, default: 0] <= load { continue }
                    best = index
                }
                guard let index = best else { break }
                let job = state.pending.remove(at: index)
                state.running += 1
                state.runningPerConnection[job.ref.connection, default: 0] += 1
                state.entries[job.ref]?.started = true
                started.append(job)
            }
            return started
        }
    }

    private func execute(_ job: Job) async {
        let executor = self.executor
        let logger = self.logger
        // Owned here: awaited below, and cancelled with this child task or by `cancel(_:)`.
        let task = Task { () -> StartResult in
            do {
                return .finished(try await executor.run(job.ref, sync: job.sync, createsVariant: false))
            } catch let error as TributaryError where error.code == .syncRunning {
                // Another run holds the variant's lease — live elsewhere, or left by a process that died.
                logger.info("run not started: the variant's lease is held", metadata: ["variant": "\(job.ref)"])
                return .leaseHeld
            } catch {
                logger.warning("run could not start", metadata: ["variant": "\(job.ref)", "error": "\(error)"])
                return .notStarted
            }
        }
        let cancelNow = state.withLock { state -> Bool in
            state.entries[job.ref]?.task = task
            return state.entries[job.ref]?.cancelRequested ?? false
        }
        if cancelNow { task.cancel() }
        let finished = await withTaskCancellationHandler {
            await task.value
        } onCancel: {
            task.cancel()
        }
        await scheduleNextRun(job, after: finished)
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.running -= 1
            state.runningPerConnection[job.ref.connection, default: 1] -= 1
            if state.runningPerConnection[job.ref.connection] == 0 { state.runningPerConnection.removeValue(forKey: job.ref.connection) }
            return state.entries.removeValue(forKey: job.ref)?.waiters ?? []
        }
        for waiter in waiters { waiter.resume() }
        wake.yield()
    }

    /// The first grid slot after now becomes the variant's next run (slots missed while running are
    /// skipped) — or, after a temporary failure, an earlier retry per the ``RetryPolicy``; or, when
    /// another run held the lease, a new try when that lease runs out (a crashed process's run is then
    /// marked expired and the variant resumes from its checkpoint, instead of waiting a whole slot).
    private func scheduleNextRun(_ job: Job, after result: StartResult) async {
        let policy = limits.retry
        do {
            // Not part of a cancelled run's work: record it even when this task was cancelled.
            try await Task { [executor, clock] in
                guard let state = try await executor.store.variantState(job.ref) else { return }
                let now = clock()
                let interval = state.frequency(configured: job.sync.frequency).seconds
                var next = Schedule.nextSlot(after: now, origin: state.createdAt, intervalSeconds: interval)
                if case .leaseHeld = result {
                    next = min(next, Timestamp(microseconds: now.microseconds + (executor.leaseSeconds + 1) * 1_000_000))
                }
                if case .finished(let run) = result, run.status == .failed, let advice = run.retry {
                    let recent = try await executor.store.runs(of: job.ref, limit: policy.maxAttempts + 1)
                    let attempt = recent.prefix { $0.status == .failed && $0.retry != nil }.count
                    if let delay = policy.delay(attempt: attempt, retryAfterSeconds: advice.afterSeconds) {
                        next = min(next, Timestamp(microseconds: now.microseconds + Int64(delay * 1_000_000)))
                    }
                }
                try await executor.store.setNextRun(next, for: job.ref)
            }.value
        } catch {
            logger.error("could not schedule the next run", metadata: ["variant": "\(job.ref)", "error": "\(error)"])
        }
    }
}
