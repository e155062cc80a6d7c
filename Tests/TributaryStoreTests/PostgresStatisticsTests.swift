import Logging
import Synchronization
import PostgresNIO
import ServiceLifecycle
import Testing
import TributaryCore
@testable import TributaryPostgres
import TributaryStore
import TributaryTestSupport

/// Record lookups on PostgreSQL need the planner's statistics of the dataset's partition: without
/// them it scans the whole dataset for every page (docs/BENCHMARKS.md). The store analyses the
/// partition when a dataset's record count passes 8,192 × 2^k.
@Suite("PostgreSQL planner statistics")
struct PostgresStatisticsTests {
    @Test func aGrowingDatasetsPartitionIsAnalysed() async throws {
        guard StoreKind.available.contains(.postgres) else { return }
        let f = try await TestStore(.postgres)
        try await f.withoutAutovacuum()
        func save(_ range: Range<Int>) async throws {
            let records = try range.map { try PreparedRecord(["id": .string("r\($0)")]) }
            _ = try await f.store.saveRecords(records, model: "Order", of: baseVariant)
        }
        try await f.onDatabase { database in
            func estimatedRows() async throws -> Double {
                try await database.column("SELECT c.reltuples::float8 FROM pg_class c WHERE c.oid = (SELECT tableoid FROM records LIMIT 1)", as: Double.self).first ?? -1
            }
            for start in stride(from: 0, to: 8000, by: 1000) { try await save(start..<(start + 1000)) }
            #expect(try await estimatedRows() < 8192, "not analysed below the first threshold")
            try await save(8000..<9000)
            #expect(try await estimatedRows() >= 8192, "analysed once the dataset passed 8,192 records")
        }
        #expect(PostgresStore.crossesAnalyzeThreshold(from: 8000, to: 9000))
        #expect(!PostgresStore.crossesAnalyzeThreshold(from: 9000, to: 16000))
        #expect(PostgresStore.crossesAnalyzeThreshold(from: 16000, to: 17000))
        #expect(!PostgresStore.crossesAnalyzeThreshold(from: 0, to: 8191))
    }

    /// A first load's later pages are one statement each (``PlainInsertHeads``); the one that takes
    /// the dataset past 8,192 records queues its dataset, and the store's `run()` analyses the
    /// partition on another connection, in a transaction of its own so that its small statistics
    /// target holds (ten histogram buckets, not the default 100).
    @Test func aFirstLoadsPartitionIsAnalysedWithItsSmallTarget() async throws {
        guard StoreKind.available.contains(.postgres) else { return }
        let f = try await TestStore(.postgres)
        try await f.withoutAutovacuum()
        let store = try #require(f.store as? PostgresStore)
        func statistics() async throws -> (rows: Double, buckets: Int?) {
            try await store.read { db in
                let row = try await db.one(
                    """
                    SELECT c.reltuples::float8 AS rows,
                        (SELECT array_length(s.histogram_bounds::text::text[], 1) FROM pg_stats s
                         WHERE s.tablename = c.relname AND s.attname = 'external_id') AS buckets
                    FROM pg_class c WHERE c.oid = (SELECT tableoid FROM records LIMIT 1)
                    """, store.logger)
                return (try row.map { try $0["rows"].decode(Double.self) } ?? -1, try row?.optionalInt("buckets"))
            }
        }
        try await f.store.inRun(of: baseVariant) { lease in
            for start in stride(from: 0, to: 8000, by: 1000) {
                _ = try await f.store.saveRecords(try (start..<(start + 1000)).map { try PreparedRecord(["id": .string("r\($0)")]) }, model: "Order", checkpoint: nil, for: lease)
            }
            #expect(try await statistics().rows < 8192, "not analysed below the first threshold")
            _ = try await f.store.saveRecords(try (8000..<9000).map { try PreparedRecord(["id": .string("r\($0)")]) }, model: "Order", checkpoint: nil, for: lease)
        }
        #expect(store.plainInsertedAlone.load(ordering: .relaxed) == 8, "every page after the first was one statement")
        try await eventually("the queued analysis") { store.partitionsAnalysed.load(ordering: .relaxed) == 1 }
        #expect(store.analyzeQueue.count == 0)
        let analysed = try await statistics()
        #expect(analysed.rows >= 8192, "analysed once the dataset passed 8,192 records")
        #expect(analysed.buckets == 11, "with the statistics target of 10")
    }

    /// A drain cancelled between two datasets (its task cancelled during an analysis) ends the
    /// queue as one cancelled while waiting does: the datasets still waiting are forgotten and no
    /// dataset is queued afterwards.
    @Test func aDrainCancelledBetweenTwoDatasetsEndsTheQueue() async {
        let queue = AnalyzeQueue()
        func dataset(_ id: Int64) -> DatasetHead { DatasetHead(id: id, lastSequence: 1, lastWriteAt: 1) }
        for id in 1...3 { queue.enqueue(dataset(Int64(id))) }
        final class Analysed: Sendable { let ids = Mutex<[Int64]>([]) }
        let analysed = Analysed()
        // In a child task, which cancels itself during its first analysis.
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await queue.drain { dataset in
                    analysed.ids.withLock { $0.append(dataset.id) }
                    withUnsafeCurrentTask { $0?.cancel() }
                }
            }
        }
        #expect(analysed.ids.withLock { $0 } == [1])
        #expect(queue.count == 0, "the datasets still waiting are forgotten")
        #expect(!queue.enqueue(dataset(4)), "drained for the last time")
        #expect(queue.count == 0)
    }

    /// With a pool of one connection the writer and the analyser take turns on it: a first load
    /// that takes its dataset past 8,192 records finishes, and its partition is analysed after.
    @Test(.timeLimit(.minutes(1))) func withOneConnectionAFirstLoadAndItsAnalysisTakeTurns() async throws {
        guard StoreKind.available.contains(.postgres) else { return }
        let f = try await TestStore(.postgres)
        try await f.withoutAutovacuum()
        let store = PostgresStore(url: try PostgresURL(f.location), maximumConnections: 1, logger: Self.quietLogger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await store.run() }
            try await store.inRun(of: baseVariant) { lease in
                for start in stride(from: 0, to: 9000, by: 1000) {
                    _ = try await store.saveRecords(
                        try (start..<(start + 1000)).map { try PreparedRecord(["id": .string("r\($0)")]) }, model: "Order", checkpoint: nil, for: lease)
                }
            }
            try await eventually("the queued analysis") { store.partitionsAnalysed.load(ordering: .relaxed) == 1 }
            let rows = try await store.read { db in
                try await db.one("SELECT c.reltuples::float8 AS rows FROM pg_class c WHERE c.oid = (SELECT tableoid FROM records LIMIT 1)", store.logger)?["rows"]
                    .decode(Double.self)
            }
            #expect((rows ?? -1) >= 8192, "analysed on the one connection once the load let go of it")
            let saved = try await store.read { db in try await db.one("SELECT count(*) AS n FROM records", store.logger)?["n"].decode(Int64.self) }
            #expect(saved == 9000)
            group.cancelAll()
        }
    }

    /// A graceful shutdown with partitions still waiting for analysis ends the store's `run()`: the
    /// drain stops (the datasets still waiting are dropped) and the pool finishes its own shutdown,
    /// so the service group returns without an error; the queue takes no dataset afterwards.
    @Test(.timeLimit(.minutes(1))) func aGracefulShutdownEndsTheAnalyserWithDatasetsStillWaiting() async throws {
        guard StoreKind.available.contains(.postgres) else { return }
        let f = try await TestStore(.postgres)
        _ = try await f.store.saveRecords(try (0..<9000).map { try PreparedRecord(["id": .string("r\($0)")]) }, model: "Order", of: baseVariant)
        let store = PostgresStore(url: try PostgresURL(f.location), maximumConnections: 2, logger: Self.quietLogger)
        let services = ServiceGroup(configuration: ServiceGroupConfiguration(services: [store], logger: Self.quietLogger))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await services.run() }
            let dataset = try #require(
                try await store.read { db in try await db.one("SELECT id FROM datasets LIMIT 1", store.logger)?["id"].decode(Int64.self) })
            // The real dataset first, then datasets without records (each a lookup on the pool).
            for id in [dataset] + (1...Int64(AnalyzeQueue.limit - 1)).map({ dataset + $0 }) {
                #expect(store.analyzeQueue.enqueue(DatasetHead(id: id, lastSequence: 0, lastWriteAt: 0)))
            }
            try await eventually("the first analysis") { store.partitionsAnalysed.load(ordering: .relaxed) >= 1 }
            await services.triggerGracefulShutdown()
            try await group.next()
        }
        #expect(!store.analyzeQueue.enqueue(DatasetHead(id: 1, lastSequence: 0, lastWriteAt: 0)), "drained for the last time")
        #expect(store.analyzeQueue.count == 0)
        #expect(store.partitionsAnalysed.load(ordering: .relaxed) <= AnalyzeQueue.limit)
    }

    static var quietLogger: Logger {
        var logger = Logger(label: "tributary.postgres")
        logger.logLevel = .error
        return logger
    }

    /// What a first load's next page may expect is kept per run, model and attempt — the run's
    /// counts per run and attempt, whatever the model that wrote them last; a refusal holds for the
    /// attempt that met it, not for one that takes the run over; the entries are forgotten
    /// wholesale past their limit.
    @Test func firstLoadHeadsAreKeptPerRunModelAndAttemptWithinALimit() {
        let heads = PlainInsertHeads()
        func expected(run: Int64, token: Int64, count: Int64) -> PlainInsertHeads.Expected {
            PlainInsertHeads.Expected(
                runId: run, token: token, variantPK: 1, kind: "initial", runGeneration: nil, results: "{}",
                dataset: DatasetHead(id: 3, lastSequence: count, lastWriteAt: count), recordCount: count)
        }
        heads.record(expected(run: 7, token: 1, count: 10), model: "Order")
        #expect(heads.expected(runId: 7, token: 1, model: "Order")?.recordCount == 10)
        #expect(heads.expected(runId: 7, token: 2, model: "Order") == nil, "another attempt expects nothing")
        #expect(heads.expected(runId: 7, token: 1, model: "Customer") == nil)
        heads.refuse(runId: 7, token: 1, model: "Order")
        #expect(heads.expected(runId: 7, token: 1, model: "Order") == nil)
        heads.record(expected(run: 7, token: 1, count: 20), model: "Order")
        #expect(heads.expected(runId: 7, token: 1, model: "Order") == nil, "a refused attempt stays refused")
        heads.record(expected(run: 7, token: 2, count: 30), model: "Order")
        #expect(heads.expected(runId: 7, token: 2, model: "Order")?.recordCount == 30, "the attempt that took over starts afresh")
        // Another model's write moves the run's results every model's next page expects.
        var customers = expected(run: 7, token: 2, count: 5)
        customers.results = #"{"Customer":{"added":5}}"#
        heads.record(customers, model: "Customer")
        #expect(heads.expected(runId: 7, token: 2, model: "Order")?.results == customers.results)
        #expect(heads.expected(runId: 7, token: 2, model: "Order")?.recordCount == 30, "its own dataset's head")
        // A refused model's later writes (by the transaction) still move the counts the others expect.
        heads.refuse(runId: 7, token: 2, model: "Customer")
        customers.results = #"{"Customer":{"added":9}}"#
        heads.record(customers, model: "Customer")
        #expect(heads.expected(runId: 7, token: 2, model: "Customer") == nil, "still refused")
        #expect(heads.expected(runId: 7, token: 2, model: "Order")?.results == customers.results)
        // Counts an earlier attempt left are not what a later attempt's page expects.
        var stale = expected(run: 7, token: 1, count: 1)
        stale.results = #"{"Order":{"added":1}}"#
        heads.record(stale, model: "Customer")
        #expect(heads.expected(runId: 7, token: 2, model: "Order")?.results == #"{}"#, "the entry's own counts, not another attempt's")
        for run in 0..<Int64(PlainInsertHeads.limit) { heads.record(expected(run: 1_000 + run, token: 1, count: 1), model: "Order") }
        #expect(heads.expected(runId: 7, token: 2, model: "Order") == nil, "forgotten once the limit was reached")
        #expect(heads.expected(runId: 1_000 + Int64(PlainInsertHeads.limit) - 1, token: 1, model: "Order") != nil)
    }

    /// Marks (the first-load insert's refusals, the pages writing most of their records) are
    /// remembered per run and model, and forgotten wholesale past their limit (a hint: memory
    /// stays bounded).
    @Test func runModelMarksAreRememberedPerRunAndModelWithinALimit() {
        let refusals = RunModelMarks()
        refusals.mark(runId: 7, model: "Order")
        #expect(refusals.contains(runId: 7, model: "Order"))
        #expect(!refusals.contains(runId: 7, model: "Customer"))
        #expect(!refusals.contains(runId: 8, model: "Order"))
        refusals.mark(runId: 8, model: "Order")
        refusals.unmark(runId: 8, model: "Order")
        #expect(!refusals.contains(runId: 8, model: "Order"), "unmarked")
        for run in 0..<Int64(RunModelMarks.limit) { refusals.mark(runId: 1_000 + run, model: "Order") }
        #expect(!refusals.contains(runId: 7, model: "Order"), "forgotten once the limit was reached")
        #expect(refusals.contains(runId: 1_000 + Int64(RunModelMarks.limit) - 1, model: "Order"))
    }

    /// A dataset waits in the analyse queue once until its turn, and no more than the queue's limit
    /// of datasets wait at once (more are not queued: their next doubling queues them again).
    @Test func theAnalyseQueueHoldsADatasetOnceAndStaysWithinItsLimit() {
        let queue = AnalyzeQueue()
        func dataset(_ id: Int64) -> DatasetHead { DatasetHead(id: id, lastSequence: 1, lastWriteAt: 1) }
        #expect(queue.enqueue(dataset(1)))
        #expect(!queue.enqueue(dataset(1)), "already waiting")
        #expect(queue.enqueue(dataset(2)))
        #expect(queue.count == 2)
        for id in 3...Int64(AnalyzeQueue.limit) { #expect(queue.enqueue(dataset(id))) }
        #expect(queue.count == AnalyzeQueue.limit)
        #expect(!queue.enqueue(dataset(Int64(AnalyzeQueue.limit) + 1)), "the queue is full")
        #expect(queue.count == AnalyzeQueue.limit)
    }

    /// The queue hands its datasets over in the order they came, one at a time; a dataset queued
    /// again while it is being analysed (rows written since) is analysed again after; draining ends
    /// when its task is cancelled, and with it the queue.
    @Test func theAnalyseQueueHandsDatasetsOverInOrderAndAgainWhenQueuedDuringTheirTurn() async throws {
        let queue = AnalyzeQueue()
        func dataset(_ id: Int64) -> DatasetHead { DatasetHead(id: id, lastSequence: 1, lastWriteAt: 1) }
        final class Analysed: Sendable { let ids = Mutex<[Int64]>([]) }
        let analysed = Analysed()
        queue.enqueue(dataset(1))
        queue.enqueue(dataset(2))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                await queue.drain { dataset in
                    let first = analysed.ids.withLock { ids in
                        ids.append(dataset.id)
                        return ids.count == 1
                    }
                    // Written again while its first analysis runs: waits for a second turn.
                    if first { #expect(queue.enqueue(dataset)) }
                }
            }
            try await eventually("three analyses") { analysed.ids.withLock { $0.count } == 3 }
            group.cancelAll()
            try await group.waitForAll()
        }
        #expect(analysed.ids.withLock { $0 } == [1, 2, 1])
        #expect(queue.count == 0)
        #expect(!queue.enqueue(dataset(3)), "drained for the last time: nothing waits for a turn that never comes")
        #expect(queue.count == 0)
    }
}
