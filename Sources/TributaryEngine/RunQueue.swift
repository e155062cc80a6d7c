import TributaryCore
import TributaryStore

/// The run queue as the API and the scheduler use it. Runs are rows in the store: a trigger accepted
/// by an API process is run by whichever worker (``RunCoordinator``) claims it — in this process or
/// another sharing the database — and survives a crash in between.
///
/// `worker` is the coordinator of this process when it has one (role `all`): it is woken at once
/// after an enqueue and cancels its own runs without waiting for their next stop check.
public struct RunQueue: Sendable {
    public let store: any Store
    public let worker: RunCoordinator?
    /// How long ``cancel(_:)`` waits for a running run to stop before it finishes the run as cancelled itself.
    public let cancelTimeout: Duration

    public init(store: any Store, worker: RunCoordinator? = nil, cancelTimeout: Duration = .seconds(30)) {
        self.store = store
        self.worker = worker
        self.cancelTimeout = cancelTimeout
    }

    /// Queues a run of each variant, all or none.
    ///
    /// - Throws: `sync_running` when one of them is already queued or running; `unknown_sync_variant`.
    public func trigger(_ variants: [VariantRef]) async throws {
        try await store.enqueueRuns(variants)
        worker?.wake()
    }

    /// Queues a run of one variant.
    public func trigger(_ variant: VariantRef) async throws {
        try await trigger([variant])
    }

    /// Stops the variant's active run and returns once it has stopped: a queued run is dropped
    /// (recorded as cancelled); a running one is asked to stop — its function sees cooperative
    /// cancellation — and is waited for. A worker that does not confirm within `cancelTimeout` (stuck,
    /// or gone with its lease still live) has the run finished as cancelled for it: the run's own
    /// outcome is then refused, and its next stop check cancels it.
    public func cancel(_ variant: VariantRef) async throws {
        guard let run = try await store.requestCancel(of: variant, reason: "Cancelled before it started."), run.status == .running else { return }
        worker?.cancelHere(variant)
        let deadline = ContinuousClock.now + cancelTimeout
        while ContinuousClock.now < deadline {
            guard let current = try await store.run(run.id), current.status == .running else { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        _ = try? await store.completeRun(
            run.id, RunCompletion(outcome: .cancelled(reason: "Cancelled; the worker running it did not confirm within \(cancelTimeout)."), results: [:]))
    }

    /// Stops every active run of a connection (see ``cancel(_:)``).
    public func cancelAll(of connection: ConnectionRef) async throws {
        for state in try await store.variants(of: connection) { try await cancel(state.ref) }
    }

    /// Whether the variant has a queued or running run.
    public func isActive(_ variant: VariantRef) async throws -> Bool {
        try await store.activeRun(of: variant) != nil
    }
}
