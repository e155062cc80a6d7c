import Foundation
import Testing
import TributaryCore
import TributaryStore
import TributaryTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// A real `tributary serve` process is killed (SIGKILL, as an OOM kill or a power cut would) at each
/// named step of a run's life — `TRIBUTARY_FAILPOINTS` makes it kill itself there. After each, the
/// store is checked: the variant is still on the schedule (an active run or a planned next run), no
/// variant has two active runs; then a new process finishes the work with every record once and none
/// falsely deleted.
@Suite("Crashes at every step of a run (child processes)")
struct FailpointProcessTests {
    static let config = """
        environments:
          dev: { secret_key: dev-secret-key-0000000001 }
        scheduler:
          lease_seconds: 2
          tick_seconds: 0.1
          drain_seconds: 0
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

    static let connection = ConnectionRef(environment: "dev", providerConfigKey: "demo-shop", connectionId: "acme")
    static let ref = VariantRef(connection: connection, syncName: "orders")

    /// A database with one connection whose base variant lists 120 orders in 12 slow pages of 10.
    func prepared(pageDelay: Int = 40) async throws -> TestStore {
        let database = try await TestStore(.sqlite)
        try Self.config.write(to: database.directory.appendingPathComponent("tributary.yaml"), atomically: true, encoding: .utf8)
        _ = try await database.store.importConnection(
            ConnectionImport(
                ref: Self.connection, metadata: ["base.page_size": 10, "base.page_delay_ms": .number(JSONNumber(pageDelay)), "base.frozen_at": "2026-11-01T00:00:00Z"],
                connectionConfig: [:], credentialsType: "NONE", sealedCredentials: nil),
            baseVariantsOf: ["orders"])
        return database
    }

    func serve(_ database: TestStore, failpoint: String? = nil) throws -> Process {
        try ServeProcessTests.launch(
            [
                "serve", "--config", database.directory.appendingPathComponent("tributary.yaml").path, "--database", database.location, "--port", "0",
                "--insecure-dev-key", "--log-level", "error",
            ], in: database.directory, environment: failpoint.map { ["TRIBUTARY_FAILPOINTS": $0] } ?? [:])
    }

    func waitForExit(_ process: Process, seconds: Double = 30) async throws {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while process.isRunning, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// The invariants after a crash, and the work finished by a second process.
    func checkAndFinish(_ database: TestStore, after step: String) async throws {
        let census = try await database.census()
        #expect(census.unscheduledVariants == 0, "\(step): the variant is still on the schedule")
        #expect(census.variantsWithSeveralActiveRuns == 0, "\(step): one active run at most")
        let second = try serve(database)
        defer { if second.isRunning { kill(second.processIdentifier, SIGKILL) } }
        var finished: RunRecord? = nil
        for _ in 0..<600 where finished == nil {
            try await Task.sleep(for: .milliseconds(50))
            if let run = try await database.store.runs(of: Self.ref, limit: 1).first, run.status == .succeeded { finished = run }
        }
        second.terminate()
        try await waitForExit(second)
        let run = try #require(finished, "\(step): the run was finished")
        #expect(run.results["Order"]?.added == 120 && run.results["Order"]?.deleted == 0, "\(step): \(run.results)")
        let live = try await database.store.allChangesForTest(Self.ref.dataset("Order"))
        #expect(live.count == 120 && Set(live.map(\.id)).count == 120, "\(step): every order once")
        #expect(live.allSatisfy { $0.deletedAt == nil }, "\(step): nothing falsely deleted")
        let after = try await database.census()
        #expect(after.unscheduledVariants == 0 && after.variantsWithSeveralActiveRuns == 0, "\(step): still scheduled after the second process")
        #expect(try await database.store.variantState(Self.ref)?.nextRunAt != nil, "\(step): the next run is planned")
    }

    @Test(arguments: ["run.claimed", "run.saved", "run.before-complete", "run.completed"])
    func aProcessKilledAtAStepOfARunLosesNothing(_ step: String) async throws {
        try #require(FileManager.default.isExecutableFile(atPath: ServeProcessTests.binary.path), "build the tributary product first")
        let database = try await prepared()
        let first = try serve(database, failpoint: step)
        try await waitForExit(first)
        #expect(first.terminationReason == .uncaughtSignal && first.terminationStatus == SIGKILL, "\(step): the process killed itself there")
        let run = try #require(try await database.store.runs(of: Self.ref, limit: 1).first)
        if step == "run.completed" {
            #expect(run.status == .succeeded, "the outcome was recorded before the crash")
            let next = try #require(try await database.store.variantState(Self.ref)?.nextRunAt, "with the next run, in the same transaction")
            #expect(next.microseconds > Timestamp.now().microseconds + 3_000_000_000)
            let census = try await database.census()
            #expect(census.unscheduledVariants == 0 && census.variantsWithSeveralActiveRuns == 0)
        } else {
            #expect(run.status == .running && run.attempts == 1, "\(step): a killed process records nothing")
            try await checkAndFinish(database, after: step)
            #expect(try await database.store.runs(of: Self.ref, limit: 5).count == 1, "\(step): resumed, not run twice")
        }
    }

    @Test(arguments: ["shutdown.before-release", "shutdown.released"])
    func aProcessKilledWhileItQueuesItsRunAgainOnShutdownLosesNothing(_ step: String) async throws {
        try #require(FileManager.default.isExecutableFile(atPath: ServeProcessTests.binary.path), "build the tributary product first")
        // Slow pages (12 × 250 ms): the run is still under way when the SIGTERM comes.
        let database = try await prepared(pageDelay: 250)
        let first = try serve(database, failpoint: step)
        defer { if first.isRunning { kill(first.processIdentifier, SIGKILL) } }
        var page: Int64 = 0
        for _ in 0..<400 where page < 2 {
            try await Task.sleep(for: .milliseconds(25))
            page = try await database.store.variantState(Self.ref)?.checkpoint?["page"]?.int64Value ?? 0
        }
        try #require(page >= 2, "the run is under way")
        first.terminate()  // SIGTERM: drain_seconds 0, so the run is stopped and queued again at once
        try await waitForExit(first)
        #expect(first.terminationReason == .uncaughtSignal && first.terminationStatus == SIGKILL, "\(step): killed there")
        let run = try #require(try await database.store.runs(of: Self.ref, limit: 1).first)
        #expect(run.status == (step == "shutdown.released" ? .queued : .running), "\(step): \(run.status)")
        try await checkAndFinish(database, after: step)
    }

    /// A graceful stop queues the running run again within `drain_seconds`: the next process resumes it at once.
    @Test func sigtermQueuesTheRunningRunAgainAtOnce() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: ServeProcessTests.binary.path), "build the tributary product first")
        let database = try await prepared(pageDelay: 250)
        let first = try serve(database)
        defer { if first.isRunning { kill(first.processIdentifier, SIGKILL) } }
        var page: Int64 = 0
        for _ in 0..<400 where page < 2 {
            try await Task.sleep(for: .milliseconds(25))
            page = try await database.store.variantState(Self.ref)?.checkpoint?["page"]?.int64Value ?? 0
        }
        try #require(page >= 2, "the run is under way")
        let asked = ContinuousClock.now
        first.terminate()
        try await waitForExit(first)
        #expect(ContinuousClock.now - asked < .seconds(5), "stopped within drain_seconds plus a little")
        #expect(first.terminationReason == .exit && first.terminationStatus == 0)
        let run = try #require(try await database.store.runs(of: Self.ref, limit: 1).first)
        #expect(run.status == .queued && run.attempts == 1, "queued again by the shutdown, not left to its lease")
        #expect(try await database.store.logs(ofRun: run.id, limit: 50).contains { $0.message.contains("stopped by a shutdown") })
        try await checkAndFinish(database, after: "SIGTERM")
    }
}

extension Store {
    /// Every record of a dataset in feed order.
    func allChangesForTest(_ dataset: DatasetRef) async throws -> [StoredRecord] {
        var all: [StoredRecord] = []
        var cursor: FeedCursor? = nil
        repeat {
            let page = try await changes(try ChangeQuery(dataset: dataset, cursor: cursor, limit: 50))
            all += page.records
            cursor = page.nextCursor
        } while cursor != nil
        return all
    }
}
