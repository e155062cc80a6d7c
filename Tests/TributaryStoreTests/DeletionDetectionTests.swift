import Foundation
import Testing
import TributaryCore
import TributarySQLite
import TributaryStore
import TributaryTestSupport

@Suite("Deletion detection and runs (SQLite and PostgreSQL)")
struct DeletionDetectionTests {
    func fullRun(_ store: any Store, _ variant: VariantRef, saving ids: [String], outcome: RunOutcome = .succeeded) async throws -> RunRecord {
        let started = try await store.startRun(variant, RunStart(tracksDeletes: true))
        _ = try await store.saveRecords(ids.map { order($0) }, model: "Order", for: started.lease)
        return try await store.completeRun(started.lease, RunCompletion(outcome: outcome, models: ["Order"], deleteUnseenModels: ["Order"]))
    }

    @Test(arguments: StoreKind.available) func successfulFullRunDeletesWhatItDidNotSee(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        _ = try await fullRun(f.store, baseVariant, saving: ["1", "2", "3"])
        _ = try await fullRun(f.store, euVariant, saving: ["1", "2", "3"])
        let run = try await fullRun(f.store, baseVariant, saving: ["1", "3"])
        #expect(run.status == .succeeded)
        #expect(run.results["Order"] == ModelResult(deleted: 1))
        #expect(try await f.store.liveRecords(baseVariant.dataset("Order")).keys.sorted() == ["1", "3"])
        #expect(try await f.store.liveRecords(euVariant.dataset("Order")).keys.sorted() == ["1", "2", "3"], "other variants untouched")
        let state = try #require(try await f.store.variantState(baseVariant))
        #expect(state.lastSyncDate == run.startedAt)
        #expect(state.deletionGeneration == nil)
    }

    @Test(arguments: StoreKind.available) func failedOrCancelledRunDeletesNothingAndKeepsLastSyncDate(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        let first = try await fullRun(f.store, baseVariant, saving: ["1", "2", "3"])
        let failed = try await fullRun(f.store, baseVariant, saving: ["1"], outcome: .failed(message: "provider said 500"))
        #expect(failed.status == .failed)
        #expect(failed.error == "provider said 500")
        let cancelled = try await fullRun(f.store, baseVariant, saving: [], outcome: .cancelled(reason: "paused"))
        #expect(cancelled.status == .cancelled)
        #expect(try await f.store.liveRecords(baseVariant.dataset("Order")).count == 3)
        #expect(try await f.store.variantState(baseVariant)?.lastSyncDate == first.startedAt)
    }

    @Test(arguments: StoreKind.available) func resumedRunCountsWhatEveryAttemptSaved(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        _ = try await fullRun(f.store, baseVariant, saving: ["1", "2", "3", "4"])
        // Attempt 1 saves page one, checkpoints, then dies.
        let attempt1 = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: true))
        _ = try await f.store.saveRecords([order("1"), order("2")], model: "Order", for: attempt1.lease)
        try await f.store.saveCheckpoint(["page": 1], for: attempt1.lease)
        _ = try await f.store.completeRun(attempt1.lease, RunCompletion(outcome: .failed(message: "crash")))
        // Attempt 2 resumes from the checkpoint, sees only page two, and succeeds.
        let attempt2 = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: true))
        #expect(attempt2.resumesWindow)
        #expect(attempt2.deletionGeneration == attempt1.deletionGeneration)
        _ = try await f.store.saveRecords([order("3")], model: "Order", for: attempt2.lease)
        let done = try await f.store.completeRun(
            attempt2.lease, RunCompletion(outcome: .succeeded, models: ["Order"], deleteUnseenModels: ["Order"], clearCheckpoint: true))
        #expect(done.results["Order"] == ModelResult(deleted: 1))
        #expect(try await f.store.liveRecords(baseVariant.dataset("Order")).keys.sorted() == ["1", "2", "3"])
        #expect(try await f.store.variantState(baseVariant)?.checkpoint == nil)
        // The next run opens a fresh window.
        let next = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: true))
        #expect(!next.resumesWindow)
        #expect(next.deletionGeneration == next.runId)
    }

    @Test(arguments: StoreKind.available) func aVariantRunsOnceAtATimeUntilItsLeaseExpires(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        let first = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: false, leaseSeconds: 60))
        await #expect(throws: TributaryError.self) { _ = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: false)) }
        _ = try await f.store.startRun(euVariant, RunStart(tracksDeletes: false))  // other variants are free
        _ = try await f.store.completeRun(first.lease, RunCompletion(outcome: .succeeded))
        // A run whose process died (lease 0 runs out at once) still holds the variant until expiry
        // handles it (so its first start and counts are never lost to a replacement); given up, the
        // variant is free.
        let dead = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: false, leaseSeconds: 0))
        let blocked = await #expect(throws: TributaryError.self) { _ = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: false)) }
        #expect(blocked?.code == .syncRunning)
        _ = try await f.store.expireRuns(RunExpiry.Policy(maxAttempts: 1))
        let next = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: false))
        #expect(try await f.store.run(dead.runId)?.status == .expired)
        // The dead run can no longer apply its outcome.
        let refused = await #expect(throws: TributaryError.self) {
            _ = try await f.store.completeRun(dead.lease, RunCompletion(outcome: .succeeded, deleteUnseenModels: ["Order"]))
        }
        #expect(refused?.code == .runNotRunning)
        #expect(next.kind == .incremental)
        #expect(try await f.store.runs(of: baseVariant, limit: 10).map(\.id) == [next.runId, dead.runId, first.runId])
    }

    @Test(arguments: StoreKind.available) func logsAndMetadata(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        let started = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: false))
        try await f.store.appendLog(started.lease, level: .warn, message: "slow page")
        try await f.store.appendLog(started.lease, level: .info, message: "done")
        #expect(try await f.store.logs(ofRun: started.runId, limit: 10).map(\.message) == ["slow page", "done"])
        let other = ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "customer-2")
        try await f.store.ensureConnection(other)
        try await f.store.setMetadata(["a": 1, "nested": ["x": 1]], of: [connection, other])
        try await f.store.updateMetadata(["nested": ["y": 2], "b": 2], of: [connection])
        #expect(try await f.store.metadata(of: connection) == ["a": 1, "b": 2, "nested": ["y": 2]], "PATCH is a shallow merge")
        #expect(try await f.store.metadata(of: other) == ["a": 1, "nested": ["x": 1]])
        // All or nothing: one unknown connection changes nobody.
        let missing = ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "nobody")
        await #expect(throws: TributaryError.self) { try await f.store.setMetadata(["z": 1], of: [other, missing]) }
        #expect(try await f.store.metadata(of: other) == ["a": 1, "nested": ["x": 1]])
    }
}

@Suite("Runs never resurrect deleted variants (SQLite and PostgreSQL)")
struct RunResurrectionTests {
    @Test(arguments: StoreKind.available) func aRunThatMustNotCreateTheVariantFailsOnADeletedOne(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        try await f.store.ensureVariant(euVariant)
        try await f.store.deleteVariant(euVariant)
        await #expect(throws: TributaryError.self) {
            _ = try await f.store.startRun(euVariant, RunStart(tracksDeletes: false, createsVariant: false))
        }
        #expect(try await f.store.variantState(euVariant) == nil)
        try await f.store.deleteConnection(connection)
        await #expect(throws: TributaryError.self) {
            _ = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: false, createsVariant: false))
        }
        #expect(try await f.store.connectionExists(connection) == false, "the connection stays deleted")
    }
}
