import Foundation
import Testing
import TributaryCore
import TributaryStore
@testable import TributarySQLite

/// The SQLite store's write-ahead log is copied into the database file by a checkpointer beside the
/// writer, and stays bounded through a bulk load.
@Suite("SQLite WAL checkpoints beside the writer")
struct WALCheckpointTests {
    static func fileSize(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? 0
    }

    @Test func theLogIsCheckpointedBesideTheWriterAndStaysBounded() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("wal-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("cache.sqlite").path
        let store = try SQLiteStore(path: path)
        try await store.migrate()
        let variant = VariantRef(connection: ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "c1"), syncName: "orders")
        _ = try await store.ensureConnection(variant.connection)

        // Pages of 1,000 records of about a database page each: each commit adds over 1,000 pages to the log.
        let filler = String(repeating: "x", count: SQLiteStore.pageSize - 96)
        func page(_ number: Int) throws -> [PreparedRecord] {
            try (0..<1_000).map { try PreparedRecord(["id": .string("o\(number)-\($0)"), "note": .string(filler)]) }
        }
        _ = try await store.saveRecords(try page(0), model: "Order", of: variant)
        let deadline = ContinuousClock.now + .seconds(20)
        while store.checkpointer.checkpointsRun == 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(store.checkpointer.checkpointsRun > 0, "the commit that filled the log started a checkpoint beside the writer")
        #expect(Self.fileSize(path) > 4_000_000, "the first page's records were copied into the database file")

        // Sixteen thousand pages more: without checkpoints the log would hold all of them.
        var largestLog = 0
        for number in 1...16 {
            _ = try await store.saveRecords(try page(number), model: "Order", of: variant)
            largestLog = max(largestLog, Self.fileSize(path + "-wal"))
        }
        let bound = (2 * Int(WALCheckpointer.writerCheckpointPages) + 2 * 1_200) * (SQLiteStore.pageSize + 24)
        #expect(largestLog > 0 && largestLog <= bound, "the log stayed within twice the writer's limit plus a commit (\(largestLog) bytes)")
        #expect(try await store.recordCounts(of: variant)["Order"] == 17_000)

        // One transaction larger than the writer's bound, with no checkpoint under way (the log
        // emptied first): the checkpointer copies it, the writer does not stop for it.
        let deadline2 = ContinuousClock.now + .seconds(20)
        while store.checkpointer.isCheckpointing, ContinuousClock.now < deadline2 { try await Task.sleep(for: .milliseconds(20)) }
        _ = try await store.pool.writeWithoutTransaction { try $0.checkpoint(.truncate) }
        #expect(Self.fileSize(path + "-wal") == 0)
        let (before, writerBefore) = (store.checkpointer.checkpointsRun, store.checkpointer.writerCheckpoints)
        let large = try (17..<23).flatMap { try page($0) }  // over 6,000 log pages in one commit
        try await store.inRun(of: variant) { lease in
            _ = try await store.saveRecords(large, model: "Order", checkpoint: nil, for: lease)
            // (The run's completion, a commit while that checkpoint is under way with the log past
            // the bound, may well be checkpointed by the writer.)
            #expect(store.checkpointer.writerCheckpoints == writerBefore, "the writer did not checkpoint the large commit itself")
        }
        while store.checkpointer.checkpointsRun == before, ContinuousClock.now < deadline2 { try await Task.sleep(for: .milliseconds(20)) }
        #expect(store.checkpointer.checkpointsRun > before, "the checkpointer copied it")
        #expect(try await store.recordCounts(of: variant)["Order"] == 23_000)

        // The log restarts at the next commit, and its file, larger than 32 MiB but within the
        // limit, is written over from its start rather than cut back (and grown again later).
        let deadline3 = ContinuousClock.now + .seconds(20)
        while store.checkpointer.isCheckpointing, ContinuousClock.now < deadline3 { try await Task.sleep(for: .milliseconds(20)) }
        try #require(!store.checkpointer.isCheckpointing, "the checkpointer is idle")
        _ = try await store.pool.writeWithoutTransaction { try $0.checkpoint(.passive) }
        let grown = Self.fileSize(path + "-wal")
        #expect(grown > 40 << 20, "the large commit grew the log file (\(grown) bytes)")
        _ = try await store.saveRecords(try page(23), model: "Order", of: variant)
        #expect(Self.fileSize(path + "-wal") == grown, "the log file was kept at its size when the log restarted")
        let limit = try await store.pool.write { try Int.fetchOne($0, sql: "PRAGMA journal_size_limit") }
        #expect(limit == WALCheckpointer.logFileLimit, "a larger file is cut back to the limit")
        try store.close()

        // Everything is in the database: opened again, every record is there.
        // (The rule that bounds the log whatever the timing is checked below, without I/O.)
        let reopened = try SQLiteStore(path: path)
        #expect(try await reopened.recordCounts(of: variant)["Order"] == 24_000)
        try reopened.close()
    }

    /// Which commits the writer leaves to the checkpointer, by the log's size after them: the log
    /// cannot grow past twice the writer's bound (plus the commit that crossed it), however the
    /// commits and the checkpoints interleave.
    @Test func theWriterLeavesALogToTheCheckpointerOnlyWithinTwiceItsBound() {
        let bound = WALCheckpointer.writerCheckpointPages
        func decide(_ pages: Int32, idle: Bool) -> (leaves: Bool, asked: Int) {
            var asked = 0
            let leaves = WALCheckpointer.leavesToCheckpointer(pages: pages) {
                asked += 1
                return idle
            }
            return (leaves, asked)
        }
        // Below the bound: left to the checkpointer, one started if it is idle.
        #expect(decide(1_500, idle: true) == (true, 1))
        #expect(decide(bound - 1, idle: false) == (true, 1))
        // Past it: left only to an idle checkpointer (one large commit).
        #expect(decide(bound, idle: true) == (true, 1))
        #expect(decide(bound + 100, idle: false) == (false, 1))
        // Past twice the bound: the writer, without starting one.
        #expect(decide(2 * bound, idle: true) == (false, 0))
        #expect(decide(6 * bound, idle: true) == (false, 0))
        // Commits that each find the checkpointer idle again (it finished, but the log could not
        // restart) reach the writer once the log is twice the bound.
        var log: Int32 = 0
        var writerCheckpointed = false
        for _ in 0..<10 where !writerCheckpointed {
            log += 3_000
            if log >= WALCheckpointer.checkpointPages { writerCheckpointed = !decide(log, idle: true).leaves }
        }
        #expect(writerCheckpointed && log < 2 * bound + 3_000)
    }
}
