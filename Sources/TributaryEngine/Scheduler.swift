import Logging
import ServiceLifecycle
import TributaryCore
import TributaryStore

/// Queues a run of every variant whose scheduled run is due: each variant has its own schedule (its
/// sync's frequency, or its own override), state (`paused`) and next run time, kept in the store.
///
/// A due variant that already has a queued or running run is skipped — its slot is missed, not
/// queued; the run's end plans the next slot (see ``RunCoordinator``). Each tick also handles runs
/// whose lease ran out (their process died or froze): each is queued again as its next attempt and
/// resumes from its checkpoint, or given up after `scheduler.max_run_attempts` (``RunExpiry``).
/// Several schedulers may share one store: enqueueing is atomic, a variant is queued once.
///
/// A `Service`: it ticks every `interval` — or sooner, at the earliest planned run — until graceful shutdown.
public final class Scheduler: Service, Sendable {
    let config: TributaryConfig
    let store: any RunQueueStore
    /// This process's worker, woken when runs were queued.
    let worker: RunCoordinator?
    let expiry: RunExpiry.Policy
    let clock: @Sendable () -> Timestamp
    let interval: Duration
    let metrics: TributaryMetrics
    let logger: Logger
    private let wakeup = Wakeup()

    public init(
        config: TributaryConfig, store: any RunQueueStore, worker: RunCoordinator? = nil, clock: @escaping @Sendable () -> Timestamp = { Timestamp.now() },
        interval: Duration? = nil, metrics: TributaryMetrics = .disabled, logger: Logger
    ) {
        self.metrics = metrics
        self.config = config
        self.store = store
        self.worker = worker
        self.expiry = RunExpiry.Policy(
            maxAttempts: config.scheduler.maxRunAttempts, giveUpDelaySeconds: Int64(exactly: config.scheduler.retry.maxSeconds.rounded(.up)) ?? 900)
        self.clock = clock
        self.interval = interval ?? .milliseconds(Int(config.scheduler.tickSeconds * 1000))
        self.logger = logger
    }

    public func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            var wait = interval
            var failed = false
            do {
                // A shutdown does not wait for the database (it may be unreachable).
                let pass = try await cancelWhenGracefulShutdown { try await self.pass() }
                // A full due list: more may be due already (whether this pass or another scheduler
                // queued them). Otherwise sleep until the next planned run if that comes before the
                // next tick, so a run starts at its slot, not up to a tick later.
                wait = pass.dueListFull ? .zero : max(Self.shortestWait, try await untilNextRun())
            } catch is CancellationError {
                return
            } catch {
                failed = true
                logger.error("scheduler tick failed", metadata: ["error": "\(error)"])
            }
            let sleep = wait
            guard sleep > .zero else { continue }
            let passEnded = ContinuousClock.now
            let ignoresWakeups = failed
            try? await cancelWhenGracefulShutdown {
                if ignoresWakeups {
                    // After a failure the next pass waits its tick, however many wake-ups come.
                    try await Task.sleep(for: sleep)
                } else if await self.wakeup.wait(upTo: sleep) {
                    // Woken (a variant became due): at most one such pass per `wokenWait` — and never
                    // later than the pass it was sleeping towards.
                    let since = passEnded.duration(to: .now)
                    let floor = min(Self.wokenWait, sleep)
                    if since < floor { try await Task.sleep(for: floor - since) }
                }
            }
        }
    }

    /// The shortest time between a pass and one brought forward by ``wake()``: a new variant's
    /// first run starts this late at most, and a flood of wake-ups (variants created or resumed in
    /// a loop) costs at most ten passes a second.
    static let wokenWait = Duration.milliseconds(100)

    /// Makes the next pass come now (at most ``wokenWait`` after the last one) instead of at the
    /// next tick or planned run: something in this process made a variant due — it was created,
    /// resumed, or its connection was created — and its first run should not wait up to a tick.
    /// (Other processes' schedulers find it at their next pass.)
    public func wake() {
        wakeup.signal()
    }

    /// Due variants queued per pass.
    static let batch = 1000

    /// The shortest sleep between passes that did not fill a batch: with slots milliseconds apart
    /// (10,000 variants a minute), a pass per slot would cost more database work than the runs
    /// themselves, and several schedulers would each make it. A run starts at most this late.
    static let shortestWait = Duration.milliseconds(20)

    /// How long until the earliest planned run, at most `interval`.
    func untilNextRun() async throws -> Duration {
        let now = clock()
        guard let next = try await store.nextScheduledRun(after: now) else { return interval }
        return min(interval, .microseconds(next.microseconds - now.microseconds))
    }

    /// One pass: expires dead runs (queueing their retries), then queues every due variant that has
    /// no active run (at most ``batch``).
    /// - Returns: the due variants queued (retries of expired runs are not listed).
    @discardableResult
    public func tick() async throws -> [VariantRef] {
        try await pass().queued
    }

    /// ``tick()``, and whether the due list was a full ``batch`` (more may be due).
    private func pass() async throws -> (queued: [VariantRef], dueListFull: Bool) {
        let expired = try await store.expireRuns(expiry)
        for run in expired {
            if run.status == .queued {
                logger.warning(
                    "run interrupted: its process stopped renewing the lease; queued again to resume from the checkpoint",
                    metadata: ["variant": "\(run.variant)", "run": "\(run.id)", "attempts": "\(run.attempts)"])
            } else {
                logger.error("run given up: its lease ran out", metadata: ["variant": "\(run.variant)", "run": "\(run.id)", "error": "\(run.error ?? "")"])
            }
        }
        let now = clock()
        var due: [VariantRef] = []
        var slots: [VariantRef: Timestamp] = [:]
        let dueList = try await store.dueVariants(at: now, limit: Self.batch)
        for state in dueList {
            let ref = state.ref
            slots[ref] = state.nextRunAt
            guard config.sync(for: ref) != nil else {
                // The sync left the configuration: look again in a day rather than every tick.
                try await store.setNextRun(Timestamp(microseconds: now.microseconds + 86_400_000_000), for: ref)
                logger.warning("variant of a sync that is no longer configured", metadata: ["variant": "\(ref)"])
                continue
            }
            due.append(ref)
        }
        // In one transaction, and only those still due and idle: another scheduler may have queued
        // one — and a worker run it — since `dueVariants` read it.
        let queued = try await store.enqueueScheduledRuns(due, dueAt: now)
        for ref in queued {
            if let slot = slots[ref] { metrics.scheduled(ref, lagSeconds: Double(now.microseconds - slot.microseconds) / 1e6) }
        }
        if !queued.isEmpty || !expired.isEmpty { worker?.wake() }
        return (queued, dueList.count >= Self.batch)
    }
}
