import TributaryCore
import TributaryStore

/// The run queue and the lifecycle changes as the API uses them. Runs are rows in the store: a
/// trigger accepted by an API process is run by whichever worker (``RunCoordinator``) claims it — in
/// this process or another sharing the database — and survives a crash in between.
///
/// Every change is one store transaction that also ends the runs it concerns (``VariantLifecycle``):
/// a run ended there loses its lease at once, so whatever its worker still writes is refused
/// (``RunFence``), and the worker stops it within a lease check. `worker` is the coordinator of this
/// process when it has one (role `all`): it is woken at once after an enqueue, and stops the
/// functions of runs ended here without waiting for their next lease check.
public struct RunQueue: Sendable {
    public let store: any Store
    public let worker: RunCoordinator?
    /// This process's scheduler when it has one (role `all` or `worker`): woken when a variant became
    /// due here, so a new variant's first run starts at once rather than at the next tick.
    public let scheduler: Scheduler?
    /// This process's record purger, woken after a change hid records (nil: another process purges).
    public let purger: RecordPurger?
    /// The most variants one call may change (an API call over every variant of an integration is
    /// refused beyond it, never split: multi-variant calls are all or nothing).
    public let maxVariantsPerCall: Int

    public init(
        store: any Store, worker: RunCoordinator? = nil, scheduler: Scheduler? = nil, purger: RecordPurger? = nil, maxVariantsPerCall: Int = 1000
    ) {
        self.purger = purger
        self.scheduler = scheduler
        self.store = store
        self.worker = worker
        self.maxVariantsPerCall = max(1, maxVariantsPerCall)
    }

    /// Queues a run of each variant, all or none.
    ///
    /// - Throws: `sync_running` when one of them is already queued or running; `unknown_sync_variant`;
    ///   `too_many_variants`.
    public func trigger(_ variants: [VariantRef]) async throws {
        try checkBound(variants)
        try await store.enqueueRuns(variants)
        worker?.wake()
    }

    /// Queues a run of one variant.
    public func trigger(_ variant: VariantRef) async throws {
        try await trigger([variant])
    }

    /// Resets each variant and queues a run of it, all or none, in one transaction (``VariantStore/resetVariants(_:emptyCache:)``).
    @discardableResult
    public func reset(_ variants: [VariantRef], emptyCache: Bool) async throws -> LifecycleOutcome {
        try checkBound(variants)
        let outcome = try await store.resetVariants(variants, emptyCache: emptyCache, queuesRuns: true)
        stopHere(outcome)
        if emptyCache { purger?.wake() }
        worker?.wake()
        return outcome
    }

    /// Creates a variant of an existing connection (``VariantStore/createVariant(_:maximumPerSync:paused:)``).
    /// Its first run is due at once: this process's scheduler is woken to queue it.
    public func createVariant(_ variant: VariantRef, maximumPerSync: Int, paused: Bool) async throws -> VariantState {
        let state = try await store.createVariant(variant, maximumPerSync: maximumPerSync, paused: paused)
        if !paused { variantsBecameDue() }
        return state
    }

    /// Pauses (ending their runs) or resumes the variants' schedules, all or none. A resumed variant
    /// whose run is due (or that had none planned) is queued at the scheduler's next pass, which comes at once here.
    @discardableResult
    public func setPaused(_ paused: Bool, _ variants: [VariantRef]) async throws -> LifecycleOutcome {
        try checkBound(variants)
        let outcome = try await store.setPaused(paused, for: variants)
        stopHere(outcome)
        if !paused { variantsBecameDue() }
        return outcome
    }

    /// Wakes this process's scheduler: variants may have become due (created with a new connection,
    /// say), and their first runs should not wait for its next tick. (Other processes hear of it
    /// from the store, when it signals: ``QueueSignals``.)
    public func variantsBecameDue() {
        scheduler?.wake()
    }

    /// Deletes a variant, ending its runs, in one transaction.
    @discardableResult
    public func deleteVariant(_ variant: VariantRef) async throws -> LifecycleOutcome {
        let outcome = try await store.deleteVariant(variant)
        stopHere(outcome)
        purger?.wake()
        return outcome
    }

    /// Deletes a connection with its variants, ending their runs, in one transaction.
    @discardableResult
    public func deleteConnection(_ connection: ConnectionRef) async throws -> LifecycleOutcome {
        let outcome = try await store.deleteConnection(connection)
        stopHere(outcome)
        purger?.wake()
        return outcome
    }

    /// Whether the variant has a queued or running run.
    public func isActive(_ variant: VariantRef) async throws -> Bool {
        try await store.activeRun(of: variant) != nil
    }

    private func checkBound(_ variants: [VariantRef]) throws {
        guard variants.count <= maxVariantsPerCall else { throw StoreMessages.tooManyVariants(variants.count, maximum: maxVariantsPerCall) }
    }

    /// Stops, in this process, the functions of the runs the change ended (elsewhere their lease checks do).
    private func stopHere(_ outcome: LifecycleOutcome) {
        guard let worker else { return }
        for run in outcome.ended where run.kind != .webhook { worker.cancelHere(run: run.id) }
    }
}
