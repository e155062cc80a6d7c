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

    func claim(maxPerConnection: Int = 10, lease: Int64 = 60, tracksDeletes: Bool? = false) -> RunClaim {
        RunClaim(leaseSeconds: lease, maxRunsPerConnection: maxPerConnection, tracksDeletes: { _ in tracksDeletes })
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

    @Test(arguments: StoreKind.available) func claimsAreFairAcrossConnectionsAndRespectThePerConnectionLimit(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        let busy = (1...4).map { variant("busy", "v\($0)") }
        let quiet = variant("quiet")
        for ref in busy + [quiet] { try await f.store.ensureVariant(ref) }
        try await f.store.enqueueRuns(busy + [quiet])

        var order: [VariantRef] = []
        while let run = try await f.store.claimRun(claim(maxPerConnection: 2)) { order.append(run.variant) }
        // busy/v1 is oldest; then the quiet connection (no running runs) goes before busy's second;
        // busy stops at its limit of 2 running.
        #expect(order == [busy[0], quiet, busy[1]])
        #expect(try await f.store.activeRun(of: busy[2])?.status == .queued)

        // A finished run frees its connection's slot for the next one in line.
        let running = try #require(try await f.store.activeRun(of: busy[0]))
        _ = try await f.store.completeRun(running.id, RunCompletion(outcome: .succeeded, results: [:]))
        #expect(try await f.store.claimRun(claim(maxPerConnection: 2))?.variant == busy[2])
        #expect(try await f.store.claimRun(claim(maxPerConnection: 2)) == nil)
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
                    while let run = try await store.claimRun(RunClaim(leaseSeconds: 60, maxRunsPerConnection: 100, tracksDeletes: { _ in false })) {
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
        #expect(run.started.deletionGeneration == run.started.runId, "a full refresh with track_deletes opens a window")
        #expect(try await f.store.run(run.started.runId)?.status == .running)
        #expect(try await f.store.shouldStop(run: run.started.runId) == false)
        // While it runs no next run is planned, so no scheduler can queue it again when it ends; its worker plans one.
        #expect(try await f.store.variantState(baseVariant)?.nextRunAt == nil)
        _ = try await f.store.completeRun(run.started.runId, RunCompletion(outcome: .succeeded, results: [:]))
        #expect(try await f.store.dueVariants(at: Timestamp(microseconds: Int64.max / 2), limit: 10).isEmpty)
    }

    @Test(arguments: StoreKind.available) func aQueuedRunOfASyncNoLongerConfiguredFailsAndTheClaimGoesOn(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        let gone = variant("c1", "gone")
        let kept = variant("c1", "kept")
        for ref in [gone, kept] { try await f.store.ensureVariant(ref) }
        try await f.store.enqueueRuns([gone, kept])
        let run = try await f.store.claimRun(RunClaim(leaseSeconds: 60, maxRunsPerConnection: 5, tracksDeletes: { $0.variant == "gone" ? nil : false }))
        #expect(run?.variant == kept)
        let failed = try #require(try await f.store.runs(of: gone, limit: 1).first)
        #expect(failed.status == .failed)
        #expect(failed.error?.contains("no longer configured") == true)
    }

    @Test(arguments: StoreKind.available) func cancelDropsAQueuedRunAndFlagsARunningOne(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        let a = variant("c1", "a")
        let b = variant("c1", "b")
        for ref in [a, b] { try await f.store.ensureVariant(ref) }
        try await f.store.enqueueRuns([a])
        let runningRun = try #require(try await f.store.claimRun(claim()))
        try await f.store.enqueueRuns([b])

        let dropped = try await f.store.requestCancel(of: b, reason: "Cancelled before it started.")
        #expect(dropped?.status == .cancelled)
        #expect(try await f.store.activeRun(of: b) == nil)

        let flagged = try await f.store.requestCancel(of: a, reason: "unused")
        #expect(flagged?.status == .running, "a running run is only flagged; its worker stops it")
        #expect(try await f.store.shouldStop(run: runningRun.started.runId))
        #expect(try await f.store.requestCancel(of: variant("c1", "none"), reason: "x") == nil)
        // A run finished by someone else must stop too.
        _ = try await f.store.completeRun(runningRun.started.runId, RunCompletion(outcome: .cancelled(reason: "forced"), results: [:]))
        #expect(try await f.store.shouldStop(run: runningRun.started.runId))
        #expect(try await f.store.shouldStop(run: 999_999), "a deleted run stops")
    }

    @Test(arguments: StoreKind.available) func expiredLeasesAreRetriedFromTheQueue(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        try await f.store.ensureVariant(baseVariant)
        try await f.store.enqueueRuns([baseVariant])
        let claimed = try #require(try await f.store.claimRun(claim(lease: 1, tracksDeletes: true)))
        try await f.store.saveCheckpoint(["page": 2], for: baseVariant)
        #expect(try await f.store.expireRuns().isEmpty)
        try await Task.sleep(for: .milliseconds(1100))
        let expired = try await f.store.expireRuns()
        #expect(expired.map(\.id) == [claimed.started.runId])
        #expect(expired.first?.status == .expired)
        let retry = try #require(try await f.store.activeRun(of: baseVariant))
        #expect(retry.status == .queued)
        // The retry continues the dead run's deletion window from the checkpoint.
        let resumed = try #require(try await f.store.claimRun(claim(tracksDeletes: true)))
        #expect(resumed.started.resumesWindow)
        #expect(resumed.started.deletionGeneration == claimed.started.deletionGeneration)
        #expect(resumed.started.state.checkpoint?["page"] == 2)
    }
}
