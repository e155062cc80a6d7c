import PostgresNIO
import Testing
import TributaryCore
@testable import TributaryPostgres
import TributaryStore
import TributaryTestSupport

/// Pages with a few records to write, one after another (an incremental or a full refresh after a
/// few changes). On PostgreSQL, a run's page after one that had records to write and was aligned
/// with its rows sends its payloads with its lookup, and `tributary_save_alone` saves it whole in
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

    /// Changed pages one after another: the first after an unchanged page is looked up and its
    /// writes upserted in a second call; the next ones are saved whole in one call each — changed
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
            #expect(delta == U.Ways(alone: 4, aligned: 5, upserts: 1, saved: 3, sent: 21), "pages 3 to 5 in one call each")
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
        if let delta = U.delta(ways, U.ways(f)) { #expect(delta == U.Ways(alone: 2, aligned: 2, upserts: 1, saved: 0, sent: 3)) }
        let live = try await R.live(f)
        #expect(live.count == 300 && live.filter { $0.value == 1 }.keys.sorted() == [120, 210, 290].map(R.id))
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

        let f = try await StoreFixture(.postgres)
        _ = try await f.store.saveRecords(page(100..<400), model: "Order", of: baseVariant)
        let ways = U.ways(f)
        let run = try await R.fullRun(
            f,
            [
                (page(100..<200), ModelResult()), (page(200..<300, changing: [250]), ModelResult(updated: 1)),
                (page(300..<400, changing: [350]), ModelResult(updated: 1)),
            ])
        #expect(run.results["Order"] == ModelResult(updated: 2))
        #expect(U.delta(ways, U.ways(f)) == U.Ways(alone: 2, aligned: 3, upserts: 2, saved: 0, sent: 2))
    }

    /// The way back from migration `v14-page-save` to the release before it (docs/OPERATIONS.md).
    static let v14WayBack = ["DROP FUNCTION tributary_save_alone", "DELETE FROM tributary_migrations WHERE name = 'v14-page-save'"]

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
        #expect(U.delta(ways, U.ways(f)) == U.Ways(alone: 2, aligned: 3, upserts: 1, saved: 1, sent: 2))
    }
}
