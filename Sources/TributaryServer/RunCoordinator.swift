import Logging
import ServiceLifecycle
import Synchronization
import TributaryCore
import TributaryEngine
import TributaryStore

/// Runs variants on demand (`POST /sync/trigger`), at most one run per variant at a time, and
/// cancels a variant's run when it is reset, paused or deleted.
///
/// A `Service`: its `run()` owns every run in a task group, and on graceful shutdown it stops
/// accepting runs and cancels the running ones (a cancelled run changes nothing but its own
/// status). The scheduler (durable, lease-based) builds on top of this.
public final class RunCoordinator: Service, Sendable {
    struct Job: Sendable {
        var ref: VariantRef
        var sync: SyncConfig
    }

    private struct Entry {
        var task: Task<Void, Never>?
        var cancelRequested = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let executor: SyncExecutor
    private let logger: Logger
    private let jobs: AsyncStream<Job>
    private let submit: AsyncStream<Job>.Continuation
    private let state = Mutex<[VariantRef: Entry]>([:])

    public init(executor: SyncExecutor, logger: Logger) {
        self.executor = executor
        self.logger = logger
        (jobs, submit) = AsyncStream.makeStream(of: Job.self)
    }

    public func run() async throws {
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                for await job in jobs {
                    group.addTask { await self.execute(job) }
                }
            }
        } onGracefulShutdown: {
            self.submit.finish()
            self.state.withLock { entries in
                for key in entries.keys {
                    entries[key]?.cancelRequested = true
                    entries[key]?.task?.cancel()
                }
            }
        }
    }

    /// Starts a run of `ref` now.
    ///
    /// - Throws: `sync_running` (409) while that variant runs; `shutting_down` when stopping.
    public func trigger(_ ref: VariantRef, sync: SyncConfig) throws {
        try state.withLock { entries in
            guard entries[ref] == nil else {
                throw TributaryError(
                    .syncRunning,
                    "Sync '\(ref.syncName)' variant '\(ref.variant)' of connection '\(ref.connection.connectionId)' is already running; wait for it to finish, or trigger with opts.reset to restart it.")
            }
            entries[ref] = Entry()
        }
        if case .terminated = submit.yield(Job(ref: ref, sync: sync)) {
            _ = state.withLock { $0.removeValue(forKey: ref) }
            throw TributaryError(.syncRunning, "The server is shutting down and starts no new runs.")
        }
    }

    /// Whether `ref` has a run in this process (queued or running).
    public func isRunning(_ ref: VariantRef) -> Bool {
        state.withLock { $0[ref] != nil }
    }

    /// Cancels `ref`'s run, if any, and waits until it has finished.
    public func cancel(_ ref: VariantRef) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let waiting = state.withLock { entries -> Bool in
                guard entries[ref] != nil else { return false }
                entries[ref]?.cancelRequested = true
                entries[ref]?.task?.cancel()
                entries[ref]?.waiters.append(continuation)
                return true
            }
            if !waiting { continuation.resume() }
        }
    }

    /// Cancels every run of a connection and waits for them.
    public func cancelAll(of connection: ConnectionRef) async {
        let refs = state.withLock { Array($0.keys.filter { $0.connection == connection }) }
        for ref in refs { await cancel(ref) }
    }

    private func execute(_ job: Job) async {
        let executor = self.executor
        let logger = self.logger
        // Owned here: awaited below and cancelled with this child task or by `cancel(_:)`.
        let task = Task {
            do {
                _ = try await executor.run(job.ref, sync: job.sync)
            } catch {
                logger.warning("run could not start", metadata: ["variant": "\(job.ref)", "error": "\(error)"])
            }
        }
        let cancelNow = state.withLock { entries -> Bool in
            entries[job.ref]?.task = task
            return entries[job.ref]?.cancelRequested ?? false
        }
        if cancelNow { task.cancel() }
        await withTaskCancellationHandler {
            await task.value
        } onCancel: {
            task.cancel()
        }
        let waiters = state.withLock { $0.removeValue(forKey: job.ref)?.waiters ?? [] }
        for waiter in waiters { waiter.resume() }
    }
}
