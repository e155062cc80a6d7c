import Logging
import TributaryCore
import TributaryStore

/// Runs a sync function once for one variant and records the run.
///
/// The run's life: the store records its start (and refuses a second live run of the variant),
/// the function runs against a ``SyncContext`` bound to the variant, and the store finishes it:
/// - success: records not seen in the deletion-tracking window are marked deleted (full refresh
///   with `track_deletes`), `lastSyncDate` becomes the run's start time, a full refresh's checkpoint
///   is cleared;
/// - failure (the function threw): the run is `failed` with the error's message, nothing else changes;
/// - cancellation: the run is `cancelled`, nothing else changes.
public struct SyncExecutor: Sendable {
    public let store: any Store
    public let functions: SyncFunctionRegistry
    public let logger: Logger
    /// How long a run's lease lasts without a heartbeat; a heartbeat renews it every quarter of that.
    public let leaseSeconds: Int64

    public init(store: any Store, functions: SyncFunctionRegistry, logger: Logger, leaseSeconds: Int64 = 120) {
        self.store = store
        self.functions = functions
        self.logger = logger
        self.leaseSeconds = max(1, leaseSeconds)
    }

    /// Runs `sync` for `variant` and returns the finished run.
    ///
    /// - Parameter createsVariant: create the variant when it does not exist (local development);
    ///   the coordinator passes false so a deleted variant is never recreated by a late run.
    /// - Throws: only when the run cannot start or be recorded (unknown function, the variant is
    ///   already running, a storage failure). A failing sync function does not throw here: it
    ///   yields a run with status `failed`.
    public func run(_ variant: VariantRef, sync: SyncConfig, createsVariant: Bool = true) async throws -> RunRecord {
        let function = try functions.function(for: sync)
        try Task.checkCancellation()
        let tracksDeletes = sync.syncType == .full && sync.trackDeletes
        let started = try await store.startRun(variant, RunStart(tracksDeletes: tracksDeletes, leaseSeconds: leaseSeconds, createsVariant: createsVariant))
        var logger = self.logger
        logger[metadataKey: "run"] = "\(started.runId)"
        logger[metadataKey: "variant"] = "\(variant)"
        logger.info("run started", metadata: ["kind": "\(started.kind.rawValue)", "resumes": "\(started.resumesWindow)"])

        let context = RunContext(store: store, ref: variant, sync: sync, started: started, logger: logger)
        let outcome: RunOutcome
        var retry: RetryAdvice? = nil
        do {
            try await withHeartbeat(run: started.runId, logger: logger) { try await function.exec(context) }
            // A function that swallowed cancellation and returned did not finish its work.
            outcome = Task.isCancelled ? .cancelled(reason: "The run was cancelled.") : .succeeded
        } catch is CancellationError {
            outcome = .cancelled(reason: "The run was cancelled.")
        } catch let error as TributaryError {
            outcome = .failed(message: error.message)
        } catch {
            outcome = .failed(message: String(describing: error))
            if let temporary = error as? any RetryableError { retry = RetryAdvice(afterSeconds: temporary.retryAfterSeconds) }
        }
        if case .failed(let message) = outcome {
            await context.log("Run failed: \(message)", level: .error)
        }

        let completion = RunCompletion(
            outcome: outcome, results: context.results,
            deleteUnseenModels: tracksDeletes ? sync.models : [],
            clearCheckpoint: sync.syncType == .full, retry: retry)
        let store = self.store
        let runId = started.runId
        // Recording the outcome must happen even when this task was cancelled: run it in a task
        // that does not inherit the cancellation, and wait for it here.
        let finished = try await Task { try await store.completeRun(runId, completion) }.value
        logger.info(
            "run finished",
            metadata: [
                "status": "\(finished.status.rawValue)",
                "results": "\(finished.results.sorted { $0.key < $1.key }.map { "\($0.key)+\($0.value.added)~\($0.value.updated)-\($0.value.deleted)" })",
            ])
        return finished
    }

    /// Runs `body` while a heartbeat renews the run's lease every quarter of it, whether or not the
    /// function writes anything (a long provider call must not look like a dead process).
    private func withHeartbeat(run: Int64, logger: Logger, _ body: @escaping @Sendable () async throws -> Void) async throws {
        let store = self.store
        let interval = Duration.milliseconds(leaseSeconds * 250)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                while true {
                    try await Task.sleep(for: interval)
                    do {
                        try await store.heartbeat(run: run)
                    } catch is CancellationError {
                        throw CancellationError()
                    } catch {
                        logger.warning("heartbeat failed", metadata: ["error": "\(error)"])
                    }
                }
            }
            defer { group.cancelAll() }
            try await body()
        }
    }
}
