import Foundation
import Logging
import ServiceLifecycle
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
    private let maxExpiries: Int
    private let logger: Logger
    private let loop: ClaimLoop

    /// - Parameter maxExpiries: lease expiries after which an execution is failed rather than run again.
    public init(
        executor: ActionExecutor, maxConcurrent: Int = 4, maxExpiries: Int = 3, poll: Duration = .seconds(1), drain: Duration = .seconds(30),
        logger: Logger
    ) {
        self.executor = executor
        self.maxExpiries = max(1, maxExpiries)
        self.logger = logger
        loop = ClaimLoop(maxConcurrent: maxConcurrent, poll: poll, drain: drain)
    }

    public func run() async throws {
        let (executor, maxExpiries, logger) = (executor, maxExpiries, logger)
        // Shutting down: attempts get the drain time, then are stopped and queued again.
        await loop.run(
            claim: {
                try await executor.store.claimAction(worker: Self.workerName, maxExpiries: maxExpiries) {
                    executor.webhookPlan(for: $0, connectionConfig: $1)
                }
            },
            claimFailed: { logger.error("could not claim an async action", metadata: ["error": "\($0)"]) },
            execute: { await executor.run($0) },
            afterDrain: .cancel)
    }

    /// Looks for queued actions now (after this process's API queued one).
    public func wake() {
        loop.wake()
    }
}
