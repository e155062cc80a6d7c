import Foundation
import Synchronization
import Testing
import TributaryCore
@testable import TributaryEngine
import TributaryStore
import TributaryTestSupport

/// A run's context hands its store's write executor to the sync function, and a declarative sync
/// saves its pages on it.
@Suite("Write executor wiring")
struct WriteExecutorWiringTests {
    /// A paginated listing of five pages of two records; the context's saves record where they ran.
    final class ListingContext: StubSyncContext {
        let executor = PagePrefetchTests.QueueExecutor()
        let saves = Mutex<[(ids: [String], onExecutor: Bool)]>([])
        var writeExecutor: (any WriteExecutor)? { executor }
        func batchSave(prepared records: [PreparedRecord], model: String) async throws {
            let onExecutor = executor.isCurrent
            saves.withLock { $0.append((records.map(\.id), onExecutor)) }
        }
        func batchSave(prepared records: [PreparedRecord], model: String, checkpoint: Checkpoint) async throws {
            try await batchSave(prepared: records, model: model)
        }
        func send(_ request: ProviderRequest) async throws -> ProviderResponse {
            let page = Int(request.query.first { $0.name == "cursor" }?.value ?? "0") ?? 0
            let next = page < 4 ? #""\#(page + 1)""# : "null"
            let body = #"{"items":[{"id":"p\#(page)a"},{"id":"p\#(page)b"}],"next":\#(next)}"#
            return ProviderResponse(status: 200, headers: [], body: Array(body.utf8))
        }
    }

    @Test func aDeclarativeSyncSavesItsPagesOnTheContextsWriteExecutor() async throws {
        let context = ListingContext()
        let spec = DeclarativeSpec(
            endpoint: "/items", pagination: Pagination(.cursor(nextCursorPath: "next", cursorParameter: "cursor"), recordsPath: "items"),
            recordsPath: "items")
        try await DeclarativeSyncFunction(name: "orders", spec: spec).exec(context)
        let saves = context.saves.withLock { $0 }
        #expect(saves.flatMap(\.ids) == (0..<5).flatMap { ["p\($0)a", "p\($0)b"] })
        #expect(!saves.isEmpty && saves.allSatisfy(\.onExecutor), "every save ran on the write executor")
    }

    /// The context a run's function gets offers its store's write executor: SQLite's, none on PostgreSQL.
    @Test(arguments: StoreKind.available) func aRunsContextOffersItsStoresWriteExecutor(_ kind: StoreKind) async throws {
        let offered = Mutex<ObjectIdentifier??>(nil)
        let function = ClosureSyncFunction(name: "probe") { nango in
            offered.withLock { $0 = .some(nango.writeExecutor.map { ObjectIdentifier($0 as AnyObject) }) }
        }
        let engine = try await EngineFixture([function], kind: kind)
        let variant = VariantRef(connection: ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "c1"), syncName: "orders")
        let run = try await engine.executor.run(variant, sync: SyncConfig(name: "orders", function: "probe", models: ["Order"], frequency: try Frequency("1h")))
        #expect(run.status == .succeeded)
        let expected = engine.store.writeExecutor.map { ObjectIdentifier($0 as AnyObject) }
        #expect(offered.withLock { $0 } == .some(expected))
        #expect((expected != nil) == (kind == .sqlite))
    }
}
