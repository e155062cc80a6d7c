import Logging
import ServiceLifecycle
import Synchronization
import TributaryCore
import TributaryStore

/// Runs the handlers of provider webhooks the API accepted (``Store/enqueueProviderWebhook(for:type:payload:)``):
/// claims each stored task, runs it as a `WEBHOOK` run on the base variant through the
/// ``SyncExecutor`` (beside the variant's own runs, never blocked by them), at most
/// `maxConcurrent` at once in this process.
///
/// A task whose worker died is claimed again once its run's lease runs out; one interrupted
/// `maxAttempts` times is given up (its run records why). A handler that throws fails its run —
/// visible in the run history and, when the environment sends failure webhooks, to the app.
///
/// A `Service`: on graceful shutdown it claims nothing more; executions get `drain` to finish, then
/// are stopped — an execution stopped by the shutdown leaves its task open for the next worker.
public final class ProviderWebhookWorker: Service, Sendable {
    private let executor: SyncExecutor
    private let config: TributaryConfig
    private let maxAttempts: Int
    private let logger: Logger
    private let loop: ClaimLoop
    /// Executions running here, each with the handle that stops its handler.
    private let running = Mutex<[Int64: RunStop]>([:])

    public init(
        executor: SyncExecutor, config: TributaryConfig, maxConcurrent: Int = 4, maxAttempts: Int = 5, poll: Duration = .seconds(1),
        drain: Duration = .seconds(30), logger: Logger
    ) {
        self.executor = executor
        self.config = config
        self.maxAttempts = max(1, maxAttempts)
        self.logger = logger
        loop = ClaimLoop(maxConcurrent: maxConcurrent, poll: poll, drain: drain)
    }

    public func run() async throws {
        let (executor, maxAttempts, logger) = (executor, maxAttempts, logger)
        // Shutting down: executions get the drain time, then their handlers are stopped (their tasks stay open).
        await loop.run(
            claim: { try await executor.store.claimProviderWebhook(leaseSeconds: executor.leaseSeconds, maxAttempts: maxAttempts) },
            claimFailed: { logger.error("could not claim a provider webhook", metadata: ["error": "\($0)"]) },
            execute: { await self.execute($0) },
            afterDrain: .call { for stop in self.running.withLock({ Array($0.values) }) { stop.stop() } })
    }

    /// Looks for accepted webhooks now (after this process's API stored some).
    public func wake() {
        loop.wake()
    }

    private func execute(_ claimed: ClaimedProviderWebhook) async {
        let ref = claimed.task.variant
        let stop = RunStop()
        running.withLock { $0[claimed.started.runId] = stop }
        defer { _ = running.withLock { $0.removeValue(forKey: claimed.started.runId) } }
        do {
            guard let sync = config.sync(for: ref) else {
                _ = try await executor.store.completeRun(
                    claimed.started.lease, RunCompletion(outcome: .failed(message: "Sync '\(ref.syncName)' is no longer configured.")))
                return
            }
            let run = try await executor.runWebhook(claimed, sync: sync, options: SyncExecutor.Options(stop: stop))
            logger.info(
                "provider webhook handled",
                metadata: ["variant": "\(ref)", "run": "\(run.id)", "status": "\(run.status.rawValue)", "type": "\(claimed.task.type ?? "")"])
        } catch {
            logger.warning("provider webhook execution could not be recorded", metadata: ["variant": "\(ref)", "error": "\(error)"])
        }
    }
}
