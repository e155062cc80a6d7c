import Foundation
import Testing
import TributaryCore
import TributarySQLite
import TributaryStore

#if canImport(Glibc)
import Glibc
#endif

/// A `tributary serve` process is SIGKILLed in the middle of a full-refresh run; a second process on
/// the same database takes the variant over when the lease runs out, resumes from the checkpoint,
/// and the cache ends exactly right: every record once, nothing lost, nothing falsely deleted.
@Suite("Crash and resume (child processes)")
struct CrashResumeProcessTests {
    static let config = """
        environments:
          dev: { secret_key: dev-secret-key-0000000001 }
        scheduler:
          lease_seconds: 2
          tick_seconds: 0.1
        integrations:
          demo-shop:
            syncs:
              orders:
                function: demo-orders
                models: [Order]
                frequency: every hour
                sync_type: full
                track_deletes: true
        """

    func startServer(directory: URL, database: String) throws -> Process {
        try ServeProcessTests.launch(
            [
                "serve", "--config", directory.appendingPathComponent("tributary.yaml").path, "--database", database, "--port", "0",
                "--insecure-dev-key", "--log-level", "error",
            ], in: directory)
    }

    @Test func aKilledRunIsResumedByTheNextProcessWithoutLossOrFalseDeletes() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: ServeProcessTests.binary.path), "build the tributary product first")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-crash-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try Self.config.write(to: directory.appendingPathComponent("tributary.yaml"), atomically: true, encoding: .utf8)
        let database = directory.appendingPathComponent("crash.sqlite").path

        // A connection whose base variant lists 120 orders in 12 pages of 10, slowly, from a frozen shop.
        let store = try SQLiteStore(path: database)
        try await store.migrate()
        let connection = ConnectionRef(environment: "dev", providerConfigKey: "demo-shop", connectionId: "acme")
        _ = try await store.importConnection(
            ConnectionImport(
                ref: connection, metadata: ["base.page_size": 10, "base.page_delay_ms": 150, "base.frozen_at": "2026-11-01T00:00:00Z"],
                connectionConfig: [:], credentialsType: "NONE", sealedCredentials: nil),
            baseVariantsOf: ["orders"])
        let ref = VariantRef(connection: connection, syncName: "orders")

        // First process: let it get a few pages in, then SIGKILL it.
        let first = try startServer(directory: directory, database: database)
        defer { if first.isRunning { kill(first.processIdentifier, SIGKILL) } }
        var pages: Int64 = 0
        for _ in 0..<400 where pages < 4 {
            try await Task.sleep(for: .milliseconds(25))
            pages = try await store.variantState(ref)?.checkpoint?["page"]?.int64Value ?? 0
        }
        try #require(pages >= 4, "the first process made progress")
        kill(first.processIdentifier, SIGKILL)
        first.waitUntilExit()
        #expect(first.terminationReason == .uncaughtSignal)
        let interrupted = try #require(try await store.runs(of: ref, limit: 1).first)
        #expect(interrupted.status == .running, "a killed process cannot record anything")
        let savedBeforeCrash = try await store.recordCounts(of: ref)["Order"] ?? 0
        #expect(savedBeforeCrash >= 40 && savedBeforeCrash < 120)

        // Second process: takes over when the lease runs out and finishes the run.
        let second = try startServer(directory: directory, database: database)
        defer { if second.isRunning { second.terminate() } }
        var finished: RunRecord? = nil
        for _ in 0..<600 where finished == nil {
            try await Task.sleep(for: .milliseconds(50))
            if let latest = try await store.runs(of: ref, limit: 1).first, latest.status.isFinished { finished = latest }
        }
        second.terminate()
        second.waitUntilExit()
        let resumed = try #require(finished, "the second process finished the run")
        #expect(resumed.status == .succeeded)
        // The same run, resumed as its second attempt: it keeps its first start, and its counts add up
        // what both processes saved (each save counted in its own transaction).
        #expect(resumed.id == interrupted.id && resumed.attempts == 2)
        #expect(resumed.startedAt == interrupted.startedAt)
        #expect(try await store.variantState(ref)?.lastSyncDate == interrupted.startedAt, "lastSyncDate is the first attempt's start")
        #expect(resumed.results["Order"] == ModelResult(added: 120), "every order added once, across both attempts")
        let logs = try await store.logs(ofRun: resumed.id, limit: 50).map(\.message)
        #expect(logs.contains { $0.hasPrefix("resuming at page ") }, "\(logs)")

        // The change feed: every order exactly once, all ADDED, none deleted.
        var records: [StoredRecord] = []
        var cursor: FeedCursor? = nil
        repeat {
            let page = try await store.changes(try ChangeQuery(dataset: ref.dataset("Order"), cursor: cursor, limit: 50))
            records += page.records
            cursor = page.nextCursor
        } while cursor != nil
        #expect(records.count == 120)
        #expect(Set(records.map(\.id)).count == 120)
        #expect(records.allSatisfy { $0.action == .added && $0.deletedAt == nil })
        #expect(try await store.recordCounts(of: ref) == ["Order": 120])
        #expect(try await store.variantState(ref)?.checkpoint == nil, "the finished full refresh cleared its checkpoint")
        try store.close()
    }
}
