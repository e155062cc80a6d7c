import Logging
import ServiceLifecycle
import TributaryCore
import TributaryStore

/// Removes finished history past its retention (the `retention` section): finished runs with their
/// logs, delivered or failed webhooks to the app, handled provider webhook tasks — `chunk` rows per
/// transaction with a pause between, so other writers always get their turn.
///
/// A `Service` of every worker process: it cleans shortly after start and then every `interval`,
/// until graceful shutdown. Several processes may clean one store.
public final class HistoryCleaner: Service, Sendable {
    private let store: any HistoryStore
    private let retention: RetentionConfig
    private let interval: Duration
    private let firstDelay: Duration
    private let chunk: Int
    private let pause: Duration
    private let clock: @Sendable () -> Timestamp
    private let logger: Logger

    public init(
        store: any HistoryStore, retention: RetentionConfig, interval: Duration = .seconds(3600), firstDelay: Duration = .seconds(60), chunk: Int = 1000,
        pause: Duration = .milliseconds(20), clock: @escaping @Sendable () -> Timestamp = { Timestamp.now() }, logger: Logger
    ) {
        self.store = store
        self.retention = retention
        self.interval = interval
        self.firstDelay = firstDelay
        self.chunk = max(1, chunk)
        self.pause = pause
        self.clock = clock
        self.logger = logger
    }

    public func run() async throws {
        var wait = firstDelay
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            do {
                let pause = wait
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: pause) }
                _ = try await cancelWhenGracefulShutdown { try await self.cleanOnce() }
            } catch is CancellationError {
                return
            } catch {
                logger.warning("history cleanup failed; trying again later", metadata: ["error": "\(error)"])
            }
            wait = interval
        }
    }

    /// Removes everything past its retention now; returns the rows removed.
    @discardableResult
    public func cleanOnce() async throws -> Int {
        let cutoffs = HistoryCutoffs(retention, now: clock())
        var total = 0
        while true {
            try Task.checkCancellation()
            let removed = try await store.pruneHistory(cutoffs, limit: chunk)
            total += removed
            guard removed > 0, !Task.isShuttingDownGracefully else { break }
            if pause > .zero { try await Task.sleep(for: pause) }
        }
        if total > 0 { logger.info("removed finished history past its retention", metadata: ["rows": "\(total)"]) }
        return total
    }
}
