import Foundation
import Logging
import Testing
import TributaryCLI
import TributaryCore
import TributaryPostgres
import TributarySQLite
import TributaryStore
import TributaryTestSupport

/// `tributary migrate` in process: what a SQLite store holds beyond records (checkpoints, credentials,
/// logs, action executions) arrives intact, an interrupted copy resumes, and the refusals hold.
@Suite("tributary migrate (in process)", .enabled(if: StoreKind.postgresURL != nil))
struct MigrateTests {
    static let config = """
        environments:
          dev:
            secret_key: dev-key-0123456789abcdef
        integrations:
          shop:
            syncs:
              orders:
                function: numbers
                models: [Order]
                frequency: 1h
        """

    /// A SQLite store with a bit of everything: records, one deleted; a checkpoint; a log line;
    /// metadata; a paused variant.
    func filledStore(at path: String) async throws -> SQLiteStore {
        let store = try SQLiteStore(path: path)
        try await store.migrate()
        let base = VariantRef(connection: ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "c1"), syncName: "orders")
        let eu = VariantRef(connection: base.connection, syncName: "orders", variant: "eu")
        try await store.ensureVariant(base)
        try await store.ensureVariant(eu)
        try await store.inRun(of: base) { lease in
            _ = try await store.saveRecords((0..<25).map { try! PreparedRecord(["id": .string("o\($0)"), "total": .number(JSONNumber($0))]) }, model: "Order", for: lease)
            _ = try await store.deleteRecords(ids: ["o3"], model: "Order", for: lease)
            try await store.saveCheckpoint(try Checkpoint(["page": 7, "after": "o24"]), for: lease)
            try await store.appendLog(lease, level: .warn, message: "halfway <there>")
            try await store.setMetadata(["region": "eu", "nested": ["a": [1, 2]]], for: lease)
        }
        try await store.setPaused(true, for: [eu])
        // A variant deleted with its run and dataset: their ids are the highest ever handed out.
        let gone = VariantRef(connection: base.connection, syncName: "orders", variant: "gone")
        try await store.ensureVariant(gone)
        try await store.inRun(of: gone) { lease in _ = try await store.saveRecords([try! PreparedRecord(["id": "x"])], model: "Order", for: lease) }
        _ = try await store.deleteVariant(gone)
        return store
    }

    func run(_ arguments: [String]) async throws -> String {
        let lines = Lines()
        try await TributaryCLI.run(functions: [], arguments: ["migrate"] + arguments, output: lines.output)
        return lines.text
    }

    @Test func everythingArrivesAndAnInterruptedCopyResumes() async throws {
        let target = try await TestStore(.postgres)
        let path = target.directory.appendingPathComponent("source.sqlite").path
        let source = try await filledStore(at: path)
        let base = VariantRef(connection: ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "c1"), syncName: "orders")
        let sourceFeed = try await source.changes(try ChangeQuery(dataset: base.dataset("Order"), limit: 100))
        let sourceState = try #require(try await source.variantState(base))
        try source.close()

        // An interrupted copy: bookkeeping begun, the first tables copied, `records` half way.
        let postgres = PostgresStore(url: try PostgresURL(target.location), maximumConnections: 2, logger: Logger(label: "test"))
        let file = try SQLiteStore(path: path)
        let reader = try file.copySnapshot()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await postgres.run() }
            defer { group.cancelAll() }
            try await postgres.beginCopy(source: URL(fileURLWithPath: path).standardizedFileURL.path, fingerprint: try await reader.copyFingerprint())
            for table in CopyTable.all.prefix(4) {
                let names = try await reader.copyColumns(table)
                let columns = try await postgres.copyColumnTypes(table).filter { names.contains($0.name) }
                let rows = try await reader.copyRows(table, columns: columns.map(\.name), after: nil, limit: 10_000)
                try await postgres.importRows(table, columns: columns, rows: rows, done: true)
            }
            let records = CopyTable.all[4]
            let names = try await reader.copyColumns(records)
            let columns = try await postgres.copyColumnTypes(records).filter { names.contains($0.name) }
            try await postgres.importRows(records, columns: columns, rows: try await reader.copyRows(records, columns: columns.map(\.name), after: nil, limit: 10), done: false)
        }
        try file.close()

        let output = try await run(["--from", path, "--to", target.location, "--verify", "--batch", "7"])
        #expect(output.contains("resuming the interrupted copy"), "\(output)")
        // 26 records (25, and the deleted variant's one awaiting its purge): the ten copied before are not copied again.
        #expect(output.contains("  records: 16 rows"), "\(output)")
        #expect(output.contains("verified: every table has the same rows on both sides"))

        // Read back through the PostgreSQL store itself.
        let store = target.store
        let feed = try await store.changes(try ChangeQuery(dataset: base.dataset("Order"), limit: 100))
        #expect(feed.records == sourceFeed.records, "the same records, payloads, times, deletions and cursors")
        let state = try #require(try await store.variantState(base))
        #expect(state.checkpoint == sourceState.checkpoint && state.checkpoint != nil)
        #expect(state.nextRunAt == sourceState.nextRunAt && state.id == sourceState.id)
        #expect(try await store.metadata(of: base.connection) == ["region": "eu", "nested": ["a": [1, 2]]])
        #expect(try await store.variantState(VariantRef(connection: base.connection, syncName: "orders", variant: "eu"))?.paused == true)
        let run = try #require(try await store.runs(of: base, limit: 1).first)
        #expect(try await store.logs(ofRun: run.id, limit: 10).map(\.message) == ["halfway <there>"])
        // New rows after the copy get new ids, past every id SQLite ever handed out (the deleted
        // variant's run and dataset included): none is reused.
        let later = try await store.startRun(base, RunStart(tracksDeletes: false))
        #expect(later.runId > run.id + 1, "the deleted variant's run id is not handed out again")
        let fresh = VariantRef(connection: base.connection, syncName: "orders", variant: "fresh")
        try await store.ensureVariant(fresh)
        _ = try await store.completeRun(later.lease, RunCompletion(outcome: .succeeded))
        try await store.inRun(of: fresh) { lease in _ = try await store.saveRecords([try! PreparedRecord(["id": "y"])], model: "Order", for: lease) }
        #expect(try await store.changes(try ChangeQuery(dataset: fresh.dataset("Order"), limit: 10)).records.map(\.id) == ["y"], "a new dataset sees only its own records")
    }

    @Test func refusesATargetWithOtherDataAndASourceThatChanged() async throws {
        let target = try await TestStore(.postgres)
        let path = target.directory.appendingPathComponent("source.sqlite").path
        try await filledStore(at: path).close()
        // A target with data of its own.
        _ = try await target.store.ensureConnection(ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "theirs"))
        await #expect { try await run(["--from", path, "--to", target.location]) } throws: { "\($0)".contains("already holds Tributary data") }

        // A copy interrupted, then the source served again (changed): refused rather than mixed.
        let clean = try await TestStore(.postgres)
        let postgres = PostgresStore(url: try PostgresURL(clean.location), maximumConnections: 2, logger: Logger(label: "test"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await postgres.run() }
            defer { group.cancelAll() }
            try await postgres.beginCopy(source: URL(fileURLWithPath: path).standardizedFileURL.path, fingerprint: "an older fingerprint")
        }
        await #expect { try await run(["--from", path, "--to", clean.location]) } throws: { "\($0)".contains("changed since the interrupted copy") }
        // Nor is a half-filled database served from.
        await #expect { try await PostgresStore(url: try PostgresURL(clean.location), logger: Logger(label: "test")).migrate() } throws: {
            "\($0)".contains("being filled by `tributary migrate`")
        }
        // A SQLite file that is not a Tributary store is left alone.
        let other = target.directory.appendingPathComponent("other.sqlite").path
        _ = FileManager.default.createFile(atPath: other, contents: nil)
        await #expect { try await run(["--from", other, "--to", clean.location]) } throws: { "\($0)".contains("not a Tributary store") }
        #expect((try FileManager.default.attributesOfItem(atPath: other)[.size] as? NSNumber)?.intValue == 0, "nothing was written to it")
        await #expect { try await run(["--from", target.directory.appendingPathComponent("missing.sqlite").path, "--to", clean.location]) } throws: {
            "\($0)".contains("no SQLite store")
        }
        await #expect { try await run(["--from", path, "--to", "mysql://nope"]) } throws: { "\($0)".contains("--to") }
    }
}
