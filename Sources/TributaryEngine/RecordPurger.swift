import Logging
import ServiceLifecycle
import TributaryCore
import TributaryStore

/// Removes the records of deleted and emptied datasets in small transactions (``PurgeStore``): the
/// transaction that deleted a variant or connection, or emptied a variant's cache, made them
/// invisible and unwritable at once; this takes them out afterwards, `chunk` rows at a time, with a
/// pause between chunks so other writers — and the heartbeats of running runs — always get their turn.
///
/// A `Service` of every worker process: it purges when woken (``wake()``, after a local delete) and
/// every `poll` otherwise, until graceful shutdown. Several processes may purge one store.
public final class RecordPurger: Service, Sendable {
    private let store: any PurgeStore
    private let chunk: Int
    private let pause: Duration
    private let poll: Duration
    private let logger: Logger
    private let wakeups: AsyncStream<Void>
    private let wakeContinuation: AsyncStream<Void>.Continuation

    public init(store: any PurgeStore, chunk: Int = 2000, pause: Duration = .milliseconds(5), poll: Duration = .seconds(5), logger: Logger) {
        self.store = store
        self.chunk = max(1, chunk)
        self.pause = pause
        self.poll = poll
        self.logger = logger
        (wakeups, wakeContinuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Looks for datasets to purge now.
    public func wake() { wakeContinuation.yield() }

    public func run() async throws {
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                group.addTask {
                    while !Task.isShuttingDownGracefully, !Task.isCancelled {
                        try? await cancelWhenGracefulShutdown { try await Task.sleep(for: self.poll) }
                        self.wakeContinuation.yield()
                    }
                }
                for await _ in wakeups {
                    do {
                        _ = try await cancelWhenGracefulShutdown { try await self.purgeAll() }
                    } catch is CancellationError {
                        break
                    } catch {
                        logger.warning("record purge failed; trying again later", metadata: ["error": "\(error)"])
                    }
                }
            }
        } onGracefulShutdown: {
            self.wakeContinuation.finish()
        }
    }

    /// Purges until nothing waits (or shutdown); returns the rows removed.
    @discardableResult
    public func purgeAll() async throws -> Int {
        var total = 0
        while !Task.isShuttingDownGracefully, !Task.isCancelled, let removed = try await store.purgeRecords(limit: chunk) {
            try Task.checkCancellation()
            total += removed
            if pause > .zero { try await Task.sleep(for: pause) }
        }
        if total > 0 { logger.info("purged the records of deleted or emptied datasets", metadata: ["records": "\(total)"]) }
        return total
    }
}
