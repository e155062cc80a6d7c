import Foundation
import Synchronization
import Testing
import TributaryCore
import TributaryPostgres
import TributaryStore
import TributaryTestSupport

/// Every write of a run is fenced by its lease, and every lifecycle change is one transaction — on
/// both stores. Each test here fails when the rule it names is taken out of the store.
@Suite("Run integrity: fencing and lifecycle transactions (SQLite and PostgreSQL)")
struct RunIntegrityTests {
    static let orders = SyncAddress(environment: "dev", providerConfigKey: "shop", syncName: "orders")

    func claim(_ store: any Store, tracksDeletes: Bool = false, lease: Int64 = 60) async throws -> ClaimedRun {
        try #require(try await store.claimRun(RunClaim(leaseSeconds: lease, maxRunsPerConnection: 10, syncs: [Self.orders: tracksDeletes])))
    }

    func imported(_ store: any Store, metadata: JSONObject = [:]) async throws {
        _ = try await store.importConnection(
            ConnectionImport(ref: connection, metadata: metadata, connectionConfig: [:], credentialsType: "NONE", sealedCredentials: nil),
            baseVariantsOf: ["orders"])
    }

    @Test(arguments: StoreKind.available) func aLateWriteAfterTheVariantWasDeletedChangesNothingAndBringsNothingBack(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        try await imported(f.store)
        _ = try await f.store.createVariant(euVariant, maximumPerSync: 10, paused: false)
        try await f.store.enqueueRuns([euVariant])
        let run = try await claim(f.store)
        _ = try await f.store.saveRecords([order("1"), order("2")], model: "Order", for: run.started.lease)
        let outcome = try await f.store.deleteVariant(euVariant)
        #expect(outcome.ended.map(\.id) == [run.started.runId], "the delete ended the running run")
        // Every kind of late write of the deleted run is refused with the same clear error.
        let writes: [@Sendable () async throws -> Void] = [
            { _ = try await f.store.saveRecords([order("3")], model: "Order", for: run.started.lease) },
            { _ = try await f.store.saveRecords([order("4")], model: "Line", for: run.started.lease) },
            { _ = try await f.store.updateRecords([try RecordPatch(["id": "1", "x": 1])], model: "Order", for: run.started.lease) },
            { _ = try await f.store.deleteRecords(ids: ["1"], model: "Order", for: run.started.lease) },
            { try await f.store.saveCheckpoint(["page": 2], for: run.started.lease) },
            { _ = try await f.store.saveRecords([order("5")], model: "Order", checkpoint: ["page": 3], for: run.started.lease) },
            { try await f.store.setMetadata(["late": true], for: run.started.lease) },
            { try await f.store.appendLog(run.started.lease, level: .info, message: "late") },
            { _ = try await f.store.completeRun(run.started.lease, RunCompletion(outcome: .succeeded)) },
        ]
        for write in writes {
            let error = await #expect(throws: TributaryError.self) { try await write() }
            #expect(error?.code == .unknownRun)
        }
        #expect(try await f.store.renewLease(run.started.lease).isHeld == false)
        #expect(try await f.store.variantState(euVariant) == nil, "the variant stays deleted")
        #expect(try await f.store.metadata(of: connection)["late"] == nil)
        // Re-created, the variant starts empty: the old records are invisible at once and purged afterwards.
        _ = try await f.store.createVariant(euVariant, maximumPerSync: 10, paused: false)
        #expect(try await f.store.allChanges(euVariant.dataset("Order")).isEmpty)
        #expect(try await f.store.recordCounts(of: euVariant).isEmpty)
        var census = try await f.census()
        #expect(census.orphanRecords == 2 && census.pendingPurges == 1, "hidden, waiting for the purge")
        while try await f.store.purgeRecords(limit: 1) != nil {}
        census = try await f.census()
        #expect(census.orphanRecords == 0 && census.pendingPurges == 0 && census.records == 0)
    }

    /// A checkpoint literal holding a provider's oversized cursor is refused by the store itself (stored,
    /// it would make the variant unreadable), and the run and variant stay as they were.
    @Test(arguments: StoreKind.available) func anOversizedCheckpointIsRefusedAndTheVariantStaysReadable(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        try await imported(f.store)
        try await f.store.enqueueRuns([baseVariant])
        let run = try await claim(f.store)
        try await f.store.saveCheckpoint(["page": 1], for: run.started.lease)
        let huge: Checkpoint = ["next": .string(String(repeating: "c", count: 5_000))]
        let error = await #expect(throws: TributaryError.self) { try await f.store.saveCheckpoint(huge, for: run.started.lease) }
        #expect(error?.code == .invalidCheckpoint)
        #expect(try await f.store.variantState(baseVariant)?.checkpoint?["page"] == 1, "the earlier checkpoint stands, readable")
    }

    /// A page saved with its checkpoint (a declarative sync's write) is one transaction: both are
    /// kept, or — a checkpoint refused as too large, or in a webhook run, or a lost lease — neither.
    @Test(arguments: StoreKind.available) func aPageAndItsCheckpointAreSavedTogetherOrNotAtAll(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        try await imported(f.store)
        let ids = { @Sendable in try await f.store.allChanges(baseVariant.dataset("Order")).map(\.id).sorted() }
        try await f.store.enqueueRuns([baseVariant])
        let run = try await claim(f.store)
        let saved = try await f.store.saveRecords([order("1"), order("2")], model: "Order", checkpoint: ["page": 2], for: run.started.lease)
        #expect(saved.added == 2)
        #expect(try await f.store.variantState(baseVariant)?.checkpoint?["page"] == 2)
        #expect(try await ids() == ["1", "2"])

        let huge: Checkpoint = ["next": .string(String(repeating: "c", count: 5_000))]
        let tooLarge = await #expect(throws: TributaryError.self) {
            _ = try await f.store.saveRecords([order("3")], model: "Order", checkpoint: huge, for: run.started.lease)
        }
        #expect(tooLarge?.code == .invalidCheckpoint)
        #expect(try await ids() == ["1", "2"], "the page of a refused checkpoint is not saved")
        #expect(try await f.store.variantState(baseVariant)?.checkpoint?["page"] == 2)

        // An empty page still moves the checkpoint.
        _ = try await f.store.saveRecords([], model: "Order", checkpoint: ["page": 3], for: run.started.lease)
        #expect(try await f.store.variantState(baseVariant)?.checkpoint?["page"] == 3)

        // A webhook run may save records, but not with a checkpoint.
        _ = try await f.store.enqueueProviderWebhook(for: [baseVariant], type: nil, payload: Array("{}".utf8))
        let webhook = try #require(try await f.store.claimProviderWebhook(leaseSeconds: 60, maxAttempts: 3))
        let refused = await #expect(throws: TributaryError.self) {
            _ = try await f.store.saveRecords([order("4")], model: "Order", checkpoint: ["page": 9], for: webhook.started.lease)
        }
        #expect(refused == StoreMessages.checkpointInWebhookRun)
        #expect(try await ids() == ["1", "2"])
        #expect(try await f.store.variantState(baseVariant)?.checkpoint?["page"] == 3)
    }

    @Test(arguments: StoreKind.available) func aLateWriteAfterTheConnectionWasDeletedNeverRecreatesIt(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        try await imported(f.store, metadata: ["a": 1])
        try await f.store.enqueueRuns([baseVariant])
        let run = try await claim(f.store)
        _ = try await f.store.saveRecords([order("1")], model: "Order", for: run.started.lease)
        // A provider webhook execution is ended with it too (cancels skip nothing).
        _ = try await f.store.enqueueProviderWebhook(for: [baseVariant], type: nil, payload: Array("{}".utf8))
        let webhook = try #require(try await f.store.claimProviderWebhook(leaseSeconds: 60, maxAttempts: 3))
        let outcome = try await f.store.deleteConnection(connection)
        #expect(Set(outcome.ended.map(\.id)) == [run.started.runId, webhook.started.runId])
        for lease in [run.started.lease, webhook.started.lease] {
            await #expect(throws: TributaryError.self) { _ = try await f.store.saveRecords([order("late")], model: "Order", for: lease) }
            await #expect(throws: TributaryError.self) { try await f.store.updateMetadata(["late": true], for: lease) }
        }
        #expect(try await f.store.connectionExists(connection) == false, "no write brought the connection back")
        // Imported again: its own metadata only, and none of the old records.
        try await imported(f.store, metadata: ["b": 2])
        #expect(try await f.store.metadata(of: connection) == ["b": 2])
        #expect(try await f.store.allChanges(baseVariant.dataset("Order")).isEmpty)
        while try await f.store.purgeRecords(limit: 100) != nil {}
        #expect(try await f.census().records == 0)
    }

    @Test(arguments: StoreKind.available) func resetEndsTheRunAndQueuesTheNextInOneTransactionSoNoClaimCanUndoIt(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        try await imported(f.store)
        // A first success: lastSyncDate and records.
        try await f.store.enqueueRuns([baseVariant])
        let first = try await claim(f.store)
        _ = try await f.store.saveRecords([order("1"), order("2")], model: "Order", for: first.started.lease)
        _ = try await f.store.completeRun(first.started.lease, RunCompletion(outcome: .succeeded))
        // The next run is running with the old state when the reset comes.
        try await f.store.enqueueRuns([baseVariant])
        let stale = try await claim(f.store)
        #expect(stale.started.state.lastSyncDate != nil)
        try await f.store.saveCheckpoint(["cursor": "old"], for: stale.started.lease)
        let outcome = try await f.store.resetVariants([baseVariant], emptyCache: true, queuesRuns: true)
        #expect(outcome.ended.map(\.id) == [stale.started.runId])
        #expect(outcome.queued.count == 1)
        // The stale run's end cannot undo the reset: refused, and the state stays reset.
        let refused = await #expect(throws: TributaryError.self) {
            _ = try await f.store.completeRun(stale.started.lease, RunCompletion(outcome: .succeeded, clearCheckpoint: false))
        }
        #expect(refused?.code == .runNotRunning)
        await #expect(throws: TributaryError.self) { try await f.store.saveCheckpoint(["cursor": "late"], for: stale.started.lease) }
        let state = try #require(try await f.store.variantState(baseVariant))
        #expect(state.lastSyncDate == nil && state.checkpoint == nil && state.deletionGeneration == nil)
        #expect(try await f.store.allChanges(baseVariant.dataset("Order")).isEmpty, "emptied")
        // The queued run starts from scratch.
        let fresh = try await claim(f.store)
        #expect(fresh.started.runId == outcome.queued[0].id && fresh.started.kind == .initial && fresh.started.state.checkpoint == nil)
        // All or nothing over several variants.
        let missing = await #expect(throws: TributaryError.self) {
            _ = try await f.store.resetVariants([baseVariant, euVariant], emptyCache: false, queuesRuns: true)
        }
        #expect(missing?.code == .unknownVariant)
        #expect(try await f.store.activeRun(of: baseVariant)?.id == fresh.started.runId, "nothing of the refused reset was applied")
    }

    @Test(arguments: StoreKind.available) func aRunResumingFromACheckpointSavedOutsideItsWindowDeletesNothing(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        try await imported(f.store)
        // Two records from a first full refresh with tracking.
        try await f.store.enqueueRuns([baseVariant])
        let first = try await claim(f.store, tracksDeletes: true)
        _ = try await f.store.saveRecords([order("1"), order("2"), order("3")], model: "Order", for: first.started.lease)
        _ = try await f.store.completeRun(first.started.lease, RunCompletion(outcome: .succeeded, deleteUnseenModels: ["Order"], clearCheckpoint: true))
        // A run without tracking (track_deletes was off then) saves a checkpoint and fails.
        try await f.store.enqueueRuns([baseVariant])
        let untracked = try await claim(f.store, tracksDeletes: false)
        try await f.store.saveCheckpoint(["page": 2], for: untracked.started.lease)
        _ = try await f.store.completeRun(untracked.started.lease, RunCompletion(outcome: .failed(message: "boom")))
        // Tracking is back on; the next run resumes at page 2 and never sees records 1 and 2.
        try await f.store.enqueueRuns([baseVariant])
        let resumed = try await claim(f.store, tracksDeletes: true)
        #expect(resumed.started.distrustsCheckpoint)
        _ = try await f.store.saveRecords([order("3")], model: "Order", for: resumed.started.lease)
        let done = try await f.store.completeRun(
            resumed.started.lease, RunCompletion(outcome: .succeeded, models: ["Order"], deleteUnseenModels: ["Order"], clearCheckpoint: true))
        #expect(done.results["Order"]?.deleted == 0)
        #expect(try await f.store.liveRecords(baseVariant.dataset("Order")).keys.sorted() == ["1", "2", "3"], "nothing falsely deleted")
        #expect(try await f.store.logs(ofRun: done.id, limit: 5).contains { $0.message.contains("deletes nothing") })
        // The next run starts from the beginning and detects deletions again.
        try await f.store.enqueueRuns([baseVariant])
        let next = try await claim(f.store, tracksDeletes: true)
        #expect(!next.started.distrustsCheckpoint && next.started.deletionGeneration == next.started.runId)
        _ = try await f.store.saveRecords([order("1")], model: "Order", for: next.started.lease)
        let detected = try await f.store.completeRun(next.started.lease, RunCompletion(outcome: .succeeded, models: ["Order"], deleteUnseenModels: ["Order"]))
        #expect(detected.results["Order"]?.deleted == 2)
    }

    @Test(arguments: StoreKind.available) func everyRunEndPlansTheNextRunInItsTransaction(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        try await imported(f.store)
        let plan = NextRunPlan(frequency: try Frequency("every hour"), retry: RetryPolicy(maxAttempts: 2, baseSeconds: 10, maxSeconds: 60), from: Timestamp.now(), jitter: 1)
        for outcome in [RunOutcome.succeeded, .failed(message: "x"), .cancelled(reason: "y")] {
            try await f.store.enqueueRuns([baseVariant])
            let run = try await claim(f.store)
            #expect(try await f.census().unscheduledVariants == 0, "a running variant has its active run")
            #expect(try await f.store.variantState(baseVariant)?.nextRunAt == nil)
            _ = try await f.store.completeRun(run.started.lease, RunCompletion(outcome: outcome, nextRun: plan))
            let next = try #require(try await f.store.variantState(baseVariant)?.nextRunAt, "\(outcome) planned the next run")
            #expect(next == plan.next(for: try #require(try await f.store.variantState(baseVariant)), retry: nil, consecutiveRetryableFailures: 0))
            #expect(try await f.census().unscheduledVariants == 0)
        }
        // A temporary failure plans the retry sooner, counting the failures in a row.
        try await f.store.enqueueRuns([baseVariant])
        let flaky = try await claim(f.store)
        _ = try await f.store.completeRun(flaky.started.lease, RunCompletion(outcome: .failed(message: "503"), retry: RetryAdvice(), nextRun: plan))
        let retry = try #require(try await f.store.variantState(baseVariant)?.nextRunAt)
        #expect(retry == Timestamp(microseconds: plan.from.microseconds + 10_000_000))
    }

    /// Ends without a plan — a run started directly (`dryrun`), a reset that queues nothing — still
    /// leave a started variant on the schedule, although a worker's claim had cleared its next run.
    @Test(arguments: StoreKind.available) func endsWithoutAPlanStillLeaveTheVariantScheduled(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        try await imported(f.store)
        try await f.store.enqueueRuns([baseVariant])
        _ = try await claim(f.store)
        #expect(try await f.store.variantState(baseVariant)?.nextRunAt == nil)
        try await f.store.resetVariants([baseVariant], emptyCache: false, queuesRuns: false)
        #expect(try await f.census().unscheduledVariants == 0, "the reset ended the claimed run and kept the variant scheduled")
        // A worker died in a run (its lease runs out). A `dryrun` on the same database is refused while
        // the dead run is still the variant's (replacing it would lose its first start and counts); once
        // the scheduler gave it up, the dryrun runs on its own and ends without a plan.
        try await f.store.enqueueRuns([baseVariant])
        _ = try await claim(f.store, lease: 1)
        #expect(try await f.store.variantState(baseVariant)?.nextRunAt == nil)
        try await Task.sleep(for: .milliseconds(1100))
        let refused = await #expect(throws: TributaryError.self) { try await f.store.startRun(baseVariant, RunStart(tracksDeletes: false)) }
        #expect(refused?.code == .syncRunning)
        #expect(try await f.store.expireRuns(RunExpiry.Policy(maxAttempts: 1)).map(\.status) == [.expired])
        let started = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: false))
        _ = try await f.store.completeRun(started.lease, RunCompletion(outcome: .succeeded))
        #expect(try await f.census().unscheduledVariants == 0)
        #expect(try await f.store.variantState(baseVariant)?.nextRunAt != nil)
    }

    @Test(arguments: StoreKind.available) func aVariantsProviderWebhooksRunOneAtATimeInArrivalOrder(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        try await imported(f.store)
        let other = VariantRef(connection: ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "customer-2"), syncName: "orders")
        try await f.store.ensureVariant(other)
        _ = try await f.store.enqueueProviderWebhook(for: [baseVariant], type: "order.updated", payload: Array(#"{"status":"paid"}"#.utf8))
        _ = try await f.store.enqueueProviderWebhook(for: [baseVariant], type: "order.updated", payload: Array(#"{"status":"shipped"}"#.utf8))
        _ = try await f.store.enqueueProviderWebhook(for: [other], type: "order.updated", payload: Array(#"{"status":"other"}"#.utf8))
        // Several workers claim at once: only the head of each variant's queue is claimable.
        let second = try await f.reopen()
        let claims = try await withThrowingTaskGroup(of: ClaimedProviderWebhook?.self) { group in
            for store in [f.store, second, f.store, second] { group.addTask { try await store.claimProviderWebhook(leaseSeconds: 60, maxAttempts: 3) } }
            return try await group.reduce(into: [ClaimedProviderWebhook]()) { if let claim = $1 { $0.append(claim) } }
        }
        #expect(claims.count == 2)
        #expect(Set(claims.map { String(decoding: $0.task.payload, as: UTF8.self) }) == [#"{"status":"paid"}"#, #"{"status":"other"}"#])
        let paid = try #require(claims.first { $0.task.variant == baseVariant })
        #expect(try await f.store.claimProviderWebhook(leaseSeconds: 60, maxAttempts: 3) == nil, "the second waits for the first")
        _ = try await f.store.completeRun(paid.started.lease, RunCompletion(outcome: .succeeded))
        let shipped = try #require(try await f.store.claimProviderWebhook(leaseSeconds: 60, maxAttempts: 3))
        #expect(String(decoding: shipped.task.payload, as: UTF8.self) == #"{"status":"shipped"}"#)
    }

    @Test(arguments: StoreKind.available) func aBigDeleteIsOneQuickTransactionAndThePurgeLetsOtherWritesIn(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        try await imported(f.store)
        _ = try await f.store.createVariant(euVariant, maximumPerSync: 10, paused: false)
        try await f.store.enqueueRuns([euVariant])
        let run = try await claim(f.store)
        for page in 0..<20 {
            _ = try await f.store.saveRecords((0..<500).map { order("r\(page)-\($0)") }, model: "Order", for: run.started.lease)
        }
        _ = try await f.store.completeRun(run.started.lease, RunCompletion(outcome: .succeeded))
        try await f.store.deleteVariant(euVariant)
        #expect(try await f.census().orphanRecords == 10_000, "hidden at once, not yet removed")
        // The purge works in chunks; a run of another variant writes between them.
        try await f.store.enqueueRuns([baseVariant])
        let writer = try await claim(f.store)
        var chunks = 0
        while let removed = try await f.store.purgeRecords(limit: 1000) {
            #expect(removed <= 1000)
            chunks += 1
            _ = try await f.store.saveRecords([order("w\(chunks)")], model: "Order", for: writer.started.lease)
        }
        #expect(chunks >= 10)
        let census = try await f.census()
        #expect(census.orphanRecords == 0 && census.pendingPurges == 0)
        #expect(try await f.store.recordCounts(of: baseVariant)["Order"] == chunks)
    }
}

/// PostgreSQL compares leases on the database's clock, so the clocks of the processes do not matter.
@Suite("Leases on the database clock (PostgreSQL)", .enabled(if: StoreKind.postgresURL != nil))
struct DatabaseClockLeaseTests {
    @Test func aWorkerWithASkewedClockCannotExpireAnotherWorkersRun() async throws {
        let f = try await StoreFixture(.postgres)
        try await f.store.ensureVariant(baseVariant)
        try await f.store.enqueueRuns([baseVariant])
        let run = try #require(
            try await f.store.claimRun(
                RunClaim(leaseSeconds: 30, maxRunsPerConnection: 5, syncs: [SyncAddress(environment: "dev", providerConfigKey: "shop", syncName: "orders"): false])))
        // A second process whose own clock runs ten minutes ahead.
        let skewed = PostgresStore(url: try PostgresURL(f.location), clock: { Timestamp(microseconds: Timestamp.now().microseconds + 600_000_000) })
        try await Self.running(skewed) { () async throws in
            #expect(try await skewed.expireRuns(RunExpiry.Policy()).isEmpty, "the live lease is not expired by a skewed clock")
            #expect(try await skewed.leaseState(run.started.lease) == .held)
            await #expect(throws: TributaryError.self) { _ = try await skewed.startRun(baseVariant, RunStart(tracksDeletes: false)) }
        }
        #expect(try await f.store.renewLease(run.started.lease) == .held)
        // The database clock moved on (the offset tests inject): now the lease runs out.
        let later = PostgresStore(url: try PostgresURL(f.location), leaseClockOffset: { 31_000_000 })
        try await Self.running(later) { () async throws in
            #expect(try await later.expireRuns(RunExpiry.Policy()).map(\.id) == [run.started.runId])
        }
    }

    /// Runs `body` while the store's pool runs.
    static func running(_ store: PostgresStore, _ body: @Sendable () async throws -> Void) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await store.run() }
            try await body()
            group.cancelAll()
        }
    }
}

@Suite("OAuth refresh lock across processes (SQLite and PostgreSQL)")
struct CredentialRefreshLockStoreTests {
    @Test(arguments: StoreKind.available) func oneProcessAtATimeRefreshesAndTheNextSeesItsResult(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        try await f.store.ensureConnection(connection)
        let other = try await f.reopen()
        guard case .granted = try await f.store.beginCredentialRefresh(of: connection, holder: "a", seconds: 60) else {
            Issue.record("the free lock is granted")
            return
        }
        guard case .busy = try await other.beginCredentialRefresh(of: connection, holder: "b", seconds: 60) else {
            Issue.record("a held lock is refused to another holder")
            return
        }
        #expect(try await other.finishCredentialRefresh(of: connection, holder: "b", sealed: ("OAUTH2", [1]), replacing: [7]) == false, "only the holder writes")
        #expect(try await f.store.finishCredentialRefresh(of: connection, holder: "a", sealed: ("OAUTH2", [9, 9]), replacing: nil) == true)
        guard case .granted(let record) = try await other.beginCredentialRefresh(of: connection, holder: "b", seconds: 60) else {
            Issue.record("a released lock is granted")
            return
        }
        #expect(record.sealedCredentials == [9, 9] && record.credentialsType == "OAUTH2", "the next holder re-reads what the first wrote")
        // A holder that died: its lock runs out.
        #expect(try await other.finishCredentialRefresh(of: connection, holder: "b", sealed: nil, replacing: nil))
        guard case .granted = try await f.store.beginCredentialRefresh(of: connection, holder: "slow", seconds: 0) else { return }
        guard case .granted = try await other.beginCredentialRefresh(of: connection, holder: "b", seconds: 60) else {
            Issue.record("an expired lock is taken over")
            return
        }
        // The slow holder lost its lock, but the credentials are still those it read: its new token is kept.
        #expect(try await f.store.finishCredentialRefresh(of: connection, holder: "slow", sealed: ("OAUTH2", [5]), replacing: [9, 9]))
        #expect(try await f.store.connection(connection)?.sealedCredentials == [5])
        // Changed since (by the new holder): a late write of an old holder is dropped.
        #expect(try await other.finishCredentialRefresh(of: connection, holder: "b", sealed: ("OAUTH2", [6]), replacing: nil))
        #expect(try await f.store.finishCredentialRefresh(of: connection, holder: "slow", sealed: ("OAUTH2", [4]), replacing: [9, 9]) == false)
        #expect(try await f.store.connection(connection)?.sealedCredentials == [6])
    }
}
