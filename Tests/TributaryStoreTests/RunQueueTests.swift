import Foundation
import Testing
import TributaryCore
import TributarySQLite
import TributaryStore
import TributaryTestSupport

@Suite("Run queue in the store (SQLite and PostgreSQL)")
struct RunQueueTests {
    func variant(_ connectionId: String, _ name: String = "base") -> VariantRef {
        VariantRef(connection: ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: connectionId), syncName: "orders", variant: name)
    }

    static let orders = SyncAddress(environment: "dev", providerConfigKey: "shop", syncName: "orders")

    func claim(maxPerConnection: Int = 10, lease: Int64 = 60, tracksDeletes: Bool = false) -> RunClaim {
        RunClaim(leaseSeconds: lease, maxRunsPerConnection: maxPerConnection, syncs: [Self.orders: tracksDeletes])
    }

    @Test(arguments: StoreKind.available) func enqueueIsAllOrNothingAndOneActiveRunPerVariant(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        let a = variant("c1", "a")
        let b = variant("c1", "b")
        for ref in [a, b] { try await f.store.ensureVariant(ref) }
        let queued = try await f.store.enqueueRuns([a])
        #expect(queued.map(\.status) == [.queued])
        // b is fine, a is already queued: neither is queued.
        await #expect(throws: TributaryError.self) { try await f.store.enqueueRuns([b, a]) }
        #expect(try await f.store.activeRun(of: b) == nil)
        // The same variant twice in one batch is refused too.
        await #expect(throws: TributaryError.self) { try await f.store.enqueueRuns([b, b]) }
        #expect(try await f.store.activeRun(of: b) == nil)
        // Unknown variants are refused, not created.
        let error = await #expect(throws: TributaryError.self) { try await f.store.enqueueRuns([variant("c1", "ghost")]) }
        #expect(error?.code == .unknownVariant)
        #expect(try await f.store.variantState(variant("c1", "ghost")) == nil)
        // A queued variant is not due, and cannot be started directly.
        #expect(try await f.store.dueVariants(at: Timestamp(microseconds: Int64.max / 2), limit: 10).map(\.ref) == [b])
        await #expect(throws: TributaryError.self) { try await f.store.startRun(a, RunStart(tracksDeletes: false)) }
    }

    /// A scheduler queues from a list of due variants read a moment earlier; the store queues only
    /// variants still due and idle then, so one that another process queued and ran meanwhile (its
    /// next run now in the future) is not run twice.
    @Test(arguments: StoreKind.available) func aScheduledRunIsQueuedOnlyWhileTheVariantIsStillDue(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        let due = variant("c1", "due")
        let ranMeanwhile = variant("c1", "ran")
        let paused = variant("c1", "paused")
        for ref in [due, ranMeanwhile, paused] { try await f.store.ensureVariant(ref) }
        let now = Timestamp.now()
        try await f.store.setPaused(true, for: paused)
        // What a finished run leaves: the next slot, after the time the scheduler's list was read.
        try await f.store.setNextRun(Timestamp(microseconds: now.microseconds + 60_000_000), for: ranMeanwhile)
        let queued = try await f.store.enqueueScheduledRuns([ranMeanwhile, due, paused, variant("c1", "deleted")], dueAt: now)
        #expect(queued == [due], "only the variant still due, started and idle")
        #expect(try await f.store.activeRun(of: due)?.status == .queued)
        #expect(try await f.store.activeRun(of: ranMeanwhile) == nil)
        #expect(try await f.store.activeRun(of: paused) == nil)
        #expect(try await f.store.enqueueScheduledRuns([due], dueAt: now).isEmpty, "already queued")
    }

    /// One batch queues in the list's order — the queue's order, so the claims follow it — and a
    /// variant listed twice once; variants of other connections and unknown ones are told apart.
    @Test(arguments: StoreKind.available) func aBatchOfScheduledRunsIsQueuedInItsOrderEachVariantOnce(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        let listed = [variant("c2", "x"), variant("c1", "b"), variant("c3", "a"), variant("c1", "a")]
        for ref in listed.reversed() { try await f.store.ensureVariant(ref) }
        let now = Timestamp.now()
        let queued = try await f.store.enqueueScheduledRuns(
            [listed[0], listed[1], variant("c9", "ghost"), listed[1], listed[2], variant("c1", "ghost"), listed[3]], dueAt: now)
        #expect(queued == listed)
        var ids: [Int64] = []
        for ref in listed { ids.append(try #require(try await f.store.activeRun(of: ref)).id) }
        #expect(ids == ids.sorted() && Set(ids).count == listed.count, "run ids follow the list")
        var claimed: [VariantRef] = []
        while let run = try await f.store.claimRun(claim(maxPerConnection: 2)) { claimed.append(run.variant) }
        #expect(claimed == listed, "claimed oldest first")
    }

    /// Four runs queued on connection `busy`, then one on `quiet`, oldest first.
    func queueBusyAndQuiet(_ f: StoreFixture) async throws -> (busy: [VariantRef], quiet: VariantRef) {
        let busy = (1...4).map { variant("busy", "v\($0)") }
        let quiet = variant("quiet")
        for ref in busy + [quiet] { try await f.store.ensureVariant(ref) }
        try await f.store.enqueueRuns(busy + [quiet])
        return (busy, quiet)
    }

    @Test(arguments: StoreKind.available) func claimsAreFairAcrossConnectionsAndRespectThePerConnectionLimit(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        let (busy, quiet) = try await queueBusyAndQuiet(f)

        var claimed: [ClaimedRun] = []
        while let run = try await f.store.claimRun(claim(maxPerConnection: 2)) { claimed.append(run) }
        let order = claimed.map(\.variant)
        // busy/v1 is oldest; then the quiet connection (no running runs) goes before busy's second;
        // busy stops at its limit of 2 running.
        #expect(order == [busy[0], quiet, busy[1]])
        #expect(try await f.store.activeRun(of: busy[2])?.status == .queued)

        // A finished run frees its connection's slot for the next one in line.
        _ = try await f.store.completeRun(claimed[0].started.lease, RunCompletion(outcome: .succeeded))
        #expect(try await f.store.claimRun(claim(maxPerConnection: 2))?.variant == busy[2])
        #expect(try await f.store.claimRun(claim(maxPerConnection: 2)) == nil)
    }

    /// A batch claims what one claim after another would: fair across connections, each claim
    /// counting the runs the batch already started, stopping at `limit` or when nothing fits.
    @Test(arguments: StoreKind.available) func aBatchClaimTakesWhatClaimsOneAfterAnotherWould(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        let (busy, quiet) = try await queueBusyAndQuiet(f)
        #expect(try await f.store.claimRuns(claim(maxPerConnection: 2), limit: 0).isEmpty)
        let first = try await f.store.claimRuns(claim(maxPerConnection: 2), limit: 2)
        #expect(first.map(\.variant) == [busy[0], quiet])
        let rest = try await f.store.claimRuns(claim(maxPerConnection: 2), limit: 16)
        #expect(rest.map(\.variant) == [busy[1]], "busy stops at its limit of 2 running")
        for run in first + rest {
            #expect(try await f.store.activeRun(of: run.variant)?.status == .running)
            #expect(try await f.store.leaseState(run.started.lease) == .held)
        }
        #expect(try await f.store.activeRun(of: busy[2])?.status == .queued)
        #expect(try await f.store.claimRuns(claim(maxPerConnection: 2), limit: 16).isEmpty)
    }

    /// The claim looks first at the head of the queue; a run on an idle connection queued behind
    /// more runs of a busy connection than that head holds still goes first.
    @Test(arguments: StoreKind.available) func anIdleConnectionsRunQueuedBehindALongBusyQueueGoesFirst(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        let busy = (0..<140).map { variant("busy", "v\($0)") }
        let quiet = variant("quiet")
        for ref in busy + [quiet] { try await f.store.ensureVariant(ref) }
        try await f.store.enqueueRuns(busy)
        #expect(try await f.store.claimRun(claim(maxPerConnection: 2))?.variant == busy[0])
        try await f.store.enqueueRuns([quiet])
        #expect(try await f.store.claimRun(claim(maxPerConnection: 2))?.variant == quiet, "nothing runs on its connection")
        #expect(try await f.store.claimRun(claim(maxPerConnection: 2))?.variant == busy[1])
        #expect(try await f.store.claimRun(claim(maxPerConnection: 2)) == nil, "busy is at its limit")
    }

    @Test(arguments: StoreKind.available) func twoProcessesNeverClaimTheSameRun(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        // A second store on the same database: another process's connection pool.
        let other = try await f.reopen()
        let refs = (0..<40).map { variant("c\($0 % 8)", "v\($0)") }
        for ref in refs { try await f.store.ensureVariant(ref) }
        try await f.store.enqueueRuns(refs)
        let stores: [any Store] = [f.store, other, f.store, other]
        let claimed = try await withThrowingTaskGroup(of: [Int64].self) { group in
            for store in stores {
                group.addTask {
                    var ids: [Int64] = []
                    while let run = try await store.claimRun(RunClaim(leaseSeconds: 60, maxRunsPerConnection: 100, syncs: [Self.orders: false])) {
                        ids.append(run.started.runId)
                    }
                    return ids
                }
            }
            return try await group.reduce(into: [Int64]()) { $0 += $1 }
        }
        #expect(claimed.count == refs.count)
        #expect(Set(claimed).count == refs.count, "no run was claimed twice")
    }

    @Test(arguments: StoreKind.available) func claimingStartsTheRunLikeStartRun(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        try await f.store.ensureVariant(baseVariant)
        try await f.store.enqueueRuns([baseVariant])
        let run = try #require(try await f.store.claimRun(claim(tracksDeletes: true)))
        #expect(run.variant == baseVariant)
        #expect(run.started.kind == .initial)
        #expect(run.started.lease == RunLease(runId: run.started.runId, token: 1), "the first attempt holds token 1")
        #expect(run.started.deletionGeneration == run.started.runId, "a full refresh with track_deletes opens a window")
        #expect(try await f.store.run(run.started.runId)?.status == .running)
        #expect(try await f.store.leaseState(run.started.lease) == .held)
        // While it runs no next run is planned, so no scheduler can queue it again when it ends; its end plans one.
        #expect(try await f.store.variantState(baseVariant)?.nextRunAt == nil)
        let plan = NextRunPlan(frequency: try Frequency("every hour"), retry: RetryPolicy(), from: Timestamp.now())
        _ = try await f.store.completeRun(run.started.lease, RunCompletion(outcome: .succeeded, nextRun: plan))
        #expect(try await f.store.dueVariants(at: Timestamp.now(), limit: 10).isEmpty)
        #expect(try await f.store.variantState(baseVariant)?.nextRunAt == plan.next(for: try #require(try await f.store.variantState(baseVariant)), retry: nil, consecutiveRetryableFailures: 0))
    }

    /// `overlap: run_after`: the store hands the rule the run's queue time, so a slot that came while
    /// the run was active plans the next run at its end; `skip` plans the first slot after it.
    @Test(arguments: StoreKind.available) func aSlotMissedDuringARunIsKeptOnceWithRunAfter(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        for (overlap, variantName) in [(SchedulePolicy.Overlap.runAfter, "after"), (.skip, "skip")] {
            let ref = variant("c1", variantName)
            try await f.store.ensureVariant(ref)
            try await f.store.enqueueRuns([ref])
            let run = try #require(try await f.store.claimRun(claim(tracksDeletes: false)))
            let queuedAt = try #require(try await f.store.run(run.started.runId)).startedAt
            // The run "ends" 2.5 hours after it was queued: two hourly slots came meanwhile.
            let end = queuedAt.adding(microseconds: 9_000_000_000)
            let plan = NextRunPlan(
                frequency: try Frequency("every hour"), schedule: SchedulePolicy(overlap: overlap), retry: RetryPolicy(), from: end, jitter: 1)
            _ = try await f.store.completeRun(run.started.lease, RunCompletion(outcome: .succeeded, nextRun: plan))
            let state = try #require(try await f.store.variantState(ref))
            if overlap == .runAfter {
                #expect(state.nextRunAt == end, "once, as soon as the active run ended")
            } else {
                let slot = try Frequency("every hour").nextSlot(after: end, origin: state.createdAt)
                #expect(state.nextRunAt == slot)
                #expect(try #require(state.nextRunAt) > end)
            }
        }
    }

    /// A worker that does not run a sync (another version of the configuration) leaves its queued runs
    /// for a worker that does, and claims the next run it can run — however many such runs wait before it.
    @Test(arguments: StoreKind.available) func aQueuedRunOfASyncThisWorkerDoesNotRunStaysQueuedForOneThatDoes(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        // More older runs of a retired sync than any fixed look-past limit would skip.
        let others = (0..<150).map { index -> VariantRef in
            var other = variant("c\(index % 3)", "other\(index)")
            other.syncName = "retired"
            return other
        }
        let kept = variant("c1", "kept")
        for ref in others + [kept] { try await f.store.ensureVariant(ref) }
        try await f.store.enqueueRuns(others)
        try await f.store.enqueueRuns([kept])
        let run = try await f.store.claimRun(claim(maxPerConnection: 5))
        #expect(run?.variant == kept)
        #expect(try await f.store.activeRun(of: others[0])?.status == .queued, "left for a worker that runs it")
        #expect(try await f.store.claimRun(claim(maxPerConnection: 5)) == nil)
        let retired = SyncAddress(environment: "dev", providerConfigKey: "shop", syncName: "retired")
        let elsewhere = try await f.store.claimRun(RunClaim(leaseSeconds: 60, maxRunsPerConnection: 5, syncs: [retired: false]))
        #expect(elsewhere?.variant == others[0])
    }

    @Test(arguments: StoreKind.available) func aShutdownsRequeueIsNotCountedAsALeaseExpiry(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        try await f.store.ensureVariant(baseVariant)
        try await f.store.enqueueRuns([baseVariant])
        let policy = RunExpiry.Policy(maxAttempts: 2)
        // Three deploys in a row queue the run again …
        for _ in 0..<3 {
            let claimed = try #require(try await f.store.claimRun(claim()))
            try await f.store.releaseRun(claimed.started.lease, reason: "shutdown")
        }
        // … and its first real crash is still retried.
        _ = try #require(try await f.store.claimRun(claim(lease: 1)))
        try await Task.sleep(for: .milliseconds(1100))
        let handled = try await f.store.expireRuns(policy)
        #expect(handled.map(\.status) == [.queued])
        #expect(handled.first?.attempts == 4, "four attempts, one lease expiry")
    }

    @Test(arguments: StoreKind.available) func pausingEndsAQueuedOrRunningRunInItsTransaction(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        let a = variant("c1", "a")
        let b = variant("c1", "b")
        for ref in [a, b] { try await f.store.ensureVariant(ref) }
        try await f.store.enqueueRuns([a])
        let running = try #require(try await f.store.claimRun(claim()))
        try await f.store.enqueueRuns([b])

        let outcome = try await f.store.setPaused(true, for: [a, b])
        #expect(Set(outcome.ended.map(\.id)) == [running.started.runId, try #require(try await f.store.runs(of: b, limit: 1).first).id])
        #expect(outcome.ended.allSatisfy { $0.status == .cancelled })
        #expect(try await f.store.activeRun(of: a) == nil)
        #expect(try await f.store.activeRun(of: b) == nil)
        // The paused run's lease is gone: its worker stops, and nothing it still writes is applied.
        #expect(try await f.store.leaseState(running.started.lease).isHeld == false)
        let late = await #expect(throws: TributaryError.self) {
            _ = try await f.store.saveRecords([order("late")], model: "Order", for: running.started.lease)
        }
        #expect(late?.code == .runNotRunning)
        #expect(try await f.store.allChanges(a.dataset("Order")).isEmpty)
        // All or nothing: an unknown variant pauses nobody.
        let error = await #expect(throws: TributaryError.self) { try await f.store.setPaused(false, for: [a, variant("c1", "ghost")]) }
        #expect(error?.code == .unknownVariant)
        #expect(try await f.store.variantState(a)?.paused == true)
        // Started again with no next run planned: it runs at once.
        try await f.store.setPaused(false, for: [a])
        #expect(try await f.store.variantState(a)?.nextRunAt != nil)
    }

    @Test(arguments: StoreKind.available) func anExpiredRunIsQueuedAgainAsItsNextAttemptKeepingStartWindowAndCounts(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        try await f.store.ensureVariant(baseVariant)
        try await f.store.enqueueRuns([baseVariant])
        let first = try #require(try await f.store.claimRun(claim(lease: 3, tracksDeletes: true)))
        _ = try await f.store.saveRecords([order("1"), order("2")], model: "Order", for: first.started.lease)
        try await f.store.saveCheckpoint(["page": 2], for: first.started.lease)
        #expect(try await f.store.expireRuns(RunExpiry.Policy()).isEmpty)
        try await Task.sleep(for: .milliseconds(3100))
        // The frozen worker's late write is refused once its lease time ran out, even before expiry runs.
        let late = await #expect(throws: TributaryError.self) {
            _ = try await f.store.saveRecords([order("late")], model: "Order", for: first.started.lease)
        }
        #expect(late?.code == .leaseLost)
        // A trigger that comes before the scheduler's expiry does not replace the dead run (which would
        // lose its first start and counts): the run is still the variant's, and expiry resumes it.
        let triggered = await #expect(throws: TributaryError.self) { try await f.store.enqueueRuns([baseVariant]) }
        #expect(triggered?.code == .syncRunning)
        #expect(try await f.store.activeRun(of: baseVariant)?.id == first.started.runId)
        let expired = try await f.store.expireRuns(RunExpiry.Policy())
        #expect(expired.map(\.id) == [first.started.runId])
        #expect(expired.first?.status == .queued, "the same run, queued again")
        #expect(try await f.store.activeRun(of: baseVariant)?.id == first.started.runId)
        // The retry is the run's second attempt: its first start, its window from the checkpoint, its counts so far.
        let resumed = try #require(try await f.store.claimRun(claim(tracksDeletes: true)))
        #expect(resumed.started.lease == RunLease(runId: first.started.runId, token: 2))
        #expect(resumed.started.startedAt == first.started.startedAt)
        #expect(resumed.started.resumesWindow)
        #expect(resumed.started.deletionGeneration == first.started.deletionGeneration)
        #expect(resumed.started.state.checkpoint?["page"] == 2)
        // The first attempt's lease stays dead although the run runs again.
        let superseded = await #expect(throws: TributaryError.self) {
            try await f.store.saveCheckpoint(["page": 99], for: first.started.lease)
        }
        #expect(superseded?.code == .leaseLost)
        _ = try await f.store.saveRecords([order("3")], model: "Order", for: resumed.started.lease)
        let done = try await f.store.completeRun(
            resumed.started.lease, RunCompletion(outcome: .succeeded, models: ["Order"], deleteUnseenModels: ["Order"], clearCheckpoint: true))
        #expect(done.results["Order"] == ModelResult(added: 3), "both attempts' records count")
        #expect(done.attempts == 2)
        #expect(try await f.store.variantState(baseVariant)?.lastSyncDate == first.started.startedAt, "lastSyncDate is the first attempt's start")
        #expect(try await f.store.liveRecords(baseVariant.dataset("Order")).keys.sorted() == ["1", "2", "3"])
        #expect(try await f.store.logs(ofRun: done.id, limit: 10).contains { $0.message.hasPrefix("Attempt 1 was interrupted") })
    }

    @Test(arguments: StoreKind.available) func aRunInterruptedTooOftenIsGivenUpAndItsVariantStaysScheduled(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        try await f.store.ensureVariant(baseVariant)
        try await f.store.enqueueRuns([baseVariant])
        let policy = RunExpiry.Policy(maxAttempts: 2, giveUpDelaySeconds: 600)
        for attempt in 1...2 {
            let claimed = try #require(try await f.store.claimRun(claim(lease: 1)))
            #expect(claimed.started.attempt == Int64(attempt))
            try await Task.sleep(for: .milliseconds(1100))
            let handled = try await f.store.expireRuns(policy)
            #expect(handled.first?.status == (attempt < 2 ? .queued : .expired))
        }
        let run = try #require(try await f.store.runs(of: baseVariant, limit: 1).first)
        #expect(run.status == .expired && run.error?.contains("Given up: 2 times") == true)
        #expect(try await f.store.activeRun(of: baseVariant) == nil)
        let next = try #require(try await f.store.variantState(baseVariant)?.nextRunAt, "a given-up variant keeps a next run")
        #expect(next.microseconds > Timestamp.now().microseconds + 500_000_000)
    }

    @Test(arguments: StoreKind.available) func aShutdownQueuesTheRunAgainInOneTransaction(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        try await f.store.ensureVariant(baseVariant)
        try await f.store.enqueueRuns([baseVariant])
        let first = try #require(try await f.store.claimRun(claim()))
        _ = try await f.store.saveRecords([order("1")], model: "Order", for: first.started.lease)
        let released = try await f.store.releaseRun(first.started.lease, reason: "shutdown")
        #expect(released.status == .queued && released.id == first.started.runId)
        #expect(try await f.store.leaseState(first.started.lease).isHeld == false)
        let again = try #require(try await f.store.claimRun(claim()))
        #expect(again.started.lease == RunLease(runId: first.started.runId, token: 2))
        let done = try await f.store.completeRun(again.started.lease, RunCompletion(outcome: .succeeded, models: ["Order"]))
        #expect(done.results["Order"] == ModelResult(added: 1))
    }
}
