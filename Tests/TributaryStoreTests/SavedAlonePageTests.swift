import PostgresNIO
import Testing
import TributaryCore
@testable import TributaryPostgres
import TributaryStore
import TributaryTestSupport

/// Pages with a few records to write, one after another (an incremental or a full refresh after a
/// few changes). On PostgreSQL, a run's page after one that had records to write and was aligned
/// with its rows sends its payloads with its lookup, and `tributary_save_guessed` saves it whole in
/// that one call: the check, the upsert of the records to write, the head, the checkpoint and the
/// run's counts. Every test states what any store must do, and checks on PostgreSQL which way the
/// pages went.
@Suite("Changed pages saved whole in one call (SQLite and PostgreSQL)")
struct SavedAlonePageTests {
    typealias R = ResavedPageTests
    typealias U = UnchangedPageTests

    /// A record whose payload holds characters of one to four UTF-8 bytes, around the cuts.
    static func wide(_ n: Int, _ value: Int) -> PreparedRecord {
        order(R.id(n), ["v": .number(JSONNumber(value)), "note": "é ✓ 🚀 日本 \"q\" \\ \u{1}"])
    }

    /// The payload stored for order `n`, as the feed gives it.
    static func payload(_ f: StoreFixture, _ n: Int) async throws -> [UInt8]? {
        try await f.store.allChanges(baseVariant.dataset("Order")).first { $0.id == R.id(n) }?.json
    }

    /// Changed pages one after another, in a run of a process that saw the dataset's last runs
    /// (``StoredHashes``): each — the first after an unchanged page too, which sends the payload of
    /// the records those runs left otherwise — is saved whole in one call — changed
    /// records rewritten and moved to the end of the feed, pruned ones given their payloads back in
    /// place and uncounted, the run's counts and checkpoint kept with each page — and nothing is
    /// deleted that a page held.
    @Test(arguments: StoreKind.available) func changedPagesInARowAreSavedWholeInOneCallEach(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        let dataset = baseVariant.dataset("Order")
        // 300…499 first in the feed, so that pruning reaches 300…304.
        for numbers in [300..<500, 0..<300] { _ = try await f.store.saveRecords(R.page(numbers), model: "Order", of: baseVariant) }
        let through = try #require(try await f.store.allChanges(dataset).first { $0.id == R.id(304) }?.cursor)
        #expect(try await f.store.pruneRecords(dataset, through: through, limit: 5).count == 5)
        let before = try await R.sequences(f)
        let ways = U.ways(f)
        let started = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: true))
        func save(_ records: [PreparedRecord], page: Int) async throws -> ModelResult {
            try await f.store.saveRecords(records, model: "Order", checkpoint: ["page": .number(JSONNumber(page))], for: started.lease)
        }
        func counts() async throws -> ModelResult? {
            try await f.store.runs(of: baseVariant, limit: 1).first { $0.id == started.runId }?.results["Order"]
        }

        #expect(try await save(R.page(0..<100), page: 1) == ModelResult())
        #expect(try await save(R.page(100..<200, changing: [110, 150], to: 1), page: 2) == ModelResult(updated: 2))
        var third = R.page(200..<300, changing: [201, 299], to: 1)
        third[50] = Self.wide(250, 1)
        #expect(try await save(third, page: 3) == ModelResult(updated: 3))
        #expect(try await f.store.variantState(baseVariant)?.checkpoint?["page"] == 3)
        #expect(try await counts() == ModelResult(updated: 5), "the run's counts, written in SQL")
        #expect(try await save(R.page(300..<400, changing: 305..<315, to: 2), page: 4) == ModelResult(updated: 10))
        #expect(try await save(R.page(400..<500, changing: [420], to: 1), page: 5) == ModelResult(updated: 1))
        #expect(try await f.store.variantState(baseVariant)?.checkpoint?["page"] == 5)
        if let delta = U.delta(ways, U.ways(f)) {
            #expect(delta == U.Ways(alone: 4, aligned: 5, upserts: 0, saved: 4, sent: 21), "pages 2 to 5 in one call each")
        }

        let run = try await f.store.completeRun(
            started.lease, RunCompletion(outcome: .succeeded, models: ["Order"], deleteUnseenModels: ["Order"], clearCheckpoint: true))
        #expect(run.results["Order"] == ModelResult(updated: 16), "nothing the pages held was deleted")
        let live = try await R.live(f)
        #expect(live.keys.sorted() == (0..<500).map(R.id))
        let changed = [110, 150, 201, 250, 299, 420] + Array(305..<315)
        #expect(live.filter { $0.value != 0 }.keys.sorted() == changed.map(R.id).sorted())
        #expect(live[R.id(305)] == 2 && live[R.id(250)] == 1)
        #expect(try await Self.payload(f, 250) == Self.wide(250, 1).json, "cut from the page's payloads byte for byte")
        #expect(try await Self.payload(f, 251) == R.page([251]).first?.json, "its neighbour's payload untouched")

        let records = Dictionary(uniqueKeysWithValues: try await f.store.allChanges(dataset).map { ($0.id, $0) })
        try R.expectPayloadsBack(300..<305, in: records, unmovedFrom: before)
        let last = before.values.max() ?? 0
        for n in 0..<500 {
            let sequence = records[R.id(n)]?.cursor.sequence ?? 0
            if changed.contains(n) {
                #expect(sequence > last, "\(R.id(n)) changed: moved to the end of the feed")
            } else {
                #expect(sequence == before[R.id(n)], "\(R.id(n)) unchanged: not moved")
            }
        }
        // Each page's writes share one sequence, after the page before's.
        let sequences = [110, 201, 305, 420].map { records[R.id($0)]?.cursor.sequence ?? 0 }
        #expect(sequences == sequences.sorted() && Set(sequences).count == 4)
        #expect(records[R.id(250)]?.cursor.sequence == records[R.id(201)]?.cursor.sequence)
    }

    /// The run's counts a page saved whole adds in SQL keep every other model's, and the calls
    /// after it — a page of another model in the transaction, a page's upsert alone, which writes
    /// only while the run's counts are the text its lookup read — go on from them.
    @Test(arguments: StoreKind.available) func theCountsAPageSavedWholeAddsKeepTheOthersAndTheNextPagesGoOnFromThem(_ kind: StoreKind) async throws {
        let (f, _, _) = try await R.loaded(kind, 0..<400)
        let ways = U.ways(f)
        let started = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: true))
        func save(_ records: [PreparedRecord], _ model: String = "Order") async throws -> ModelResult {
            try await f.store.saveRecords(records, model: model, checkpoint: nil, for: started.lease)
        }
        func counts() async throws -> [String: ModelResult]? {
            try await f.store.runs(of: baseVariant, limit: 1).first { $0.id == started.runId }?.results
        }
        #expect(try await save(R.page(0..<100, changing: [5], to: 1)) == ModelResult(updated: 1))
        #expect(try await save(R.page([900]), "Customer") == ModelResult(added: 1))
        #expect(try await save(R.page(100..<200, changing: [150], to: 1)) == ModelResult(updated: 1))
        #expect(try await counts() == ["Order": ModelResult(updated: 2), "Customer": ModelResult(added: 1)])
        if let store = f.store as? PostgresStore {
            #expect(U.delta(ways, U.ways(f))?.saved == 1, "the second Order page saved whole")
            store.changingPages.unmark(runId: started.runId, model: "Order")
            U.forgetRuns(f)
        }
        // Looked up alone without payloads, then upserted alone: the run's counts, as the call
        // before wrote them in SQL, are compared as text.
        #expect(try await save(R.page(200..<300, changing: [250], to: 1)) == ModelResult(updated: 1))
        if let delta = U.delta(ways, U.ways(f)) { #expect(delta.saved == 1 && delta.upserts == 1, "the third Order page in two calls") }
        #expect(try await save(R.page([901]), "Customer") == ModelResult(added: 1))
        #expect(try await counts() == ["Order": ModelResult(updated: 3), "Customer": ModelResult(added: 2)])
        let run = try await f.store.completeRun(
            started.lease, RunCompletion(outcome: .succeeded, models: ["Order", "Customer"], deleteUnseenModels: ["Order"], clearCheckpoint: true))
        #expect(run.results == ["Order": ModelResult(updated: 3, deleted: 100), "Customer": ModelResult(added: 2)])
    }

    /// A page with payloads that the check cannot align (its records in another order than their
    /// rows) is looked up record by record in the same call, writes nothing more there, and is
    /// written in the transaction with the same counts.
    @Test(arguments: StoreKind.available) func aPageWithPayloadsThatIsNotAlignedIsWrittenInTheTransaction(_ kind: StoreKind) async throws {
        let (f, _, _) = try await R.loaded(kind, 0..<300)
        let ways = U.ways(f)
        let run = try await R.fullRun(
            f,
            [
                (R.page(0..<100), ModelResult()),
                (R.page(100..<200, changing: [120], to: 1), ModelResult(updated: 1)),
                (Array(R.page(200..<300, changing: [210, 290], to: 1).reversed()), ModelResult(updated: 2)),
            ])
        #expect(run.results["Order"] == ModelResult(updated: 3))
        if let delta = U.delta(ways, U.ways(f)) { #expect(delta == U.Ways(alone: 2, aligned: 2, upserts: 0, saved: 1, sent: 3)) }
        let live = try await R.live(f)
        #expect(live.count == 300 && live.filter { $0.value == 1 }.keys.sorted() == [120, 210, 290].map(R.id))
    }

    /// A record whose payload was pruned since this process's last run of the dataset comes back
    /// as that run left it: guessed unchanged (``StoredHashes``), its payload is not sent; the
    /// check finds it needs its payload back, `tributary_save_guessed` writes nothing for want of it,
    /// and the page's writes follow in a second call — the same records, payloads and counts as
    /// ever. (A record another process changed is not aligned with its row: it moved in the feed.)
    @Test func aRecordToWriteWhosePayloadWasNotSentIsWrittenInASecondCall() async throws {
        guard StoreKind.available.contains(.postgres) else { return }
        let f = try await StoreFixture(.postgres)
        let dataset = baseVariant.dataset("Order")
        for numbers in [100..<300, 0..<100] { _ = try await f.store.saveRecords(R.page(numbers), model: "Order", of: baseVariant) }
        let through = try #require(try await f.store.allChanges(dataset).first { $0.id == R.id(104) }?.cursor)
        #expect(try await f.store.pruneRecords(dataset, through: through, limit: 5).count == 5)
        let before = try await R.sequences(f)
        let ways = U.ways(f)
        let run = try await R.fullRun(
            f,
            [
                (R.page(0..<100), ModelResult()), (R.page(100..<200, changing: [120], to: 1), ModelResult(updated: 1)),
                (R.page(200..<300, changing: [250], to: 1), ModelResult(updated: 1)),
            ])
        #expect(run.results["Order"] == ModelResult(updated: 2))
        #expect(U.delta(ways, U.ways(f)) == U.Ways(alone: 2, aligned: 3, upserts: 1, saved: 1, sent: 7), "the second page in two calls, the third in one")
        let live = try await R.live(f)
        #expect(live.count == 300 && live.filter { $0.value != 0 }.keys.sorted() == [120, 250].map(R.id))
        let records = Dictionary(uniqueKeysWithValues: try await f.store.allChanges(dataset).map { ($0.id, $0) })
        try R.expectPayloadsBack(100..<105, in: records, unmovedFrom: before)
    }

    /// Pages send the payloads of the records the dataset's last run did not leave as they are —
    /// none for an unchanged page — while a guess that most of a page changed is taken for none:
    /// after a small run (a webhook's, an incremental one's), the next full refresh's pages go as
    /// a process's that did not see it, and send no payload after an unchanged page.
    @Test func aPageSendsThePayloadsOfTheRecordsGuessedChangedUnlessMostAre() async throws {
        guard StoreKind.available.contains(.postgres) else { return }
        let (f, _, _) = try await R.loaded(.postgres, 0..<300)
        let store = try #require(f.store as? PostgresStore)
        func sent() -> Int { store.payloadsSentWithLookups.load(ordering: .relaxed) }
        let pages: [(records: [PreparedRecord], expected: ModelResult)] = [
            (R.page(0..<100), ModelResult()), (R.page(100..<200), ModelResult()),
            (R.page(200..<300, changing: [210, 220, 230], to: 1), ModelResult(updated: 3)),
        ]
        var before = (sent(), U.ways(f))
        _ = try await R.fullRun(f, pages)
        #expect(sent() - before.0 == 3, "the unchanged page none, the changed one its three")
        #expect(U.delta(before.1, U.ways(f)) == U.Ways(alone: 2, aligned: 3, upserts: 0, saved: 1, sent: 3))

        U.forgetRuns(f)
        // A small run: the set known is its five records.
        #expect(try await f.store.saveRecords(R.page(0..<5), model: "Order", of: baseVariant) == ModelResult(updated: 0))
        before = (sent(), U.ways(f))
        // The pages follow the feed, where 210, 220 and 230 are last now.
        let moved = [210, 220, 230]
        var last = R.page((200..<300).filter { !moved.contains($0) })
        last[47] = order(R.id(250), ["v": 2])
        _ = try await R.fullRun(
            f,
            [
                (R.page(0..<100), ModelResult()), (R.page(100..<200), ModelResult()),
                (moved.flatMap { R.page($0..<$0 + 1, changing: [$0], to: 1) }, ModelResult()), (last, ModelResult(updated: 1)),
            ])
        #expect(sent() - before.0 == 0, "no page guessed: none sent after an unchanged page")
        #expect(U.delta(before.1, U.ways(f)) == U.Ways(alone: 3, aligned: 4, upserts: 1, saved: 0, sent: 1))
        #expect(try await R.live(f)[R.id(250)] == 2)
    }

    /// A page whose payloads come to more than `PagePayloads.limit` bytes goes without them: its
    /// writes follow in a second call, as after an unchanged page.
    @Test func aPageWhosePayloadsPassTheLimitGoesWithoutThem() async throws {
        guard StoreKind.available.contains(.postgres) else { return }
        let pad = JSONValue.string(String(repeating: "x", count: 1_000))
        func page(_ numbers: Range<Int>, changing changed: Set<Int> = []) -> [PreparedRecord] {
            numbers.map { order(R.id($0), ["v": .number(JSONNumber(changed.contains($0) ? 1 : 0)), "pad": pad]) }
        }
        let size = page(100..<101)[0].json.count
        let fitting = PostgresStore.PagePayloads.limit / size
        #expect(PostgresStore.PagePayloads(page(100..<100 + fitting)) != nil)
        #expect(PostgresStore.PagePayloads(page(100..<101 + fitting)) == nil, "one record past the limit")
        #expect(PostgresStore.PagePayloads(page(100..<100 + fitting))?.ends.last == Int32(size * fitting))

        // Only the records to write are counted against the limit when the rest are left out.
        #expect(PostgresStore.PagePayloads(page(100..<400), only: [3, 250]).map { ($0.bytes.readableBytes, $0.ends[3], $0.ends[4], $0.ends.last) }
            .map { $0 == (2 * size, Int32(size), Int32(size), Int32(2 * size)) } == true)
        #expect(PostgresStore.PagePayloads(page(100..<400), only: 0..<(fitting + 1)) == nil)

        let f = try await StoreFixture(.postgres)
        _ = try await f.store.saveRecords(page(100..<400), model: "Order", of: baseVariant)
        // A process that did not see the last run: every payload or none.
        U.forgetRuns(f)
        var ways = U.ways(f)
        let run = try await R.fullRun(
            f,
            [
                (page(100..<200), ModelResult()), (page(200..<300, changing: [250]), ModelResult(updated: 1)),
                (page(300..<400, changing: [350]), ModelResult(updated: 1)),
            ])
        #expect(run.results["Order"] == ModelResult(updated: 2))
        #expect(U.delta(ways, U.ways(f)) == U.Ways(alone: 2, aligned: 3, upserts: 2, saved: 0, sent: 2))
        // The next run knows what this one saved: each changed page sends its changed records'
        // payloads alone, well within the limit, and is saved in one call. (Its pages follow the
        // feed, where 250 and 350 are last now.)
        ways = U.ways(f)
        let next = try await R.fullRun(
            f,
            [
                (page(100..<200), ModelResult()), (page(200..<250, changing: [210, 220]), ModelResult(updated: 2)),
                (page(251..<300, changing: [260]), ModelResult(updated: 1)), (page(300..<350), ModelResult()), (page(351..<400), ModelResult()),
                ([250, 350].flatMap { page($0..<$0 + 1, changing: [$0]) }, ModelResult()),
            ])
        #expect(next.results["Order"] == ModelResult(updated: 3))
        #expect(U.delta(ways, U.ways(f)) == U.Ways(alone: 5, aligned: 6, upserts: 0, saved: 2, sent: 3))
    }

    /// The way back from migration `v14-page-save` to the release before it (docs/OPERATIONS.md).
    static let v14WayBack = v15WayBack + ["DROP FUNCTION tributary_save_alone", "DELETE FROM tributary_migrations WHERE name = 'v14-page-save'"]

    /// The way back from this release to the one before migration `v15-unsent-payloads`:
    /// `v16-skipping-walk`'s way back, then v15's: its function dropped; `tributary_check_aligned`
    /// stays as v15 made it (the same answer, faster).
    static let v15WayBack = SkippingCheckTests.v16WayBack + ["DROP FUNCTION tributary_save_guessed", "DELETE FROM tributary_migrations WHERE name = 'v15-unsent-payloads'"]

    /// A PostgreSQL database as the release before `v14-page-save` left it is upgraded in place,
    /// and changed pages in a row are then saved whole by the new function.
    @Test func aDatabaseWithoutTheSaveFunctionIsUpgradedInPlace() async throws {
        guard StoreKind.available.contains(.postgres) else { return }
        let (f, _, _) = try await R.loaded(.postgres, 0..<300)
        let store = try #require(f.store as? PostgresStore)
        try await f.onDatabase { database in
            let function = "SELECT count(*)::int8 FROM pg_proc WHERE proname = 'tributary_save_alone'"
            for statement in Self.v14WayBack { try await database.run(statement) }
            #expect(try await database.integer(function) == 0)
            try await store.migrate()
            #expect(try await database.integer(function) == 1)
        }
        let ways = U.ways(f)
        let run = try await R.fullRun(
            f,
            [
                (R.page(0..<100), ModelResult()), (R.page(100..<200, changing: [150], to: 1), ModelResult(updated: 1)),
                (R.page(200..<300, changing: [250], to: 1), ModelResult(updated: 1)),
            ])
        #expect(run.results["Order"] == ModelResult(updated: 2))
        #expect(U.delta(ways, U.ways(f)) == U.Ways(alone: 2, aligned: 3, upserts: 0, saved: 2, sent: 2))
    }
}
