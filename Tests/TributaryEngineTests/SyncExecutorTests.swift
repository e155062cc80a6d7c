import Foundation
import Logging
import Synchronization
import Testing
import TributaryCore
import TributaryEngine
import TributarySQLite
import TributaryStore
import TributaryTestSupport

/// A real store of the given kind (a SQLite file, or a PostgreSQL database) plus an executor over the given functions.
final class EngineFixture: Sendable {
    let testStore: TestStore
    let executor: SyncExecutor
    var store: any Store { testStore.store }
    var directory: URL { testStore.directory }

    init(_ functions: [any SyncFunction], kind: StoreKind = .sqlite, clock: (@Sendable () -> Timestamp)? = nil) async throws {
        testStore = try await TestStore(kind, clock: clock)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        executor = SyncExecutor(store: testStore.store, functions: try SyncFunctionRegistry(functions), logger: logger)
    }

    func live(_ variant: VariantRef, _ model: String = "Order") async throws -> [String: JSONObject] {
        var result: [String: JSONObject] = [:]
        var cursor: FeedCursor? = nil
        repeat {
            let page = try await store.changes(try ChangeQuery(dataset: variant.dataset(model), cursor: cursor, limit: 500))
            for record in page.records where record.deletedAt == nil { result[record.id] = try JSONParser.parse(record.json).objectValue }
            cursor = page.nextCursor
        } while cursor != nil
        return result
    }
}

/// State a test shares with the provider its function reads.
final class FakeProvider: Sendable {
    struct Item: Sendable {
        var id: String
        var value: Int
        var updatedAt: Date
    }
    private let state = Mutex<[String: Item]>([:])
    let seenLastSyncDates = Mutex<[Date?]>([])

    func put(_ id: String, _ value: Int, at date: Date = Date()) {
        state.withLock { $0[id] = Item(id: id, value: value, updatedAt: date) }
    }
    func remove(_ id: String) { _ = state.withLock { $0.removeValue(forKey: id) } }
    func items(since: Date? = nil) -> [Item] {
        state.withLock { items in items.values.filter { since == nil || $0.updatedAt > since! }.sorted { $0.id < $1.id } }
    }
}

func record(_ item: FakeProvider.Item) -> JSONObject {
    ["id": .string(item.id), "value": .number(JSONNumber(item.value))]
}

let connection = ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "c1")
let base = VariantRef(connection: connection, syncName: "orders")

@Suite("Sync runtime")
struct SyncExecutorTests {
    @Test(arguments: StoreKind.available) func incrementalSyncUsesLastSyncDate(_ kind: StoreKind) async throws {
        let provider = FakeProvider()
        let function = ClosureSyncFunction(name: "inc") { nango in
            provider.seenLastSyncDates.withLock { $0.append(nango.lastSyncDate) }
            try await nango.batchSave(provider.items(since: nango.lastSyncDate).map(record), model: "Order")
        }
        let f = try await EngineFixture([function], kind: kind)
        let sync = SyncConfig(name: "orders", function: "inc", models: ["Order"], frequency: try Frequency("1h"), syncType: .incremental)
        provider.put("a", 1, at: Date(timeIntervalSinceNow: -60))
        provider.put("b", 1, at: Date(timeIntervalSinceNow: -60))
        let first = try await f.executor.run(base, sync: sync)
        #expect(first.status == .succeeded)
        #expect(first.kind == .initial)
        #expect(first.results == ["Order": ModelResult(added: 2)])
        provider.put("b", 2)
        provider.put("c", 1)
        let second = try await f.executor.run(base, sync: sync)
        #expect(second.kind == .incremental)
        #expect(second.results == ["Order": ModelResult(added: 1, updated: 1)])
        let dates = provider.seenLastSyncDates.withLock { $0 }
        #expect(dates.count == 2)
        #expect(dates[0] == nil)
        #expect(dates[1].map { Timestamp($0) } == first.startedAt, "lastSyncDate is the start of the last successful run")
        #expect(try await f.store.variantState(base)?.lastSyncDate == second.startedAt)
        #expect(try await f.live(base)["b"]?["value"] == 2)
    }

    @Test(arguments: StoreKind.available) func fullRefreshMarksVanishedRecordsDeleted(_ kind: StoreKind) async throws {
        let provider = FakeProvider()
        let function = ClosureSyncFunction(name: "full") { nango in
            try await nango.batchSave(provider.items().map(record), model: "Order")
        }
        let f = try await EngineFixture([function], kind: kind)
        let sync = SyncConfig(name: "orders", function: "full", models: ["Order"], frequency: try Frequency("1h"), trackDeletes: true)
        for id in ["a", "b", "c"] { provider.put(id, 1) }
        _ = try await f.executor.run(base, sync: sync)
        provider.remove("b")
        provider.put("c", 2)
        let run = try await f.executor.run(base, sync: sync)
        #expect(run.results == ["Order": ModelResult(updated: 1, deleted: 1)])
        #expect(try await f.live(base).keys.sorted() == ["a", "c"])
        #expect(try await f.store.recordCounts(of: base) == ["Order": 2])
    }

    @Test(arguments: StoreKind.available) func functionThatThrowsMidwayDeletesNothingAndKeepsLastSyncDate(_ kind: StoreKind) async throws {
        struct ProviderDown: Error, CustomStringConvertible { var description: String { "provider answered 503" } }
        let provider = FakeProvider()
        let failing = Mutex(false)
        let function = ClosureSyncFunction(name: "full") { nango in
            let items = provider.items()
            try await nango.batchSave(Array(items.prefix(1)).map(record), model: "Order")
            if failing.withLock({ $0 }) { throw ProviderDown() }
            try await nango.batchSave(Array(items.dropFirst()).map(record), model: "Order")
        }
        let f = try await EngineFixture([function], kind: kind)
        let sync = SyncConfig(name: "orders", function: "full", models: ["Order"], frequency: try Frequency("1h"), trackDeletes: true)
        for id in ["a", "b", "c"] { provider.put(id, 1) }
        let good = try await f.executor.run(base, sync: sync)
        failing.withLock { $0 = true }
        let bad = try await f.executor.run(base, sync: sync)
        #expect(bad.status == .failed)
        #expect(bad.error == "provider answered 503")
        #expect(try await f.live(base).keys.sorted() == ["a", "b", "c"], "a failed run never deletes")
        #expect(try await f.store.variantState(base)?.lastSyncDate == good.startedAt)
        let logs = try await f.store.logs(ofRun: bad.id, limit: 10).map(\.message)
        #expect(logs.contains { $0.contains("provider answered 503") })
    }

    @Test(arguments: StoreKind.available) func checkpointedRunResumesAfterAnInterruption(_ kind: StoreKind) async throws {
        struct Crash: Error {}
        let provider = FakeProvider()
        let crashAfterPage = Mutex<Int?>(nil)
        let pagesFetched = Mutex<[Int]>([])
        let function = ClosureSyncFunction(name: "paged") { nango in
            let items = provider.items()
            var page = Int(try await nango.getCheckpoint()?["page"]?.int64Value ?? 0)
            while page * 2 < items.count {
                pagesFetched.withLock { $0.append(page) }
                try await nango.batchSave(items[(page * 2)..<min(items.count, page * 2 + 2)].map(record), model: "Order")
                page += 1
                try await nango.saveCheckpoint(["page": .number(JSONNumber(page))])
                if crashAfterPage.withLock({ $0 }) == page { throw Crash() }
            }
        }
        let f = try await EngineFixture([function], kind: kind)
        let sync = SyncConfig(name: "orders", function: "paged", models: ["Order"], frequency: try Frequency("1h"), trackDeletes: true)
        for id in ["a", "b", "c", "d", "e", "f"] { provider.put(id, 1) }
        _ = try await f.executor.run(base, sync: sync)
        #expect(try await f.store.variantState(base)?.checkpoint == nil, "a successful full refresh clears its checkpoint")

        // "f" disappears; the next run is interrupted after its first page.
        provider.remove("f")
        pagesFetched.withLock { $0 = [] }
        crashAfterPage.withLock { $0 = 1 }
        let interrupted = try await f.executor.run(base, sync: sync)
        #expect(interrupted.status == .failed)
        #expect(try await f.store.variantState(base)?.checkpoint == ["page": 1])
        #expect(try await f.live(base).count == 6, "nothing deleted by the interrupted attempt")

        // The retry resumes at page 1; records of page 0 saved by the first attempt count as seen.
        crashAfterPage.withLock { $0 = nil }
        let resumed = try await f.executor.run(base, sync: sync)
        #expect(resumed.status == .succeeded)
        #expect(pagesFetched.withLock { $0 } == [0, 1, 2])
        #expect(resumed.results["Order"]?.deleted == 1)
        #expect(try await f.live(base).keys.sorted() == ["a", "b", "c", "d", "e"])
    }

    @Test(arguments: StoreKind.available) func variantsRunIndependentlyAndReadNamespacedMetadata(_ kind: StoreKind) async throws {
        let function = ClosureSyncFunction(name: "variant-aware") { nango in
            let metadata = try await nango.getMetadata()
            let threshold = metadata["\(nango.variant).threshold"]?.int64Value ?? 0
            let records: [JSONObject] = (1...5).filter { $0 >= threshold }.map { ["id": .string("o\($0)"), "variant": .string(nango.variant)] }
            try await nango.batchSave(records, model: "Order")
            try await nango.updateMetadata(["\(nango.variant).lastCount": .number(JSONNumber(records.count))])
        }
        let f = try await EngineFixture([function], kind: kind)
        let sync = SyncConfig(name: "orders", function: "variant-aware", models: ["Order"], frequency: try Frequency("1h"))
        let high = VariantRef(connection: connection, syncName: "orders", variant: "high-value")
        try await f.store.ensureVariant(base)
        try await f.store.setMetadata(["high-value.threshold": 4], of: [connection])
        _ = try await f.executor.run(base, sync: sync)
        _ = try await f.executor.run(high, sync: sync)
        #expect(try await f.live(base).count == 5)
        #expect(try await f.live(high).keys.sorted() == ["o4", "o5"])
        #expect(try await f.live(high)["o4"]?["variant"] == "high-value")
        let metadata = try await f.store.metadata(of: connection)
        #expect(metadata["base.lastCount"] == 5)
        #expect(metadata["high-value.lastCount"] == 2)
    }

    @Test(arguments: StoreKind.available) func undeclaredModelFailsTheRunWithAClearError(_ kind: StoreKind) async throws {
        let function = ClosureSyncFunction(name: "wrong") { nango in
            try await nango.batchSave([["id": "1"]], model: "Invoice")
        }
        let f = try await EngineFixture([function], kind: kind)
        let sync = SyncConfig(name: "orders", function: "wrong", models: ["Order"], frequency: try Frequency("1h"))
        let run = try await f.executor.run(base, sync: sync)
        #expect(run.status == .failed)
        #expect(run.error?.contains("Model 'Invoice' is not declared by sync 'orders'") == true)
    }

    @Test(arguments: StoreKind.available) func recordWithoutIdFailsTheRun(_ kind: StoreKind) async throws {
        let function = ClosureSyncFunction(name: "noid") { nango in
            try await nango.batchSave([["name": "x"]], model: "Order")
        }
        let f = try await EngineFixture([function], kind: kind)
        let run = try await f.executor.run(base, sync: SyncConfig(name: "orders", function: "noid", models: ["Order"], frequency: try Frequency("1h")))
        #expect(run.status == .failed)
        #expect(run.error?.contains("\"id\"") == true)
    }

    /// A page large enough to be prepared in chunks at once: saved whole and in order; one with a bad
    /// record past the first chunk fails the run with that record's error and saves none of it.
    @Test(arguments: StoreKind.available) func aLargePageIsSavedWholeOrNotAtAll(_ kind: StoreKind) async throws {
        let page: [JSONObject] = (0..<1000).map { ["id": .string("o\($0)"), "value": .number(JSONNumber($0))] }
        var bad = page
        bad[600] = ["id": .number(JSONNumber(1.5)), "value": 600]
        let badPage = bad
        let good = ClosureSyncFunction(name: "large") { nango in try await nango.batchSave(page, model: "Order") }
        let failing = ClosureSyncFunction(name: "large-bad") { nango in try await nango.batchSave(badPage, model: "Order") }
        let f = try await EngineFixture([good, failing], kind: kind)
        let run = try await f.executor.run(base, sync: SyncConfig(name: "orders", function: "large", models: ["Order"], frequency: try Frequency("1h")))
        #expect(run.status == .succeeded)
        #expect(run.results["Order"] == ModelResult(added: 1000))
        let live = try await f.live(base)
        #expect(live.count == 1000)
        #expect(live["o999"]?["value"] == .number(JSONNumber(999)))

        let other = VariantRef(connection: connection, syncName: "orders", variant: "bad")
        let failed = try await f.executor.run(
            other, sync: SyncConfig(name: "orders", function: "large-bad", models: ["Order"], frequency: try Frequency("1h")))
        #expect(failed.status == .failed)
        #expect(failed.error?.contains("A record's \"id\" must be a string or an integer.") == true)
        #expect(try await f.live(other).isEmpty)
    }

    @Test(arguments: StoreKind.available) func unknownFunctionIsRefusedBeforeARunStarts(_ kind: StoreKind) async throws {
        let f = try await EngineFixture([], kind: kind)
        let sync = SyncConfig(name: "orders", function: "missing", models: ["Order"], frequency: try Frequency("1h"))
        await #expect(throws: TributaryError.self) { _ = try await f.executor.run(base, sync: sync) }
        #expect(try await f.store.runs(of: base, limit: 5).isEmpty)
    }

    @Test(arguments: StoreKind.available) func cancellationStopsTheFunctionAndDeletesNothing(_ kind: StoreKind) async throws {
        let started = Flag()
        let function = ClosureSyncFunction(name: "slow") { nango in
            try await nango.batchSave([["id": "a"]], model: "Order")
            started.set()
            while true {
                try await Task.sleep(for: .milliseconds(10))
                try await nango.batchSave([["id": "b"]], model: "Order")
            }
        }
        let f = try await EngineFixture([function], kind: kind)
        let sync = SyncConfig(name: "orders", function: "slow", models: ["Order"], frequency: try Frequency("1h"), trackDeletes: true)
        let executor = f.executor
        let task = Task { try await executor.run(base, sync: sync) }
        while !started.isSet { try await Task.sleep(for: .milliseconds(5)) }
        task.cancel()
        let run = try await task.value
        #expect(run.status == .cancelled)
        #expect(try await f.store.variantState(base)?.lastSyncDate == nil)
        let all = try await f.store.changes(try ChangeQuery(dataset: base.dataset("Order"))).records
        #expect(all.contains { $0.id == "a" })
        #expect(all.allSatisfy { $0.deletedAt == nil }, "a cancelled run deletes nothing")
    }

    @Test(arguments: StoreKind.available) func encodableModelsAreSavedAsRecords(_ kind: StoreKind) async throws {
        struct Order: Encodable {
            var id: Int
            var total: Double
            var tags: [String]
        }
        let function = ClosureSyncFunction(name: "codable") { nango in
            try await nango.batchSave([Order(id: 7, total: 12.5, tags: ["x"])], model: "Order")
        }
        let f = try await EngineFixture([function], kind: kind)
        _ = try await f.executor.run(base, sync: SyncConfig(name: "orders", function: "codable", models: ["Order"], frequency: try Frequency("1h")))
        let stored = try #require(try await f.live(base)["7"])
        #expect(stored["id"] == "7")
        #expect(stored["total"]?.doubleValue == 12.5)
        #expect(stored["tags"] == ["x"])
    }
}

final class Flag: Sendable {
    private let value = Mutex(false)
    func set() { value.withLock { $0 = true } }
    var isSet: Bool { value.withLock { $0 } }
}

@Suite("Run leases")
struct RunLeaseTests {
    /// A function that writes nothing for longer than the lease still holds it: the heartbeat runs
    /// beside the function, so a second start of the variant is refused instead of taking over.
    @Test(arguments: StoreKind.available) func theHeartbeatKeepsAQuietRunsLeaseAlive(_ kind: StoreKind) async throws {
        let inside = Flag()
        let release = Flag()
        let quiet = ClosureSyncFunction(name: "quiet") { nango in
            inside.set()
            while !release.isSet { try await Task.sleep(for: .milliseconds(10)) }
            try await nango.batchSave([["id": "done"]], model: "Order")
        }
        let f = try await EngineFixture([quiet], kind: kind)
        var logger = Logger(label: "lease")
        logger.logLevel = .critical
        let executor = SyncExecutor(store: f.store, functions: try SyncFunctionRegistry([quiet]), logger: logger, leaseSeconds: 2)
        let sync = SyncConfig(name: "orders", function: "quiet", models: ["Order"], frequency: try Frequency("1h"))
        let task = Task { try await executor.run(base, sync: sync) }
        while !inside.isSet { try await Task.sleep(for: .milliseconds(5)) }
        try await Task.sleep(for: .milliseconds(5000))  // 2.5 leases without a single write
        await #expect(throws: TributaryError.self) { _ = try await f.store.startRun(base, RunStart(tracksDeletes: false, leaseSeconds: 1)) }
        release.set()
        let run = try await task.value
        #expect(run.status == .succeeded, "its outcome was applied: no one took the run over")
    }
}
