import Logging
import ServiceLifecycle
import TributaryCore
import TributaryStore

/// Queues a run of every variant whose scheduled run is due: each variant has its own schedule (its
/// sync's frequency, or its own override), state (`paused`) and next run time, kept in the store.
///
/// A due variant that already has a queued or running run is skipped — its slot is missed, not
/// queued; the run's end sets the next slot (see ``RunCoordinator``). Each tick also expires runs
/// whose lease ran out (their process died) and queues their retry, which resumes from the
/// checkpoint. Several schedulers may share one store: enqueueing is atomic, a variant is queued once.
///
/// A `Service`: it ticks every `interval` until graceful shutdown.
public final class Scheduler: Service, Sendable {
    let config: TributaryConfig
    let queue: RunQueue
    let clock: @Sendable () -> Timestamp
    let interval: Duration
    let logger: Logger

    public init(
        config: TributaryConfig, queue: RunQueue, clock: @escaping @Sendable () -> Timestamp = { Timestamp.now() }, interval: Duration? = nil,
        logger: Logger
    ) {
        self.config = config
        self.queue = queue
        self.clock = clock
        self.interval = interval ?? .milliseconds(Int(config.scheduler.tickSeconds * 1000))
        self.logger = logger
    }

    public func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await tick()
            } catch is CancellationError {
                return
            } catch {
                logger.error("scheduler tick failed", metadata: ["error": "\(error)"])
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: self.interval) }
        }
    }

    /// One pass: expires dead runs (queueing their retries), then queues every due variant that has
    /// no active run.
    /// - Returns: the due variants queued (retries of expired runs are not listed).
    @discardableResult
    public func tick() async throws -> [VariantRef] {
        let store = queue.store
        let expired = try await store.expireRuns()
        for run in expired {
            logger.warning("run expired: its process stopped without finishing it; retrying from the checkpoint", metadata: ["variant": "\(run.variant)", "run": "\(run.id)"])
        }
        let now = clock()
        var queued: [VariantRef] = []
        for state in try await store.dueVariants(at: now, limit: 1000) {
            let ref = state.ref
            guard config.sync(for: ref) != nil else {
                // The sync left the configuration: look again in a day rather than every tick.
                try await store.setNextRun(Timestamp(microseconds: now.microseconds + 86_400_000_000), for: ref)
                logger.warning("variant of a sync that is no longer configured", metadata: ["variant": "\(ref)"])
                continue
            }
            do {
                try await store.enqueueRuns([ref])
                queued.append(ref)
            } catch let error as TributaryError where error.code == .syncRunning || error.code == .unknownVariant {
                continue  // queued by another scheduler meanwhile, or deleted
            }
        }
        if !queued.isEmpty || !expired.isEmpty { queue.worker?.wake() }
        return queued
    }
}
