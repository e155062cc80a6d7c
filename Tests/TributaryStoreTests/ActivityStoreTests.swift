import Foundation
import Testing
import TributaryCore
import TributaryStore
import TributaryTestSupport

@Suite("Activity and operations reads (SQLite and PostgreSQL)")
struct ActivityStoreTests {
    @Test(arguments: StoreKind.available) func activityListsTheEnvironmentsRunsNewestFirstWithFilters(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        let other = VariantRef(connection: ConnectionRef(environment: "dev", providerConfigKey: "crm", connectionId: "customer-2"), syncName: "contacts")
        let elsewhere = VariantRef(connection: ConnectionRef(environment: "prod", providerConfigKey: "shop", connectionId: "customer-1"), syncName: "orders")
        for ref in [baseVariant, euVariant, other, elsewhere] { try await f.store.ensureVariant(ref) }
        _ = try await f.store.saveRecords([order("a")], model: "Order", of: baseVariant)
        _ = try await f.store.saveRecords([order("b")], model: "Order", of: euVariant)
        let failing = try await f.store.startRun(other, RunStart(tracksDeletes: false))
        _ = try await f.store.completeRun(failing.lease, RunCompletion(outcome: .failed(message: "boom")))
        _ = try await f.store.saveRecords([order("c")], model: "Order", of: elsewhere)
        try await f.store.enqueueRuns([baseVariant])

        let all = try await f.store.activity(ActivityQuery(environment: "dev"))
        #expect(all.map(\.variant) == [baseVariant, other, euVariant, baseVariant], "newest first, this environment only")
        #expect(all.first?.status == .queued)
        #expect(try await f.store.activity(ActivityQuery(environment: "dev", status: .failed)).map(\.variant) == [other])
        #expect(try await f.store.activity(ActivityQuery(environment: "dev", integration: "crm")).map(\.error) == ["boom"])
        #expect(try await f.store.activity(ActivityQuery(environment: "dev", connectionId: "customer-1")).count == 3)
        #expect(try await f.store.activity(ActivityQuery(environment: "dev", sync: "contacts")).count == 1)
        let page = try await f.store.activity(ActivityQuery(environment: "dev", beforeId: all[1].id, limit: 1))
        #expect(page.map(\.id) == [all[2].id], "older than the given run, within the limit")
        #expect(try await f.store.activity(ActivityQuery(environment: "dev", since: Timestamp.now().adding(microseconds: 60_000_000))).isEmpty)
        #expect(try await f.store.activity(ActivityQuery(environment: "dev", until: Timestamp(microseconds: 0))).isEmpty)

        let hours = try await f.store.runsPerHour(environment: "dev", since: Timestamp.now().adding(microseconds: -3_600_000_000))
        #expect(hours.map(\.finished).reduce(0, +) == 3, "finished runs only (the queued one is not)")
        #expect(hours.map(\.failed).reduce(0, +) == 1)
        let snapshot = try await f.store.operationsSnapshot()
        #expect(snapshot.runs == [OperationsSnapshot.ActiveRuns(environment: "dev", integration: "shop", sync: "orders", queued: 1, running: 0)])
        let flow = try await f.store.outboxFlow(environment: "dev", since: Timestamp.now().adding(microseconds: -3_600_000_000))
        #expect(flow == OutboxFlow(pendingNow: 0, createdPerHour: [:], endedPerHour: [:]))
    }
}
