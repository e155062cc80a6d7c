import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import TributaryCore
import TributaryStore

/// Runs async actions (`POST /action/trigger` with `X-Async: true`): claims queued executions from
/// the store — and executions whose worker died, once their lease ran out — and runs each attempt
/// through the ``ActionExecutor``, at most `maxConcurrent` at once in this process.
///
/// A `Service`: on graceful shutdown it claims nothing more; attempts get `drain` to finish, then
/// are stopped and put back in the queue (``ActionStore/releaseAction(_:reason:)``) for the next
/// worker, which runs them again under the same idempotency key.
public final class ActionWorker: Service, Sendable {
    static let workerName = "\(ProcessInfo.processInfo.hostName)/\(ProcessInfo.processInfo.processIdentifier)"

    private let executor: ActionExecutor
    private let maxConcurrent: Int
    private let maxExpiries: Int
    private let poll: Duration
    private let drain: Duration
    private let logger: Logger
    private let wakeups: AsyncStream<Void>
    private let wakeContinuation: AsyncStream<Void>.Continuation
    private let slots = Mutex((used: 0, accepting: true))

    /// - Parameter maxExpiries: lease expiries after which an execution is failed rather than run again.
    public init(
        executor: ActionExecutor, maxConcurrent: Int = 4, maxExpiries: Int = 3, poll: Duration = .seconds(1), drain: Duration = .seconds(30),
        logger: Logger
    ) {
        self.executor = executor
        self.maxConcurrent = max(1, maxConcurrent)
        self.maxExpiries = max(1, maxExpiries)
        self.poll = poll
        self.drain = drain
        self.logger = logger
        (wakeups, wakeContinuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    public func run() async throws {
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.pollUntilShutdown() }
                for await _ in wakeups {
                    while let claimed = await claimNext() {
                        group.addTask {
                            await self.executor.run(claimed)
                            self.slots.withLock { $0.used -= 1 }
                            self.wake()
                        }
                    }
                }
                // Shutting down: attempts get the drain time, then are stopped and queued again.
                let deadline = ContinuousClock.now + drain
                while slots.withLock({ $0.used > 0 }), ContinuousClock.now < deadline, !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(20))
                }
                group.cancelAll()
            }
        } onGracefulShutdown: {
            self.slots.withLock { $0.accepting = false }
            self.wakeContinuation.finish()
        }
    }

    /// Looks for queued actions now (after this process's API queued one).
    public func wake() {
        wakeContinuation.yield()
    }

    private func pollUntilShutdown() async {
        while slots.withLock({ $0.accepting }), !Task.isCancelled {
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: self.poll) }
            wakeContinuation.yield()
        }
    }

    private func claimNext() async -> ClaimedAction? {
        let reserved = slots.withLock { state -> Bool in
            guard state.accepting, state.used < maxConcurrent else { return false }
            state.used += 1
            return true
        }
        guard reserved else { return nil }
        do {
            let executor = self.executor
            if let claimed = try await cancelWhenGracefulShutdown({ [maxExpiries] in
                try await executor.store.claimAction(worker: Self.workerName, maxExpiries: maxExpiries) {
                    executor.webhookPlan(for: $0, connectionConfig: $1)
                }
            }) {
                return claimed
            }
        } catch is CancellationError {
        } catch {
            logger.error("could not claim an async action", metadata: ["error": "\(error)"])
        }
        slots.withLock { $0.used -= 1 }
        return nil
    }
}
