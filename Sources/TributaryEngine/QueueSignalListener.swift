import Logging
import ServiceLifecycle
import TributaryStore

/// Hears the queue signals other processes send through the store (``QueueSignals``) and wakes this
/// process's worker (runs were queued) or scheduler (variants became due), so a trigger or a new
/// variant made through an API-only process starts at once rather than at the next poll.
///
/// A `Service` for processes that run a worker. When the store's connection fails (or stops
/// answering its periodic check) it logs, waits (1 s, doubling up to 30 s) and listens again,
/// waking both once it listens; meanwhile the worker and scheduler poll as always.
public struct QueueSignalListener: Service {
    let signals: any QueueSignals
    let worker: RunCoordinator?
    let scheduler: Scheduler?
    let logger: Logger

    public init(signals: any QueueSignals, worker: RunCoordinator?, scheduler: Scheduler?, logger: Logger) {
        self.signals = signals
        self.worker = worker
        self.scheduler = scheduler
        self.logger = logger
    }

    public func run() async throws {
        var failures = 0
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await cancelWhenGracefulShutdown {
                    try await signals.watchSignals(
                        onListening: { [worker, scheduler] in
                            // Signals sent while it was not listening are lost: look once now.
                            worker?.wake()
                            scheduler?.wake()
                        },
                        { [worker, scheduler] signal in
                            switch signal {
                            case .runsQueued: worker?.wake()
                            case .variantsDue: scheduler?.wake()
                            }
                        })
                }
                failures = 0
            } catch is CancellationError {
                return
            } catch {
                failures += 1
                logger.warning(
                    "not hearing other processes' queue signals; the worker and scheduler poll until they are back",
                    metadata: ["error": "\(error)", "failures": "\(failures)"])
            }
            if Task.isShuttingDownGracefully || Task.isCancelled { return }
            let wait = Self.backoff(afterFailures: failures)
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: wait) }
        }
    }

    /// The wait before listening again: 1 s after a watch that ended without an error, then 1, 2, 4…
    /// seconds, at most 30 s.
    static func backoff(afterFailures failures: Int) -> Duration {
        .seconds(min(30, 1 << min(max(failures - 1, 0), 5)))
    }
}
