import Foundation
import Synchronization
import Testing
import TributaryCore
import TributarySQLite
import TributaryStore
import TributaryTestSupport

@Suite("SQLite online backup")
struct SQLiteBackupTests {
    /// The copy is taken while another task keeps writing pages of records: it opens as a store, passes
    /// SQLite's integrity check, and its change feed holds exactly its records — a snapshot between two
    /// writes, never half of one.
    @Test func aBackupTakenDuringWritesIsAConsistentStore() async throws {
        let f = try await StoreFixture(.sqlite)
        let store = try #require(f.store as? SQLiteStore)
        try await f.store.ensureVariant(baseVariant)
        _ = try await f.store.saveRecords((0..<500).map { order("seed-\($0)") }, model: "Order", of: baseVariant)
        let writing = Atomic<Bool>(true)
        let pagesWritten = Atomic<Int>(0)
        let writer = Task {
            var page = 0
            while writing.load(ordering: .relaxed) {
                _ = try await f.store.saveRecords((0..<200).map { order("p\(page)-\($0)", ["n": .number(JSONNumber(page))]) }, model: "Order", of: baseVariant)
                page += 1
                pagesWritten.store(page, ordering: .relaxed)
            }
        }
        try await eventuallyTrue { pagesWritten.load(ordering: .relaxed) >= 3 }
        let destination = f.directory.appendingPathComponent("copy.sqlite").path
        let summary = try store.backup(to: destination)
        writing.store(false, ordering: .relaxed)
        try await writer.value
        let copied = try #require(summary.counts["records"])
        #expect(copied >= 500 + 3 * 200 && (copied - 500) % 200 == 0, "whole pages only: \(copied)")
        #expect(summary.counts["sync_variants"] == 1)
        #expect(summary.bytes > 0)

        let copy = try SQLiteStore(path: destination)
        try await copy.migrate()
        let feed = try await copy.allChanges(baseVariant.dataset("Order"))
        #expect(feed.count == copied, "every record of the copy is in its feed, in order")
        #expect(Set(feed.map(\.id)).count == copied)
        try copy.close()

        // Private to its owner (credentials, customers' records), and no partial file left behind.
        let mode = try #require(try FileManager.default.attributesOfItem(atPath: destination)[.posixPermissions] as? NSNumber)
        #expect(mode.intValue & 0o777 == 0o600)
        let left = try FileManager.default.contentsOfDirectory(atPath: f.directory.path).filter { $0.contains(".partial-") }
        #expect(left.isEmpty, "\(left)")
        // Never over an existing file.
        #expect(throws: TributaryError.self) { try store.backup(to: destination) }
    }

    func eventuallyTrue(_ condition: @Sendable () -> Bool) async throws {
        for _ in 0..<2000 where !condition() { try await Task.sleep(for: .milliseconds(5)) }
        #expect(condition())
    }
}
