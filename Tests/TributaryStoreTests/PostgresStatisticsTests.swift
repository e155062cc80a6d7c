import Logging
import PostgresNIO
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
        var logger = Logger(label: "tests")
        logger.logLevel = .error
        let connection = try await PostgresConnection.connect(
            configuration: try PostgresURL(f.location).connectionConfiguration(), id: 1, logger: logger)
        func estimatedRows() async throws -> Double {
            let rows = try await connection.query(
                """
                SELECT c.reltuples::float8 FROM pg_class c
                WHERE c.oid = (SELECT tableoid FROM records LIMIT 1)
                """, logger: logger)
            for try await value in rows.decode(Double.self) { return value }
            return -1
        }
        func save(_ range: Range<Int>) async throws {
            let records = try range.map { try PreparedRecord(["id": .string("r\($0)")]) }
            _ = try await f.store.saveRecords(records, model: "Order", of: baseVariant)
        }
        do {
            for start in stride(from: 0, to: 8000, by: 1000) { try await save(start..<(start + 1000)) }
            #expect(try await estimatedRows() < 8192, "not analysed below the first threshold")
            try await save(8000..<9000)
            #expect(try await estimatedRows() >= 8192, "analysed once the dataset passed 8,192 records")
        } catch {
            try? await connection.close()
            throw error
        }
        try await connection.close()
        #expect(PostgresStore.crossesAnalyzeThreshold(from: 8000, to: 9000))
        #expect(!PostgresStore.crossesAnalyzeThreshold(from: 9000, to: 16000))
        #expect(PostgresStore.crossesAnalyzeThreshold(from: 16000, to: 17000))
        #expect(!PostgresStore.crossesAnalyzeThreshold(from: 0, to: 8191))
    }

    /// The first-load insert's refusals are remembered per run and model, and forgotten wholesale
    /// past their limit (a hint: memory stays bounded).
    @Test func refusedFirstLoadInsertsAreRememberedPerRunAndModelWithinALimit() {
        let refusals = PlainInsertRefusals()
        refusals.record(runId: 7, model: "Order")
        #expect(refusals.contains(runId: 7, model: "Order"))
        #expect(!refusals.contains(runId: 7, model: "Customer"))
        #expect(!refusals.contains(runId: 8, model: "Order"))
        for run in 0..<Int64(PlainInsertRefusals.limit) { refusals.record(runId: 1_000 + run, model: "Order") }
        #expect(!refusals.contains(runId: 7, model: "Order"), "forgotten once the limit was reached")
        #expect(refusals.contains(runId: 1_000 + Int64(PlainInsertRefusals.limit) - 1, model: "Order"))
    }
}
