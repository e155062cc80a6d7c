import Foundation
import Testing
import TributaryCore
@testable import TributaryPostgres
import TributaryStore
import TributaryTestSupport

/// Pages saved again into a dataset that holds them (a full refresh): unchanged records are
/// neither moved nor counted, changed ones are, and the run deletes exactly what it did not see,
/// whatever way each page went. On PostgreSQL a page is looked up first by its ids and hashes, and
/// only its records that need a write are sent with their payloads — unless the run's last page had
/// most of its records to write, when the page is upserted whole; each test also checks, on
/// PostgreSQL, how many records went to the upsert.
@Suite("Pages saved again (SQLite and PostgreSQL)")
struct ResavedPageTests {
    /// Ids `r000`, `r001`, …
    static func id(_ n: Int) -> String { "r" + String(1000 + n).dropFirst() }

    static func page(_ numbers: some Sequence<Int>, value: Int = 0) -> [PreparedRecord] {
        numbers.map { order(id($0), ["v": .number(JSONNumber(value))]) }
    }

    /// The records `numbers`, once pruned: their payloads back (value 0), not moved in the feed.
    static func expectPayloadsBack(_ numbers: Range<Int>, in records: [String: StoredRecord], unmovedFrom before: [String: Int64]) throws {
        for n in numbers {
            let record = try #require(records[id(n)])
            let payload = try JSONParser.parse(record.json)
            #expect(record.prunedAt == nil && payload["v"] == 0, "\(record.id): its payload back")
            #expect(record.cursor.sequence == before[record.id], "\(record.id): not moved")
        }
    }

    /// The way back from this release to the one before migration `v13-page-upsert`: `v14-page-save`'s
    /// way back, then `v13-page-upsert`'s (docs/OPERATIONS.md).
    static let v13WayBack = SavedAlonePageTests.v14WayBack + [
        "DROP FUNCTION tributary_upsert_alone", "DROP FUNCTION tributary_upsert_records", "DROP FUNCTION tributary_check_page",
        "DROP FUNCTION tributary_check_skipping", "ALTER FUNCTION tributary_check_aligned RENAME TO tributary_check_page",
        "DELETE FROM tributary_migrations WHERE name = 'v13-page-upsert'",
    ]

    /// The way back from this release to the one before migration `v12-page-check`: `v13-page-upsert`'s
    /// way back, then `v12-page-check`'s (docs/OPERATIONS.md).
    static let v12WayBack = v13WayBack + [
        "DROP FUNCTION tributary_look_up_alone", "DROP FUNCTION tributary_check_page", "DROP FUNCTION tributary_refuse",
        "ALTER FUNCTION tributary_look_up_page RESET jit", "DELETE FROM tributary_migrations WHERE name = 'v12-page-check'",
    ]

    /// Records PostgreSQL's full path has sent to its upsert so far (nil on SQLite).
    static func upserted(_ f: StoreFixture) -> Int? { (f.store as? PostgresStore)?.upsertedRecords.load(ordering: .relaxed) }

    /// A full-refresh run saving `pages` (each page's expected counts beside it), ended successfully.
    static func fullRun(_ f: StoreFixture, _ pages: [(records: [PreparedRecord], expected: ModelResult)]) async throws -> RunRecord {
        let started = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: true))
        for (index, page) in pages.enumerated() {
            let result = try await f.store.saveRecords(page.records, model: "Order", checkpoint: nil, for: started.lease)
            #expect(result == page.expected, "page \(index)")
        }
        return try await f.store.completeRun(
            started.lease, RunCompletion(outcome: .succeeded, models: ["Order"], deleteUnseenModels: ["Order"], clearCheckpoint: true))
    }

    static func sequences(_ f: StoreFixture) async throws -> [String: Int64] {
        Dictionary(uniqueKeysWithValues: try await f.store.allChanges(baseVariant.dataset("Order")).map { ($0.id, $0.cursor.sequence) })
    }

    /// A store holding the orders `numbers` (a first load), the feed sequence of each, and how many
    /// records PostgreSQL's upsert had been sent by then.
    static func loaded(_ kind: StoreKind, _ numbers: Range<Int>) async throws -> (StoreFixture, before: [String: Int64], sent: Int?) {
        let f = try await StoreFixture(kind)
        _ = try await f.store.saveRecords(page(numbers), model: "Order", of: baseVariant)
        return (f, try await sequences(f), upserted(f))
    }

    /// The orders `numbers` with value 0, those in `changed` with `value`.
    static func page(_ numbers: Range<Int>, changing changed: some Sequence<Int>, to value: Int) -> [PreparedRecord] {
        var records = page(numbers)
        for n in changed { records[n - numbers.lowerBound] = order(id(n), ["v": .number(JSONNumber(value))]) }
        return records
    }

    static func live(_ f: StoreFixture) async throws -> [String: JSONValue] {
        try await f.store.liveRecords(baseVariant.dataset("Order")).mapValues { $0["v"] ?? .null }
    }

    @Test(arguments: StoreKind.available) func onlyTheRecordsToWriteAreSentAndUnchangedOnesAreSeen(_ kind: StoreKind) async throws {
        let (f, before, sent) = try await Self.loaded(kind, 0..<300)
        // In the first load's order; with three changed records; in reverse order (looked up one by
        // one); a small page (too few records for a seen range: stamped); a new record.
        let run = try await Self.fullRun(
            f,
            [
                (Self.page(0..<100), ModelResult()),
                (Self.page(100..<200, changing: [110, 150, 199], to: 1), ModelResult(updated: 3)),
                (Self.page((200..<290).reversed()), ModelResult()),
                (Self.page(290..<295), ModelResult()),
                (Self.page([300]), ModelResult(added: 1)),
            ])
        #expect(run.results["Order"] == ModelResult(added: 1, updated: 3, deleted: 5), "295…299 were not seen")
        if let sent { #expect(Self.upserted(f) == sent + 4, "only the changed records and the new one were sent") }

        let live = try await Self.live(f)
        #expect(live.keys.sorted() == (0..<295).map(Self.id) + [Self.id(300)])
        #expect(live.filter { $0.value == 1 }.keys.sorted() == [110, 150, 199].map(Self.id))
        let after = try await Self.sequences(f)
        for n in 0..<295 where ![110, 150, 199].contains(n) {
            #expect(after[Self.id(n)] == before[Self.id(n)], "\(Self.id(n)) unchanged: not moved")
        }
        #expect((after[Self.id(110)] ?? 0) > (before[Self.id(110)] ?? 0), "a changed record moves in the feed")
    }

    /// A page with most of its records to write marks the run: its next page is upserted whole,
    /// which must still leave unchanged records unmoved and seen; a page with few to write unmarks it.
    @Test(arguments: StoreKind.available) func aPageAfterOneWritingMostIsUpsertedWholeAndCountsTheSame(_ kind: StoreKind) async throws {
        let (f, before, sent) = try await Self.loaded(kind, 0..<300)
        let run = try await Self.fullRun(
            f,
            [
                (Self.page(0..<100, value: 1), ModelResult(updated: 100)),
                (Self.page(100..<200, changing: 100..<102, to: 2), ModelResult(updated: 2)),
                (Self.page(200..<290), ModelResult()),
            ])
        #expect(run.results["Order"] == ModelResult(updated: 102, deleted: 10))
        // The first page is looked up (100 to write), the second upserted whole (100), the third
        // looked up again (none).
        if let sent { #expect(Self.upserted(f) == sent + 200) }

        let live = try await Self.live(f)
        #expect(live.keys.sorted() == (0..<290).map(Self.id), "the whole upsert stamped its unchanged records seen")
        #expect(live[Self.id(0)] == 1 && live[Self.id(100)] == 2 && live[Self.id(102)] == 0)
        let after = try await Self.sequences(f)
        for n in 102..<290 { #expect(after[Self.id(n)] == before[Self.id(n)], "\(Self.id(n)) unchanged: not moved") }
    }

    /// The block of rows read from a page's first record on is as long as the page: with new records
    /// in the page it reaches past the page's own, and a record the page skipped lies inside it. The
    /// block is then no seen range; the skipped records are deleted.
    @Test(arguments: StoreKind.available) func aPagesSkippedRecordInsideItsScannedRowsIsDeleted(_ kind: StoreKind) async throws {
        let (f, _, _) = try await Self.loaded(kind, 0..<40)
        let run = try await Self.fullRun(f, [(Self.page((0..<40).filter { $0 != 7 && $0 != 30 } + [100, 101]), ModelResult(added: 2))])
        #expect(run.results["Order"] == ModelResult(added: 2, deleted: 2))
        #expect(try await Self.live(f).keys.sorted() == ((0..<40).filter { $0 != 7 && $0 != 30 } + [100, 101]).map(Self.id))
    }

    /// The whole upsert (after a page writing most of its records) brings deleted records back as
    /// added and gives pruned ones their payloads back in place, as the lookup's path does.
    @Test(arguments: StoreKind.available) func theWholeUpsertReAddsDeletedAndRestoresPrunedRecords(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        let dataset = baseVariant.dataset("Order")
        _ = try await f.store.saveRecords(Self.page(0..<300), model: "Order", of: baseVariant)
        _ = try await f.store.deleteRecords(ids: (150..<155).map(Self.id), model: "Order", of: baseVariant)
        let through = try #require(try await f.store.allChanges(dataset).first { $0.id == Self.id(109) }?.cursor)
        #expect(try await f.store.pruneRecords(dataset, through: through, limit: 1000).count == 110)
        let before = try await Self.sequences(f)
        let sent = Self.upserted(f)

        let run = try await Self.fullRun(
            f,
            [
                (Self.page(0..<100, value: 1), ModelResult(updated: 100)),
                (Self.page(100..<200), ModelResult(added: 5)),
                (Self.page(200..<290), ModelResult()),
            ])
        #expect(run.results["Order"] == ModelResult(added: 5, updated: 100, deleted: 10))
        if let sent { #expect(Self.upserted(f) == sent + 200, "the second page went whole") }

        let records = Dictionary(uniqueKeysWithValues: try await f.store.allChanges(dataset).map { ($0.id, $0) })
        try Self.expectPayloadsBack(100..<110, in: records, unmovedFrom: before)
        for n in 150..<155 {
            let record = try #require(records[Self.id(n)])
            #expect(record.deletedAt == nil && record.action == .added, "\(record.id): added again")
        }
        #expect(try await Self.live(f).count == 290)
    }

    /// A page whose first record is new (the scan finds nothing to start from) or moved since the
    /// first load (it starts past the page's other records): its records are looked up one by one,
    /// and its unchanged ones still become a seen range or stamps.
    @Test(arguments: StoreKind.available) func aPageWhoseFirstRecordIsNewOrMovedIsLookedUpRecordByRecord(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        _ = try await f.store.saveRecords(Self.page(0..<200), model: "Order", of: baseVariant)
        // 100 changes once: it moves to the end of the feed.
        _ = try await f.store.saveRecords([order(Self.id(100), ["v": 1])], model: "Order", of: baseVariant)
        let before = try await Self.sequences(f)
        let sent = Self.upserted(f)

        let run = try await Self.fullRun(
            f,
            [
                (Self.page([500] + Array(0..<100)), ModelResult(added: 1)),
                (Self.page([100], value: 1) + Self.page(101..<190), ModelResult()),
            ])
        #expect(run.results["Order"] == ModelResult(added: 1, deleted: 10), "190…199 were not seen")
        if let sent { #expect(Self.upserted(f) == sent + 1, "only the new record was sent") }
        #expect(try await Self.live(f).keys.sorted() == (0..<190).map(Self.id) + [Self.id(500)])
        let after = try await Self.sequences(f)
        for n in 0..<190 { #expect(after[Self.id(n)] == before[Self.id(n)], "\(Self.id(n)) unchanged: not moved") }
    }

    /// A PostgreSQL database as the release before `v11-page-lookup` left it (its records, no
    /// lookup function — which is also the way back to that release) is upgraded in place when a
    /// process migrates it, and its pages saved again are looked up by the new function.
    @Test func aDatabaseWithoutTheLookupFunctionIsUpgradedInPlace() async throws {
        guard StoreKind.available.contains(.postgres) else { return }
        let f = try await StoreFixture(.postgres)
        let store = try #require(f.store as? PostgresStore)
        _ = try await f.store.saveRecords(Self.page(0..<100), model: "Order", of: baseVariant)
        try await f.onDatabase { database in
            let function = "SELECT count(*)::int8 FROM pg_proc WHERE proname = 'tributary_look_up_page'"
            // v12 changed the function: its way back first (docs/OPERATIONS.md).
            for statement in Self.v12WayBack + ["DROP FUNCTION tributary_look_up_page", "DELETE FROM tributary_migrations WHERE name = 'v11-page-lookup'"] {
                try await database.run(statement)
            }
            #expect(try await database.integer(function) == 0)
            try await store.migrate()
            #expect(try await database.integer(function) == 1)
            #expect(try await database.integer("SELECT count(*)::int8 FROM tributary_migrations WHERE name = 'v11-page-lookup'") == 1)
        }

        let sent = store.upsertedRecords.load(ordering: .relaxed)
        var changed = Self.page(0..<100)
        changed[42] = order(Self.id(42), ["v": 1])
        let run = try await Self.fullRun(f, [(changed, ModelResult(updated: 1))])
        #expect(run.results["Order"] == ModelResult(updated: 1))
        #expect(store.upsertedRecords.load(ordering: .relaxed) == sent + 1)
        #expect(try await Self.live(f).count == 100)
    }
}

