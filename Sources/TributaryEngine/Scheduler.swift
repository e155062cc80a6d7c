import Logging
import ServiceLifecycle
import TributaryCore
import TributaryStore

/// Starts every variant whose scheduled run is due: each variant has its own schedule (its sync's
/// frequency, or its own override), state (`paused`) and next run time, kept in the store.
///
/// A due variant that is still running is skipped — its slot is missed, not queued; the run's end
/// sets the next slot (see ``RunCoordinator``). A `Service`: it ticks every `interval` until
/// graceful shutdown.
public final class Scheduler: Service, Sendable {
    let config: TributaryConfig
    let store: any Store
    let coordinator: RunCoordinator
    let clock: @Sendable () -> Timestamp
    let interval: Duration
    let logger: Logger

    public init(
        config: TributaryConfig, store: any Store, coordinator: RunCoordinator, clock: @escaping @Sendable () -> Timestamp = { Timestamp.now() },
        interval: Duration? = nil, logger: Logger
    ) {
        self.config = config
        self.store = store
        self.coordinator = coordinator
        self.clock = clock
        self.interval = interval ?? .milliseconds(Int(config.scheduler.tickSeconds * 1000))
        self.logger = logger
    }

    public func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await tick()
            } catch {
                logger.error("scheduler tick failed", metadata: ["error": "\(error)"])
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: self.interval) }
        }
    }

    /// One pass: hands every due variant that is not already running to the coordinator.
    /// - Returns: the variants started.
    @discardableResult
    public func tick() async throws -> [VariantRef] {
        let now = clock()
        var started: [VariantRef] = []
        for state in try await store.dueVariants(at: now, limit: 1000) {
            let ref = state.ref
            guard let sync = config.integration(ref.connection.providerConfigKey, in: ref.connection.environment)?.sync(named: ref.syncName) else {
                // The sync left the configuration: look again in a day rather than every tick.
                try await store.setNextRun(Timestamp(microseconds: now.microseconds + 86_400_000_000), for: ref)
                logger.warning("variant of a sync that is no longer configured", metadata: ["variant": "\(ref)"])
                continue
            }
            guard !coordinator.isRunning(ref) else { continue }
            do {
                try coordinator.trigger(ref, sync: sync)
                started.append(ref)
            } catch let error as TributaryError where error.code == .syncRunning {
                continue
            }
        }
        return started
    }
}
