import TributaryCore

/// The run queue: runs are rows, queued by the API and the schedulers of any process, claimed by
/// the workers of any process.
public protocol RunQueueStore: Sendable {
    /// Records the start of a run (not through the queue: `dryrun`, the demo) and returns the state
    /// the run starts from, with its lease.
    ///
    /// Throws `sync_running` while another run of the variant is queued or holds a live lease.
    func startRun(_ variant: VariantRef, _ start: RunStart) async throws -> StartedRun
    /// Queues a run of every listed variant — all of them, or none: throws `sync_running` when one
    /// already has an active (queued or running, with a live lease) run, `unknown_sync_variant` when
    /// one does not exist.
    /// - Returns: the queued runs, in order.
    @discardableResult
    func enqueueRuns(_ variants: [VariantRef]) async throws -> [RunRecord]
    /// Queues a scheduled run of each of `variants` that, in this one transaction, is still started,
    /// due (`next_run_at <= due`) and without an active run — so a scheduler working from a list of
    /// due variants read a moment ago never queues a second run of a variant that ran meanwhile.
    /// - Returns: the variants queued, in order.
    func enqueueScheduledRuns(_ variants: [VariantRef], dueAt due: Timestamp) async throws -> [VariantRef]
    /// Atomically claims the fairest queued run and starts its next attempt (``RunStartRule``): among
    /// connections below `maxRunsPerConnection` running runs, the one with the fewest, oldest run
    /// first. Two workers never claim the same run.
    /// - Returns: nil when nothing can be claimed now.
    func claimRun(_ claim: RunClaim) async throws -> ClaimedRun?
    /// Claims up to `limit` runs, each as ``claimRun(_:)`` would in turn (each sees the runs the ones
    /// before it started) — a store may do it in one transaction. Fewer (or none) when no more can be
    /// claimed now.
    func claimRuns(_ claim: RunClaim, limit: Int) async throws -> [ClaimedRun]
    /// Handles every running run whose lease ran out (``RunExpiry``): queued again as its next
    /// attempt, or given up with its variant's next run planned.
    /// - Returns: the runs handled, as they now stand.
    func expireRuns(_ policy: RunExpiry.Policy) async throws -> [RunRecord]
    /// Started (not paused) variants whose next run is due at `now` and that have no active (queued or
    /// running) run, earliest first.
    func dueVariants(at now: Timestamp, limit: Int) async throws -> [VariantState]
    /// The earliest next run after `time` of any started (not paused) variant; nil when none is planned.
    func nextScheduledRun(after time: Timestamp) async throws -> Timestamp?
    /// Sets when the variant's schedule next starts a run (nothing when the variant does not exist).
    func setNextRun(_ time: Timestamp, for variant: VariantRef) async throws
}

extension RunQueueStore {
    /// One ``claimRun(_:)`` after another, until `limit` or nothing more can be claimed. Each claim
    /// commits on its own, so when one fails after others succeeded, those are returned (they
    /// are running now, and must be run); the error is thrown only when nothing was claimed.
    public func claimRuns(_ claim: RunClaim, limit: Int) async throws -> [ClaimedRun] {
        var claimed: [ClaimedRun] = []
        while claimed.count < limit {
            do {
                guard let run = try await claimRun(claim) else { break }
                claimed.append(run)
            } catch {
                if claimed.isEmpty { throw error }
                break
            }
        }
        return claimed
    }
}
