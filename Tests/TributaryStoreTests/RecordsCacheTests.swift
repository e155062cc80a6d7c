import Foundation
import Testing
import TributaryCore
@testable import TributaryPostgres
import TributarySQLite
import TributaryStore
import TributaryTestSupport

@Suite("Records cache semantics (SQLite and PostgreSQL)")
struct RecordsCacheTests {
    @Test(arguments: StoreKind.available) func newRecordsAreAddedWithMetadata(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        let result = try await f.store.saveRecords([order("1", ["total": 10]), order("2")], model: "Order", of: baseVariant)
        #expect(result == ModelResult(added: 2))
        let records = try await f.store.allChanges(baseVariant.dataset("Order"))
        #expect(records.map(\.id) == ["1", "2"])
        let first = try #require(records.first)
        #expect(first.action == .added)
        #expect(first.deletedAt == nil)
        #expect(first.firstSeenAt == first.lastModifiedAt)
        let rendered = try JSONParser.parse(first.renderedJSON())
        #expect(rendered["id"] == "1")
        #expect(rendered["total"] == 10)
        let metadata = try #require(rendered["_nango_metadata"]?.objectValue)
        #expect(metadata["last_action"] == "ADDED")
        #expect(metadata["deleted_at"] == .null)
        #expect(metadata["cursor"]?.stringValue == first.cursor.encoded)
        #expect(metadata["first_seen_at"]?.stringValue?.hasSuffix("+00:00") == true)
        #expect(try await f.store.recordCounts(of: baseVariant) == ["Order": 2])
    }

    /// Ids are compared by their bytes, as the database compares them: `é` and `e` + a combining
    /// accent, one `String` to Swift, are two records, also within one page; a true duplicate in a
    /// page is one record (the last version).
    @Test(arguments: StoreKind.available) func idsThatAreOnlyCanonicallyEquivalentAreTwoRecords(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        let page = [order("\u{e9}", ["v": 1]), order("e\u{301}", ["v": 2]), order("\u{e9}", ["v": 3])]
        #expect(try await f.store.saveRecords(page, model: "Order", of: baseVariant) == ModelResult(added: 2))
        let records = try await f.store.allChanges(baseVariant.dataset("Order"))
        #expect(records.map { Array($0.id.utf8) }.sorted { $0.lexicographicallyPrecedes($1) } == [Array("e\u{301}".utf8), Array("\u{e9}".utf8)])
        #expect(try records.first { Array($0.id.utf8) == Array("\u{e9}".utf8) }.map { try JSONParser.parse($0.json)["v"] } == 3)
        #expect(try await f.store.saveRecords([order("e\u{301}", ["v": 2])], model: "Order", of: baseVariant) == ModelResult(), "unchanged")
        // Patches find each its own record.
        let patches = [try RecordPatch(["id": "\u{e9}", "p": "composed"]), try RecordPatch(["id": "e\u{301}", "p": "decomposed"])]
        #expect(try await f.store.updateRecords(patches, model: "Order", of: baseVariant) == ModelResult(updated: 2))
        let patched = try await f.store.allChanges(baseVariant.dataset("Order"))
        for (id, expected) in [("\u{e9}", ("composed", 3)), ("e\u{301}", ("decomposed", 2))] {
            let record = try #require(patched.first { Array($0.id.utf8) == Array(id.utf8) })
            let json = try JSONParser.parse(record.json)
            #expect(json["p"]?.stringValue == expected.0 && json["v"] == .number(JSONNumber(expected.1)), "\(Array(id.utf8))")
            #expect(json["id"]?.stringValue.map { Array($0.utf8) } == Array(id.utf8))
        }
    }

    /// A payload is stored as the canonical text its hash was computed from: a NUL in a string and
    /// every number form come back exactly, and a patch that changes nothing is not an update.
    @Test(arguments: StoreKind.available) func payloadsRoundTripExactlyNulAndNumberFormsIncluded(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        let odd = try PreparedRecord(try JSONParser.parse(Array(#"{"id":"1","note":"a\u0000b","big":1e2,"precise":1.50,"n":-0}"#.utf8)).objectValue ?? [:])
        #expect(try await f.store.saveRecords([odd, order("2")], model: "Order", of: baseVariant) == ModelResult(added: 2), "one bad byte fails no batch")
        let stored = try #require(try await f.store.allChanges(baseVariant.dataset("Order")).first { $0.id == "1" })
        #expect(stored.json == odd.json, "the canonical bytes, as hashed")
        #expect(try JSONParser.parse(stored.json)["note"] == "a\u{0}b")
        #expect(try await f.store.updateRecords([try RecordPatch(["id": "1", "precise": try JSONParser.parse(Array("1.50".utf8))])], model: "Order", of: baseVariant) == ModelResult())
        #expect(try await f.store.saveRecords([odd], model: "Order", of: baseVariant) == ModelResult(), "saving it again is a no-op")
    }

    @Test(arguments: StoreKind.available) func savingIdenticalDataIsANoOpWithoutCursorBump(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        _ = try await f.store.saveRecords([order("1", ["a": 1]), order("2", ["a": 2])], model: "Order", of: baseVariant)
        let before = try await f.store.allChanges(baseVariant.dataset("Order"))
        // Same content, keys in another order: still identical.
        let reordered = try PreparedRecord(["a": 1, "id": "1"])
        let result = try await f.store.saveRecords([reordered, order("2", ["a": 2])], model: "Order", of: baseVariant)
        #expect(result == ModelResult())
        let after = try await f.store.allChanges(baseVariant.dataset("Order"))
        #expect(after == before)
        // A reader at the end of the feed sees nothing new.
        let tail = try await f.store.changes(try ChangeQuery(dataset: baseVariant.dataset("Order"), cursor: before.last?.cursor))
        #expect(tail.records.isEmpty)
    }

    @Test(arguments: StoreKind.available) func changedRecordIsUpdatedAndMovesToTheEndOfTheFeed(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        _ = try await f.store.saveRecords([order("1", ["a": 1]), order("2", ["a": 2])], model: "Order", of: baseVariant)
        let before = try await f.store.allChanges(baseVariant.dataset("Order"))
        let result = try await f.store.saveRecords([order("1", ["a": 100])], model: "Order", of: baseVariant)
        #expect(result == ModelResult(updated: 1))
        let tail = try await f.store.changes(try ChangeQuery(dataset: baseVariant.dataset("Order"), cursor: before.last?.cursor))
        #expect(tail.records.map(\.id) == ["1"])
        let updated = try #require(tail.records.first)
        #expect(updated.action == .updated)
        #expect(updated.firstSeenAt == before[0].firstSeenAt)
        #expect(updated.lastModifiedAt > updated.firstSeenAt)
        #expect(try JSONParser.parse(updated.json)["a"] == 100)
    }

    /// A page saved again meets each record's own row, whatever order it comes in and whatever rows
    /// of other datasets lie between (SQLite reads the rows after a lookup ahead, in the rows' order,
    /// and must not take a neighbour's row for a record's).
    @Test(arguments: StoreKind.available) func aPageSavedAgainMeetsEachRecordsOwnRow(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        // Rows interleaved: A's n, then B's n + 1 holding what A's n + 1 will hold once it changes.
        for n in 1...6 {
            _ = try await f.store.saveRecords([order("\(n)", ["v": .number(JSONNumber(n))])], model: "A", of: baseVariant)
            _ = try await f.store.saveRecords([order("\(n + 1)", ["v": .number(JSONNumber(100 + n + 1))])], model: "B", of: baseVariant)
        }
        let changedA = (1...6).map { order("\($0)", ["v": .number(JSONNumber(100 + $0))]) }
        #expect(try await f.store.saveRecords(changedA, model: "A", of: baseVariant) == ModelResult(updated: 6))
        #expect(try await f.store.saveRecords(changedA.reversed(), model: "A", of: baseVariant) == ModelResult(), "unchanged, reversed")
        let b = try await f.store.allChanges(baseVariant.dataset("B"))
        #expect(b.map(\.id) == (2...7).map { "\($0)" } && b.allSatisfy { $0.action == .added }, "B is untouched")

        // One page written in one go, saved again in its order with changes, a returning record and a new one.
        let first = (1...40).map { order("c\($0)", ["v": .number(JSONNumber($0))]) }
        #expect(try await f.store.saveRecords(first, model: "C", of: baseVariant) == ModelResult(added: 40))
        #expect(try await f.store.deleteRecords(ids: ["c20"], model: "C", of: baseVariant) == ModelResult(deleted: 1))
        var again = first
        for n in [2, 3, 17, 39] { again[n - 1] = order("c\(n)", ["v": .number(JSONNumber(-n))]) }
        again.insert(order("c-new", ["v": 0]), at: 30)
        #expect(try await f.store.saveRecords(again, model: "C", of: baseVariant) == ModelResult(added: 2, updated: 4))
        let c = try await f.store.allChanges(baseVariant.dataset("C"))
        #expect(c.count == 41)
        for record in c {
            let expected = try #require(again.first { $0.id == record.id })
            #expect(record.json == expected.json, "\(record.id) holds its own content")
            #expect(record.deletedAt == nil)
        }
        // The feed's tail: exactly the records this save changed, in the order of their rows.
        #expect(c.suffix(6).map(\.id) == ["c2", "c3", "c17", "c20", "c39", "c-new"])
        #expect(try await f.store.saveRecords(again, model: "C", of: baseVariant) == ModelResult(), "and then unchanged")

        // The row after X's is "e" + a combining accent: one String with "é" to Swift, another id to
        // the database. Saving X and a changed "é" must not take that row for "é"'s.
        for id in ["x", "e\u{301}", "\u{e9}"] { _ = try await f.store.saveRecords([order(id, ["v": 1])], model: "D", of: baseVariant) }
        #expect(try await f.store.saveRecords([order("x", ["v": 1]), order("\u{e9}", ["v": 2])], model: "D", of: baseVariant) == ModelResult(updated: 1))
        let d = try await f.store.allChanges(baseVariant.dataset("D"))
        let decomposed = try #require(d.first { Array($0.id.utf8) == Array("e\u{301}".utf8) })
        #expect(decomposed.action == .added)
        #expect(try JSONParser.parse(decomposed.json)["v"] == 1, "untouched")
        #expect(try d.first { Array($0.id.utf8) == Array("\u{e9}".utf8) }.map { try JSONParser.parse($0.json)["v"] } == 2)
    }

    @Test(arguments: StoreKind.available) func deletedRecordThatReturnsReadsAsAdded(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        _ = try await f.store.saveRecords([order("1", ["a": 1])], model: "Order", of: baseVariant)
        let deleted = try await f.store.deleteRecords(ids: ["1", "missing"], model: "Order", of: baseVariant)
        #expect(deleted == ModelResult(deleted: 1))
        var records = try await f.store.allChanges(baseVariant.dataset("Order"))
        #expect(records.first?.action == .deleted)
        #expect(records.first?.deletedAt != nil)
        #expect(try JSONParser.parse(records[0].json)["a"] == 1, "a deleted record keeps its last payload")
        #expect(try await f.store.recordCounts(of: baseVariant) == ["Order": 0])
        // Deleting again changes nothing.
        #expect(try await f.store.deleteRecords(ids: ["1"], model: "Order", of: baseVariant) == ModelResult())
        // Same data saved again: back as ADDED, first_seen_at reset.
        let back = try await f.store.saveRecords([order("1", ["a": 1])], model: "Order", of: baseVariant)
        #expect(back == ModelResult(added: 1))
        records = try await f.store.allChanges(baseVariant.dataset("Order"))
        let record = try #require(records.first)
        #expect(record.action == .added)
        #expect(record.deletedAt == nil)
        #expect(record.firstSeenAt == record.lastModifiedAt)
        #expect(try await f.store.recordCounts(of: baseVariant) == ["Order": 1])
    }

    @Test(arguments: StoreKind.available) func batchUpdateDeepMergesIntoLiveRecordsOnly(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        _ = try await f.store.saveRecords(
            [order("1", ["customer": ["name": "Ada", "email": "a@x"], "tags": ["a", "b"], "total": 5]), order("2", ["total": 1])],
            model: "Order", of: baseVariant)
        _ = try await f.store.deleteRecords(ids: ["2"], model: "Order", of: baseVariant)
        let patches = [
            try RecordPatch(["id": "1", "customer": ["email": "ada@x"], "tags": ["c"]]),
            try RecordPatch(["id": "2", "total": 2]),  // deleted: ignored
            try RecordPatch(["id": "3", "total": 3]),  // unknown: ignored
        ]
        let result = try await f.store.updateRecords(patches, model: "Order", of: baseVariant)
        #expect(result == ModelResult(updated: 1))
        let live = try await f.store.liveRecords(baseVariant.dataset("Order"))
        #expect(live.keys.sorted() == ["1"])
        let merged = try #require(live["1"])
        #expect(merged["customer"] == ["name": "Ada", "email": "ada@x"])
        #expect(merged["tags"] == ["c"], "arrays are replaced, not merged")
        #expect(merged["total"] == 5)
        // A patch that changes nothing is a no-op.
        let again = try await f.store.updateRecords([try RecordPatch(["id": "1", "total": 5])], model: "Order", of: baseVariant)
        #expect(again == ModelResult())
    }

    @Test(arguments: StoreKind.available) func duplicateIdsInOneBatchKeepTheLastVersion(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        let result = try await f.store.saveRecords([order("1", ["v": 1]), order("1", ["v": 2])], model: "Order", of: baseVariant)
        #expect(result == ModelResult(added: 1))
        #expect(try await f.store.liveRecords(baseVariant.dataset("Order"))["1"]?["v"] == 2)
    }

    /// A first load's pages go in as plain inserts on PostgreSQL (the dataset holds only what the
    /// run added); a page that repeats an id of an earlier page of the same run, or brings back a
    /// deleted record, falls back to the full path and counts as it would there, and so do the
    /// run's later pages.
    @Test(arguments: StoreKind.available) func aFirstLoadsPageRepeatingAnEarlierPagesIdIsSavedInFull(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        // On PostgreSQL: how many pages went in as plain inserts so far.
        let plainPages = { (f.store as? PostgresStore)?.plainInsertedPages.load(ordering: .relaxed) }
        let (first, second, third) = try await f.store.inRun(of: baseVariant) { lease in
            let first = try await f.store.saveRecords([order("1", ["v": 1]), order("2", ["v": 1])], model: "Order", checkpoint: nil, for: lease)
            if kind == .postgres { #expect(plainPages() == 1, "the first page went in as a plain insert") }
            // "2" again, changed, beside a new "3": the plain insert finds "2" taken.
            let second = try await f.store.saveRecords([order("3", ["v": 1]), order("2", ["v": 2])], model: "Order", checkpoint: nil, for: lease)
            // The dataset still holds only what this run added, but the run's insert was refused
            // once: the full path straight away on PostgreSQL.
            let third = try await f.store.saveRecords([order("4", ["v": 1]), order("2", ["v": 2])], model: "Order", checkpoint: nil, for: lease)
            return (first, second, third)
        }
        if kind == .postgres { #expect(plainPages() == 1, "the later pages went by the upsert") }
        #expect(first == ModelResult(added: 2))
        #expect(second == ModelResult(added: 1, updated: 1))
        #expect(third == ModelResult(added: 1))
        let live = try await f.store.liveRecords(baseVariant.dataset("Order"))
        #expect(live.keys.sorted() == ["1", "2", "3", "4"])
        #expect(live["2"]?["v"] == 2)
        #expect(try await f.store.recordCounts(of: baseVariant) == ["Order": 4])
        let feed = try await f.store.allChanges(baseVariant.dataset("Order"))
        #expect(feed.map(\.id).sorted() == ["1", "2", "3", "4"], "each record once in the feed")
        let sequence = Dictionary(uniqueKeysWithValues: feed.map { ($0.id, $0.cursor.sequence) })
        #expect(sequence["2"] == sequence["3"], "the changed record moved to the second page's write")
        #expect((sequence["1"] ?? 0) < (sequence["2"] ?? 0))
        #expect((sequence["2"] ?? 0) < (sequence["4"] ?? 0), "unchanged on the third page: not moved again")

        // All deleted, then a run brings "1" back beside a new "5": re-added, and "5" added.
        _ = try await f.store.deleteRecords(ids: ["1", "2", "3", "4"], model: "Order", of: baseVariant)
        #expect(try await f.store.recordCounts(of: baseVariant) == ["Order": 0])
        let back = try await f.store.saveRecords([order("5"), order("1", ["v": 1])], model: "Order", of: baseVariant)
        #expect(back == ModelResult(added: 2))
        if kind == .postgres { #expect(plainPages() == 1, "the deleted record's id was taken: the upsert") }
        #expect(try await f.store.recordCounts(of: baseVariant) == ["Order": 2])
        #expect(try await f.store.liveRecords(baseVariant.dataset("Order")).keys.sorted() == ["1", "5"])
    }

    @Test(arguments: StoreKind.available) func variantsAreIsolated(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        _ = try await f.store.saveRecords([order("1"), order("2")], model: "Order", of: baseVariant)
        _ = try await f.store.saveRecords([order("1", ["eu": true])], model: "Order", of: euVariant)
        _ = try await f.store.deleteRecords(ids: ["2"], model: "Order", of: euVariant)  // not in eu: no effect on base
        #expect(try await f.store.recordCounts(of: baseVariant) == ["Order": 2])
        #expect(try await f.store.recordCounts(of: euVariant) == ["Order": 1])
        #expect(try await f.store.liveRecords(baseVariant.dataset("Order"))["1"]?["eu"] == nil)
        #expect(try await f.store.liveRecords(euVariant.dataset("Order"))["1"]?["eu"] == true)
    }

    @Test(arguments: StoreKind.available) func emptyCacheClearsOneVariantAndCursorsStayValid(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        try await f.store.ensureVariant(baseVariant)
        try await f.store.ensureVariant(euVariant)
        _ = try await f.store.saveRecords([order("1"), order("2")], model: "Order", of: baseVariant)
        _ = try await f.store.saveRecords([order("1"), order("2"), order("3")], model: "Order", of: euVariant)
        let oldFeed = try await f.store.allChanges(euVariant.dataset("Order"))
        try await f.store.saveCheckpoint(["page": 3], for: euVariant)
        try await f.store.resetVariants([euVariant], emptyCache: true, queuesRuns: false)
        #expect(try await f.store.recordCounts(of: euVariant) == ["Order": 0])
        #expect(try await f.store.allChanges(euVariant.dataset("Order")).isEmpty)
        #expect(try await f.store.variantState(euVariant)?.checkpoint == nil)
        #expect(try await f.store.recordCounts(of: baseVariant) == ["Order": 2])
        // New records after the reset are visible to a client resuming from its old cursor.
        _ = try await f.store.saveRecords([order("9")], model: "Order", of: euVariant)
        let resumed = try await f.store.changes(try ChangeQuery(dataset: euVariant.dataset("Order"), cursor: oldFeed.last?.cursor))
        #expect(resumed.records.map(\.id) == ["9"])
    }

    @Test(arguments: StoreKind.available) func deletingAVariantRemovesOnlyItsData(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        _ = try await f.store.saveRecords([order("1")], model: "Order", of: baseVariant)
        _ = try await f.store.saveRecords([order("1"), order("2")], model: "Order", of: euVariant)
        try await f.store.ensureVariant(euVariant)
        try await f.store.saveCheckpoint(["page": 1], for: euVariant)
        let oldFeed = try await f.store.allChanges(euVariant.dataset("Order"))
        try await f.store.deleteVariant(euVariant)
        #expect(try await f.store.variantState(euVariant) == nil)
        #expect(try await f.store.allChanges(euVariant.dataset("Order")).isEmpty)
        #expect(try await f.store.recordCounts(of: baseVariant) == ["Order": 1])
        #expect(try await f.store.allChanges(baseVariant.dataset("Order")).map(\.id) == ["1"])
        // Re-created variant: an old cursor does not skip its new records.
        _ = try await f.store.saveRecords([order("5")], model: "Order", of: euVariant)
        let resumed = try await f.store.changes(try ChangeQuery(dataset: euVariant.dataset("Order"), cursor: oldFeed.last?.cursor))
        #expect(resumed.records.map(\.id) == ["5"])
    }

    @Test(arguments: StoreKind.available) func dataSurvivesReopeningTheDatabase(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        _ = try await f.store.saveRecords([order("1", ["a": 1])], model: "Order", of: baseVariant)
        // A new store instance on the same database migrates again (a no-op) and reads what was written.
        let reopened = try await f.reopen()
        #expect(try await reopened.liveRecords(baseVariant.dataset("Order"))["1"]?["a"] == 1)
    }
}
