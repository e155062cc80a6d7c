import Foundation
import Testing
import TributaryCore
import TributaryStore
import TributaryTestSupport
@testable import TributarySQLite

/// The SQLite store's write executor runs a task's jobs on the writer's own queue, between writes.
@Suite("SQLite write executor")
struct SQLiteWriteExecutorTests {
    /// A run whose task prefers the write executor — as a declarative sync's writing side does —
    /// starts, saves page after page with checkpoints, reads, and finishes: none of the store's calls
    /// waits for the queue it runs on (a synchronous write would stop the process; a wait on the
    /// writer would hang, hence the time limit).
    /// The pages read back in order, and the executor ran the task's jobs.
    @Test(.timeLimit(.minutes(1))) func aRunOnTheWriteExecutorWritesAndReadsWithoutWaitingForItself() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-writer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try SQLiteStore(path: directory.appendingPathComponent("cache.sqlite").path)
        defer { try? store.close() }
        try await store.migrate()
        let variant = VariantRef(connection: ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "c1"), syncName: "orders")
        _ = try await store.ensureConnection(variant.connection)
        let executor = try #require(store.writeExecutor as? WriterQueueExecutor)
        let key = DispatchSpecificKey<Bool>()
        executor.queue.setSpecific(key: key, value: true)
        // The writer's queue targets the executor's: a write and the executor's jobs never overlap,
        // and one follows the other on the same thread.
        #expect(try await store.pool.write { _ in DispatchQueue.getSpecific(key: key) } == true)

        let (results, onTheWriterQueue) = try await withTaskExecutorPreference(executor) {
            try await store.inRun(of: variant) { lease in
                var results = ModelResult()
                var onTheWriterQueue = 0
                for page in 0..<5 {
                    let records = try (0..<200).map { try PreparedRecord(["id": .string("o\(page)-\($0)")]) }
                    let checkpoint = try Checkpoint(["next": .string("page-\(page + 1)")])
                    results = results + (try await store.saveRecords(records, model: "Order", checkpoint: checkpoint, for: lease))
                    if DispatchQueue.getSpecific(key: key) == true { onTheWriterQueue += 1 }
                }
                #expect(try await store.recordCounts(of: variant)["Order"] == 1_000)
                return (results, onTheWriterQueue)
            }
        }
        #expect(results == ModelResult(added: 1_000))
        #expect(onTheWriterQueue == 5, "the task went on, after each write, on the writer's queue")
        var ids: [String] = []
        var cursor: FeedCursor?
        repeat {
            let page = try await store.changes(try ChangeQuery(dataset: variant.dataset("Order"), cursor: cursor, limit: 300))
            ids += page.records.map(\.id)
            cursor = page.nextCursor
        } while cursor != nil
        #expect(ids == (0..<5).flatMap { page in (0..<200).map { "o\(page)-\($0)" } })
    }
}
