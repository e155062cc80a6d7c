import Synchronization
import Testing
import TributaryCore
import TributaryStore
import TributaryTestSupport

/// The default ``RunQueueStore/claimRuns(_:limit:)`` (one committed claim after another): when a
/// claim fails after others succeeded, those runs are running — they come back to be run.
@Suite("Batch claims, one claim at a time")
struct ClaimBatchDefaultTests {
    /// A real store whose claims fail from the `failFrom`-th on.
    final class FailingClaims: RunQueueStore {
        let store: any Store
        let failFrom: Int

        init(store: any Store, failFrom: Int) {
            self.store = store
            self.failFrom = failFrom
        }
        let calls = Mutex(0)

        func claimRun(_ claim: RunClaim) async throws -> ClaimedRun? {
            let call = calls.withLock {
                $0 += 1
                return $0
            }
            if call >= failFrom { throw TributaryError(.storeUnavailable, "the database went away") }
            return try await store.claimRun(claim)
        }
        func startRun(_ variant: VariantRef, _ start: RunStart) async throws -> StartedRun { try await store.startRun(variant, start) }
        func enqueueRuns(_ variants: [VariantRef]) async throws -> [RunRecord] { try await store.enqueueRuns(variants) }
        func enqueueScheduledRuns(_ variants: [VariantRef], dueAt due: Timestamp) async throws -> [VariantRef] {
            try await store.enqueueScheduledRuns(variants, dueAt: due)
        }
        func expireRuns(_ policy: RunExpiry.Policy) async throws -> [RunRecord] { try await store.expireRuns(policy) }
        func dueVariants(at now: Timestamp, limit: Int) async throws -> [VariantState] { try await store.dueVariants(at: now, limit: limit) }
        func nextScheduledRun(after time: Timestamp) async throws -> Timestamp? { try await store.nextScheduledRun(after: time) }
        func setNextRun(_ time: Timestamp, for variant: VariantRef) async throws { try await store.setNextRun(time, for: variant) }
    }

    @Test func aFailureAfterSomeClaimsReturnsThoseAndOnlyAFirstFailureThrows() async throws {
        let f = try await StoreFixture(.sqlite)
        let refs = (1...4).map { RunQueueTests().variant("c\($0)") }
        for ref in refs { try await f.store.ensureVariant(ref) }
        try await f.store.enqueueRuns(refs)
        let claim = RunClaim(leaseSeconds: 60, maxRunsPerConnection: 4, syncs: [RunQueueTests.orders: false])
        let partial = try await FailingClaims(store: f.store, failFrom: 3).claimRuns(claim, limit: 4)
        #expect(partial.map(\.variant) == Array(refs.prefix(2)))
        await #expect(throws: TributaryError.self) { try await FailingClaims(store: f.store, failFrom: 1).claimRuns(claim, limit: 4) }
        #expect(try await f.store.claimRuns(claim, limit: 4).map(\.variant) == Array(refs.suffix(2)))
    }
}
