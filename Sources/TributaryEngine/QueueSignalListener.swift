import Logging
import ServiceLifecycle
import TributaryCore
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
        // Failures since the listener last listened: a connection that listened for a while and was
        // then lost is tried again after 1 s, not after its predecessors' backoff.
        let failures = LockedValue(0)
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await cancelWhenGracefulShutdown {
                    try await signals.watchSignals(
                        onListening: { [worker, scheduler] in
                            failures.withLock { $0 = 0 }
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
            } catch is CancellationError {
                return
            } catch {
                let count = failures.withLock { count in
                    count += 1
                    return count
                }
                logger.warning(
                    "not hearing other processes' queue signals; the worker and scheduler poll until they are back",
                    metadata: ["error": "\(error)", "failures": "\(count)"])
            }
            if Task.isShuttingDownGracefully || Task.isCancelled { return }
            let wait = Self.backoff(afterFailures: failures.withLock { $0 })
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: wait) }
        }
    }

    /// The wait before listening again after `failures` failures in a row (since it last listened):
    /// 1, 2, 4… seconds, at most 30 s.
    static func backoff(afterFailures failures: Int) -> Duration {
        .seconds(min(30, 1 << min(max(failures - 1, 0), 5)))
    }
}
