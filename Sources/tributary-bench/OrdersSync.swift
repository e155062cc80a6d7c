import Logging
import Synchronization
import TributaryCore
import TributaryEngine
import TributaryStore

/// A full-refresh `orders` sync whose function reads ``OrderGenerator`` pages as provider JSON bytes,
/// parses each and saves it with `batchSave` — the real run path (executor, run context, store)
/// without HTTP. Used by the `ingest` and `deletes` suites.
struct OrdersSync: Sendable {
    let store: any Store
    let records: Int
    let pageSize: Int
    let trackDeletes: Bool
    let logger: Logger

    static let variant = VariantRef(connection: ConnectionRef(environment: "bench", providerConfigKey: "shop", connectionId: "c1"), syncName: "orders")

    /// One run's figures.
    struct Pass: Sendable {
        /// The whole run, start to finish.
        var seconds: Double
        /// From the function's return to the run's end: deletion detection and finishing the run.
        var finishSeconds: Double
        /// Time spent inside `batchSave` calls (canonical JSON, hashing and the store), without the
        /// provider side (generating and parsing pages, and freeing the parsed pages).
        var saveSeconds: Double
        var run: RunRecord

        var result: String { run.summary }
    }

    /// Runs the sync once over `generator`'s orders.
    func run(_ generator: OrderGenerator) async throws -> Pass {
        let n = records
        let pageSize = self.pageSize
        let functionEnd = Mutex<ContinuousClock.Instant?>(nil)
        let saving = Mutex<Duration>(.zero)
        let sync = SyncConfig(name: "orders", function: "bench-orders", models: ["Order"], frequency: try Frequency("1h"), trackDeletes: trackDeletes)
        let function = ClosureSyncFunction(name: "bench-orders") { nango in
            var start = 0
            while start < n {
                let bytes = generator.page(from: start, count: min(pageSize, n - start))
                guard let orders = try JSONParser.parse(bytes)["orders"]?.arrayValue else { return }
                let objects = orders.compactMap(\.objectValue)
                let before = ContinuousClock.now
                try await nango.batchSave(objects, model: "Order")
                let spent = ContinuousClock.now - before
                saving.withLock { $0 += spent }
                // The parsed page is the function's own: it is freed after the timing, not inside
                // it (released at its last use, freeing the page's ~25,000 values was timed as
                // part of batchSave: ~0.5 ms a page).
                withExtendedLifetime(objects) {}
                start += pageSize
            }
            functionEnd.withLock { $0 = .now }
        }
        let executor = SyncExecutor(store: store, functions: try SyncFunctionRegistry([function]), logger: logger)
        let (seconds, run) = try await timed { try await executor.run(Self.variant, sync: sync) }
        let end = ContinuousClock.now
        return Pass(
            seconds: seconds, finishSeconds: functionEnd.withLock { $0.map { (end - $0).inSeconds } } ?? 0,
            saveSeconds: saving.withLock { $0.inSeconds }, run: run)
    }
}
