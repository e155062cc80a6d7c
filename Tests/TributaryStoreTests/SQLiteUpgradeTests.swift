import Foundation
import GRDB
import Testing
import TributaryCore
@testable import TributarySQLite
import TributaryStore

/// An embedded database written by an earlier release keeps its records across an upgrade.
@Suite("SQLite upgrades")
struct SQLiteUpgradeTests {
    /// An older Tributary does not open a file a newer one migrated: it would not know the newer
    /// tables (a deletion window's seen ranges, for one) and could delete what they record.
    @Test func aFileMigratedByANewerVersionIsRefused() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-newer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("newer.sqlite").path
        do {
            let store = try SQLiteStore(path: path)
            try await store.migrate()
            try await store.pool.write { db in
                try db.execute(sql: "INSERT INTO grdb_migrations(identifier) VALUES ('v99-from-the-future')")
            }
            try store.close()
        }
        let store = try SQLiteStore(path: path)
        defer { try? store.close() }
        let error = await #expect(throws: TributaryError.self) { try await store.migrate() }
        #expect(error?.code == .storeUnavailable)
        #expect(error?.message.contains("'v99-from-the-future'") == true)
    }

    /// v8 moved payloads out of `records` into `record_payloads`: records saved before it read back
    /// unchanged, re-saving them is a no-op, and deleting a variant's records removes their payloads.
    @Test func recordsSavedBeforeThePayloadTableSurviveTheUpgrade() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-upgrade-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("old.sqlite").path
        let variant = VariantRef(connection: ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "c1"), syncName: "orders")
        let records = try (1...3).map { try PreparedRecord(["id": .string("o\($0)"), "total": .number(JSONNumber($0))]) }

        // The database as release v7 left it, records written by that release's statement.
        do {
            let old = try SQLiteStore(path: path)
            try SQLiteSchema.migrator.migrate(old.pool, upTo: "v7-run-worker")
            try await old.pool.write { db in
                try db.execute(sql: "INSERT INTO connections(environment, provider_config_key, connection_id, created_at, updated_at) VALUES ('dev', 'shop', 'c1', 1, 1)")
                try db.execute(sql: "INSERT INTO datasets(connection_pk, sync_name, model, variant, last_seq, record_count) VALUES (1, 'orders', 'Order', 'base', 1, 3)")
                for (index, record) in records.enumerated() {
                    try db.execute(
                        sql: """
                            INSERT INTO records(dataset_id, external_id, hash, seq, first_seen_at, updated_at, seen_generation, payload)
                            VALUES (1, ?, ?, 1, ?, ?, 0, ?)
                            """,
                        arguments: [record.id, Int64(bitPattern: record.hash), index + 1, index + 1, String(decoding: record.json, as: UTF8.self)])
                }
            }
            try old.close()
        }

        let store = try SQLiteStore(path: path)
        defer { try? store.close() }
        try await store.migrate()
        let page = try await store.changes(try ChangeQuery(dataset: variant.dataset("Order")))
        #expect(page.records.map(\.id) == ["o1", "o2", "o3"])
        #expect(page.records.map(\.json) == records.map(\.json))
        #expect(try await store.saveRecords(records, model: "Order", of: variant) == ModelResult(), "unchanged after the upgrade")
        let columns = try await store.pool.read { db in try db.columns(in: "records").map(\.name) }
        #expect(!columns.contains("payload"))
        _ = try await store.ensureVariant(variant)
        try await store.resetVariants([variant], emptyCache: true, queuesRuns: false)
        while try await store.purgeRecords(limit: 1) != nil {}
        #expect(try await store.pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM record_payloads") } == 0, "payloads go with their records")
    }

    /// A file the store creates has ``SQLiteStore/pageSize`` pages; a file created with SQLite's
    /// default 4 KiB pages (every release before the twelfth benchmark round) keeps them: it opens,
    /// migrates, takes records, reads them back and comes through a re-save unchanged.
    @Test func aNewFileHasTheStoresPageSizeAndAnOlderFileKeepsItsOwn() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-pages-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let variant = VariantRef(connection: ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "c1"), syncName: "orders")
        let records = try (1...500).map { try PreparedRecord(["id": .string("o\($0)"), "note": .string(String(repeating: "n", count: 300))]) }
        func pageSize(_ store: SQLiteStore) async throws -> Int? {
            try await store.pool.read { db in try Int.fetchOne(db, sql: "PRAGMA page_size") }
        }

        let newPath = directory.appendingPathComponent("new.sqlite").path
        do {
            let store = try SQLiteStore(path: newPath)
            defer { try? store.close() }
            try await store.migrate()
            #expect(try await pageSize(store) == SQLiteStore.pageSize)
            #expect(SQLiteStore.pageSize == 8192)
        }

        // A file made as SQLite makes one by default, in WAL mode: its page size can no longer change.
        let oldPath = directory.appendingPathComponent("old.sqlite").path
        do {
            let queue = try DatabaseQueue(path: oldPath)
            try await queue.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA page_size = 4096")
                _ = try String.fetchOne(db, sql: "PRAGMA journal_mode = WAL")
                try db.execute(sql: "CREATE TABLE earlier(x)")
            }
            try queue.close()
        }
        let store = try SQLiteStore(path: oldPath)
        defer { try? store.close() }
        try await store.migrate()
        #expect(try await pageSize(store) == 4096)
        #expect(try await store.saveRecords(records, model: "Order", of: variant) == ModelResult(added: 500))
        let page = try await store.changes(try ChangeQuery(dataset: variant.dataset("Order"), limit: 1000))
        #expect(page.records.map(\.json) == records.map(\.json))
        #expect(try await store.saveRecords(records, model: "Order", of: variant) == ModelResult(), "unchanged")
        #expect(try await store.pool.read { db in try String.fetchOne(db, sql: "PRAGMA integrity_check") } == "ok")
    }
}
