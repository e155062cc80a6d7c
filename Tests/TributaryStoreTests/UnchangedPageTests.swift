import PostgresNIO
import Testing
import TributaryCore
@testable import TributaryPostgres
import TributaryStore
import TributaryTestSupport

/// Pages saved again into a dataset that holds them (a full refresh of data that mostly did not
/// change). On PostgreSQL a page is first checked against its rows whole — the rows from its first
/// record on, compared by ids and hashes in feed order; the records to write found by position —
/// and looked up record by record only when its ids are not its rows'; a run's page after one that
/// needed no write or was aligned is looked up in one autocommit statement that fences the run in
/// SQL, and an aligned page's writes are upserted in a second one (a transaction otherwise). Every
/// test states what any store must do, and checks on PostgreSQL which way the pages went.
@Suite("Unchanged pages saved again (SQLite and PostgreSQL)")
struct UnchangedPageTests {
    typealias R = ResavedPageTests

    /// PostgreSQL's counters: pages looked up alone, pages aligned with their rows by the check,
    /// pages whose records to write were upserted alone, pages saved whole with their writes in the
    /// lookup's call, and records sent to an upsert.
    struct Ways: Equatable {
        var alone: Int
        var aligned: Int
        var upserts = 0
        var saved = 0
        var sent: Int
    }

    static func ways(_ f: StoreFixture) -> Ways? {
        guard let store = f.store as? PostgresStore else { return nil }
        return Ways(
            alone: store.pagesLookedUpAlone.load(ordering: .relaxed), aligned: store.pagesAligned.load(ordering: .relaxed),
            upserts: store.pagesUpsertedAlone.load(ordering: .relaxed), saved: store.pagesSavedAlone.load(ordering: .relaxed),
            sent: store.upsertedRecords.load(ordering: .relaxed))
    }

    /// On PostgreSQL, forgets what the store's runs saved (``StoredHashes``): its next run's pages
    /// go as a process's that did not see the dataset's last run — a changed page after an
    /// unchanged one in two calls.
    static func forgetRuns(_ f: StoreFixture) {
        (f.store as? PostgresStore)?.storedHashes.removeAll()
    }

    /// `after` less `before`, field by field.
    static func delta(_ before: Ways?, _ after: Ways?) -> Ways? {
        guard let before, let after else { return nil }
        return Ways(
            alone: after.alone - before.alone, aligned: after.aligned - before.aligned, upserts: after.upserts - before.upserts,
            saved: after.saved - before.saved, sent: after.sent - before.sent)
    }

    /// A store holding the orders 0…299, a full refresh of them started that saved 0…99, and a
    /// webhook execution of the variant claimed beside it.
    static func refreshBesideAWebhook(_ kind: StoreKind) async throws -> (StoreFixture, refresh: RunLease, webhook: RunLease) {
        let f = try await StoreFixture(kind)
        _ = try await f.store.importConnection(
            ConnectionImport(ref: connection, metadata: [:], connectionConfig: [:], credentialsType: "NONE", sealedCredentials: nil), baseVariantsOf: ["orders"])
        _ = try await f.store.saveRecords(R.page(0..<300), model: "Order", of: baseVariant)
        let started = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: true))
        #expect(try await f.store.saveRecords(R.page(0..<100), model: "Order", checkpoint: nil, for: started.lease) == ModelResult())
        _ = try await f.store.enqueueProviderWebhook(for: [baseVariant], type: nil, payload: Array("{}".utf8))
        let webhook = try #require(try await f.store.claimProviderWebhook(leaseSeconds: 60, maxAttempts: 3))
        return (f, started.lease, webhook.started.lease)
    }

    @Test(arguments: StoreKind.available) func unchangedPagesAreAlignedAndOnlyTheUnseenAreDeleted(_ kind: StoreKind) async throws {
        let (f, before, _) = try await R.loaded(kind, 0..<400)
        let ways = Self.ways(f)
        // The first page takes the transaction; the three after it are looked up alone. Each is
        // aligned with its rows (the last, a page of five, too few for a seen range: stamped).
        let run = try await R.fullRun(
            f, [(R.page(0..<100), ModelResult()), (R.page(100..<200), ModelResult()), (R.page(200..<300), ModelResult()), (R.page(300..<305), ModelResult())])
        #expect(run.results["Order"] == ModelResult(deleted: 95), "305…399 were not seen")
        if let delta = Self.delta(ways, Self.ways(f)) { #expect(delta == Ways(alone: 3, aligned: 4, sent: 0)) }
        #expect(try await R.live(f).keys.sorted() == (0..<305).map(R.id))
        let after = try await R.sequences(f)
        for n in 0..<305 { #expect(after[R.id(n)] == before[R.id(n)], "\(R.id(n)) unchanged: not moved") }
    }

    /// A changed page after unchanged ones is aligned with its rows too: its changes are found by
    /// position and upserted alone after it, and the run's next pages are looked up alone still.
    /// (A process that saw the dataset's last run saves it in one call: SavedAlonePageTests.)
    @Test(arguments: StoreKind.available) func aChangedPageAmongUnchangedOnesIsAlignedAndUpsertedAlone(_ kind: StoreKind) async throws {
        let (f, before, _) = try await R.loaded(kind, 0..<500)
        Self.forgetRuns(f)
        let ways = Self.ways(f)
        let run = try await R.fullRun(
            f,
            [
                (R.page(0..<100), ModelResult()),
                (R.page(100..<200), ModelResult()),
                (R.page(200..<300, changing: [201, 299], to: 1), ModelResult(updated: 2)),
                (R.page(300..<400), ModelResult()),
                (R.page(400..<500), ModelResult()),
            ])
        #expect(run.results["Order"] == ModelResult(updated: 2))
        if let delta = Self.delta(ways, Self.ways(f)) { #expect(delta == Ways(alone: 4, aligned: 5, upserts: 1, sent: 2)) }
        let live = try await R.live(f)
        #expect(live.count == 500)
        #expect(live.filter { $0.value == 1 }.keys.sorted() == [R.id(201), R.id(299)])
        let after = try await R.sequences(f)
        for n in 0..<500 where n != 201 && n != 299 { #expect(after[R.id(n)] == before[R.id(n)], "\(R.id(n)) unchanged: not moved") }
        #expect((after[R.id(201)] ?? 0) > (before[R.id(499)] ?? .max), "a changed record moves to the end of the feed")
    }

    /// Pages saved in another order than their rows hold in the feed are not aligned: after two such
    /// pages the run's later ones are no longer checked, and it still deletes exactly what it did not see.
    @Test(arguments: StoreKind.available) func pagesInAnotherOrderStopTheCheckAndStillCountExactly(_ kind: StoreKind) async throws {
        let (f, _, _) = try await R.loaded(kind, 0..<400)
        let ways = Self.ways(f)
        let run = try await R.fullRun(
            f,
            [
                (R.page((0..<100).reversed()), ModelResult()),
                (R.page((100..<200).reversed()), ModelResult()),
                (R.page((200..<300).reversed()), ModelResult()),
                (R.page([300]), ModelResult()),
            ])
        #expect(run.results["Order"] == ModelResult(deleted: 99))
        if let delta = Self.delta(ways, Self.ways(f)) { #expect(delta == Ways(alone: 3, aligned: 0, sent: 0)) }
        #expect(try await R.live(f).keys.sorted() == (0..<301).map(R.id))
    }

    /// A page that holds one record less than the rows it starts on is aligned all the same (the
    /// record it skips is deleted); one that holds a record new to the dataset is not (it is looked
    /// up record by record): the deleted record it holds comes back as added, the new one is added.
    @Test(arguments: StoreKind.available) func aPageWithANewRecordIsNotAlignedOneSkippingARowIs(_ kind: StoreKind) async throws {
        let (f, _, _) = try await R.loaded(kind, 0..<400)
        _ = try await f.store.deleteRecords(ids: [R.id(350)], model: "Order", of: baseVariant)
        let ways = Self.ways(f)
        let run = try await R.fullRun(
            f,
            [
                (R.page(0..<100), ModelResult()),
                (R.page((100..<200).filter { $0 != 150 }), ModelResult()),
                (R.page(200..<300), ModelResult()),
                (R.page(300..<400) + R.page([900]), ModelResult(added: 2)),
            ])
        #expect(run.results["Order"] == ModelResult(added: 2, deleted: 1), "150 was skipped, 350 came back, 900 is new")
        if let delta = Self.delta(ways, Self.ways(f)) { #expect(delta == Ways(alone: 3, aligned: 3, sent: 2)) }
        #expect(try await R.live(f).keys.sorted() == ((0..<400).filter { $0 != 150 } + [900]).map(R.id))
    }

    /// Pages that skip rows their span holds (records gone at the provider, a few a page) are aligned
    /// all the same: their records are matched in order, their changes found, the rows they skip are
    /// neither seen nor covered, and the run deletes exactly those. The record after a page's last is
    /// not in its span.
    @Test(arguments: StoreKind.available) func pagesThatSkipRowsAreAlignedAndOnlyTheSkippedAreDeleted(_ kind: StoreKind) async throws {
        let (f, before, _) = try await R.loaded(kind, 0..<400)
        let gone: Set = [105, 110, 150, 151, 230, 399]
        func page(_ numbers: Range<Int>) -> [PreparedRecord] {
            R.page(numbers.filter { !gone.contains($0) }).map { $0.id == R.id(120) ? order(R.id(120), ["v": 1]) : $0 }
        }
        let ways = Self.ways(f)
        let run = try await R.fullRun(
            f, [(page(0..<100), ModelResult()), (page(100..<200), ModelResult(updated: 1)), (page(200..<300), ModelResult()), (page(300..<400), ModelResult())])
        #expect(run.results["Order"] == ModelResult(updated: 1, deleted: 6))
        // On PostgreSQL the changed page, whose changed record the dataset's last run left otherwise,
        // is saved whole in one call.
        if let delta = Self.delta(ways, Self.ways(f)) { #expect(delta == Ways(alone: 3, aligned: 4, saved: 1, sent: 1)) }
        #expect(try await R.live(f).keys.sorted() == (0..<400).filter { !gone.contains($0) }.map(R.id))
        #expect(try await R.live(f)[R.id(120)] == 1)
        let after = try await R.sequences(f)
        for n in (0..<400).filter({ !gone.contains($0) && $0 != 120 }) { #expect(after[R.id(n)] == before[R.id(n)], "\(R.id(n)) unchanged: not moved") }
    }

    /// On PostgreSQL a page that skips rows marks what it saw run by run: each run of rows it holds one
    /// after the other becomes a seen range when it has enough unchanged records not yet seen, and is
    /// stamped otherwise; the rows it skips are neither.
    @Test func aSkippingPagesRunsBecomeRangesOrStamps() async throws {
        guard StoreKind.available.contains(.postgres) else { return }
        let (f, _, _) = try await R.loaded(.postgres, 0..<300)
        let started = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: true))
        let generation = try #require(started.deletionGeneration)
        #expect(try await f.store.saveRecords(R.page(0..<100), model: "Order", checkpoint: nil, for: started.lease) == ModelResult())
        // 100…104 and 106…109: runs of five and four, stamped; 111…149 (120 changed) and 152…199: ranges.
        let gone: Set = [105, 110, 150, 151]
        let page = R.page((100..<200).filter { !gone.contains($0) }).map { $0.id == R.id(120) ? order(R.id(120), ["v": 1]) : $0 }
        let ways = Self.ways(f)
        #expect(try await f.store.saveRecords(page, model: "Order", checkpoint: nil, for: started.lease) == ModelResult(updated: 1))
        #expect(Self.delta(ways, Self.ways(f)) == Ways(alone: 1, aligned: 1, saved: 1, sent: 1), "saved whole in one call")
        let stamped = try await SeenRangeStoreTests.texts(
            f, "SELECT external_id FROM records WHERE seen_generation = \(generation) AND external_id >= '\(R.id(100))' ORDER BY external_id")
        #expect(stamped == ([100, 101, 102, 103, 104, 106, 107, 108, 109, 120]).map(R.id), "the short runs, and the written record")
        let ranges = try await SeenRangeStoreTests.texts(
            f,
            """
            SELECT string_agg(r.external_id, ',' ORDER BY r.seq, r.id) FROM seen_ranges s JOIN records r
                ON r.dataset_id = s.dataset_id AND (r.seq, r.id) BETWEEN (s.lo_seq, s.lo_id) AND (s.hi_seq, s.hi_id)
            WHERE s.generation = \(generation) GROUP BY s.lo_seq, s.lo_id ORDER BY s.lo_seq, s.lo_id
            """)
        #expect(ranges == [(0..<100).map(R.id), (111..<150).filter { $0 != 120 }.map(R.id), (152..<200).map(R.id)].map { $0.joined(separator: ",") })
        _ = try await f.store.completeRun(
            started.lease, RunCompletion(outcome: .succeeded, models: ["Order"], deleteUnseenModels: ["Order"], clearCheckpoint: true))
        #expect(try await R.live(f).keys.sorted() == (0..<200).filter { !gone.contains($0) }.map(R.id), "the skipped and the unseen deleted")
    }

    /// A PostgreSQL run's pages over the orders 0…299 (one block of the first load), what the check
    /// should make of them, and what the run deletes.
    struct SkippingCase: Sendable, CustomTestStringConvertible {
        var name: String
        var pages: [[Int]]
        /// Pages the check aligned.
        var aligned: Int
        /// The window's seen ranges before the run ends: the orders each covers.
        var ranges: [[Int]]
        /// The orders stamped seen before the run ends.
        var stamped: [Int]
        var testDescription: String { name }

        static func except(_ numbers: Range<Int>, _ gone: Set<Int>) -> [Int] { numbers.filter { !gone.contains($0) } }

        static let all = [
            SkippingCase(name: "a skipped row after the first record", pages: [except(100..<200, [101])], aligned: 1, ranges: [Array(102..<200)], stamped: [100]),
            SkippingCase(name: "a skipped row before the last record", pages: [except(100..<200, [198])], aligned: 1, ranges: [Array(100..<198)], stamped: [199]),
            SkippingCase(
                name: "skipped rows at both ends, two side by side", pages: [except(100..<200, [101, 150, 151, 198])], aligned: 1,
                ranges: [Array(102..<150), Array(152..<198)], stamped: [100, 199]),
            SkippingCase(name: "more skipped rows than read for the page: not aligned", pages: [Array(100..<110) + Array(150..<160)], aligned: 0, ranges: [], stamped: []),
            SkippingCase(name: "many skipped rows all among those read", pages: [[100] + Array(141..<240)], aligned: 1, ranges: [Array(141..<240)], stamped: [100]),
            SkippingCase(name: "two records", pages: [[100, 102]], aligned: 1, ranges: [], stamped: [100, 102]),
            SkippingCase(
                name: "a span overlapping the window's range: stamped (199, in the range, again)", pages: [Array(100..<200), [199] + Array(201..<300)],
                aligned: 2, ranges: [Array(100..<200)], stamped: Array(199..<300).filter { $0 != 200 }),
            SkippingCase(
                name: "a skipped row a later page holds (its span overlaps the first's ranges: stamped)",
                pages: [except(100..<200, [150]), [150] + Array(200..<300)], aligned: 2,
                ranges: [Array(100..<150), Array(151..<200)], stamped: Array(150..<151) + Array(200..<300)),
        ]
    }

    /// Where a page's skipped rows lie against its span and the rows read for it: each run between
    /// them is ranged or stamped exactly, no skipped row is seen, and what no page held is deleted.
    @Test(arguments: SkippingCase.all) func aSkippingPageRangesAndStampsExactlyWhatItHolds(_ test: SkippingCase) async throws {
        guard StoreKind.available.contains(.postgres) else { return }
        let (f, _, _) = try await R.loaded(.postgres, 0..<300)
        let started = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: true))
        let generation = try #require(started.deletionGeneration)
        let ways = Self.ways(f)
        for numbers in test.pages {
            #expect(try await f.store.saveRecords(R.page(numbers), model: "Order", checkpoint: nil, for: started.lease) == ModelResult())
        }
        #expect(Self.delta(ways, Self.ways(f))?.aligned == test.aligned)
        if test.aligned == test.pages.count {
            let stamped = try await SeenRangeStoreTests.texts(f, "SELECT external_id FROM records WHERE seen_generation = \(generation) ORDER BY external_id")
            #expect(stamped == test.stamped.map(R.id))
            let ranges = try await SeenRangeStoreTests.texts(
                f,
                """
                SELECT string_agg(r.external_id, ',' ORDER BY r.seq, r.id) FROM seen_ranges s JOIN records r
                    ON r.dataset_id = s.dataset_id AND (r.seq, r.id) BETWEEN (s.lo_seq, s.lo_id) AND (s.hi_seq, s.hi_id)
                WHERE s.generation = \(generation) GROUP BY s.lo_seq, s.lo_id ORDER BY s.lo_seq, s.lo_id
                """)
            #expect(ranges == test.ranges.map { $0.map(R.id).joined(separator: ",") })
        }
        let run = try await f.store.completeRun(
            started.lease, RunCompletion(outcome: .succeeded, models: ["Order"], deleteUnseenModels: ["Order"], clearCheckpoint: true))
        let held = Set(test.pages.joined())
        #expect(run.results["Order"] == ModelResult(deleted: 300 - held.count))
        #expect(try await R.live(f).keys.sorted() == held.sorted().map(R.id))
    }

    /// A page aligned with its rows writes its changed record, brings its deleted one back as added
    /// (its tombstone is the row after the page's others in the feed) and gives its pruned ones
    /// their payloads back in place, uncounted — on PostgreSQL in one statement after its lookup, or,
    /// after a page that had writes, in the lookup's own call.
    @Test(arguments: StoreKind.available) func anAlignedPagesWritesAreUpsertedAlone(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        let dataset = baseVariant.dataset("Order")
        // The feed: 200…299, 100…199, 0…99 (three writes), then 50's tombstone; 200…204 pruned.
        for numbers in [200..<300, 100..<200, 0..<100] { _ = try await f.store.saveRecords(R.page(numbers), model: "Order", of: baseVariant) }
        _ = try await f.store.deleteRecords(ids: [R.id(50)], model: "Order", of: baseVariant)
        let through = try #require(try await f.store.allChanges(dataset).first { $0.id == R.id(204) }?.cursor)
        #expect(try await f.store.pruneRecords(dataset, through: through, limit: 5).count == 5)
        let before = try await R.sequences(f)
        // As a process that did not see the loads: the last page sends every payload (a process
        // that did would send 10's alone, and 50's deletion would take the second call).
        Self.forgetRuns(f)
        let ways = Self.ways(f)

        let run = try await R.fullRun(
            f,
            [
                (R.page(100..<200), ModelResult()),
                (R.page(200..<300), ModelResult()),
                (R.page((0..<100).filter { $0 != 50 }).map { $0.id == R.id(10) ? order(R.id(10), ["v": 1]) : $0 } + R.page([50]), ModelResult(added: 1, updated: 1)),
            ])
        #expect(run.results["Order"] == ModelResult(added: 1, updated: 1))
        if let delta = Self.delta(ways, Self.ways(f)) { #expect(delta == Ways(alone: 2, aligned: 3, upserts: 1, saved: 1, sent: 7)) }

        let records = Dictionary(uniqueKeysWithValues: try await f.store.allChanges(dataset).map { ($0.id, $0) })
        try R.expectPayloadsBack(200..<205, in: records, unmovedFrom: before)
        #expect(records[R.id(50)]?.deletedAt == nil && records[R.id(50)]?.action == .added, "added again")
        #expect(try await R.live(f)[R.id(10)] == 1)
        #expect((records[R.id(10)]?.cursor.sequence ?? 0) > (before[R.id(50)] ?? .max), "the changed record moved to the end of the feed")
        #expect(try await R.live(f).count == 300)
    }

    /// A page whose changed records a webhook execution saw in the window already, and whose
    /// unchanged ones nothing saw yet: the unchanged ones are marked seen all the same (the run
    /// deletes nothing it saved).
    @Test(arguments: StoreKind.available) func aPagesUnchangedRecordsAreSeenWhenItsChangedOnesWereSeenAlready(_ kind: StoreKind) async throws {
        let (f, refresh, webhook) = try await Self.refreshBesideAWebhook(kind)
        // Ten records seen unchanged by the webhook execution in the run's window (too few for a range: stamped).
        #expect(try await f.store.saveRecords(R.page(100..<110), model: "Order", checkpoint: nil, for: webhook) == ModelResult())

        #expect(try await f.store.saveRecords(R.page(100..<120, changing: 100..<110, to: 1), model: "Order", checkpoint: nil, for: refresh) == ModelResult(updated: 10))
        #expect(try await f.store.saveRecords(R.page(120..<300), model: "Order", checkpoint: nil, for: refresh) == ModelResult())
        let run = try await f.store.completeRun(
            refresh, RunCompletion(outcome: .succeeded, models: ["Order"], deleteUnseenModels: ["Order"], clearCheckpoint: true))
        #expect(run.results["Order"] == ModelResult(updated: 10))
        #expect(try await R.live(f).count == 300)
    }

    /// An unchanged page's checkpoint is saved by the statement that looks it up, and a changed
    /// page's by the statement that writes its changes — never before them.
    @Test(arguments: StoreKind.available) func aPagesCheckpointIsSavedWithItsRecords(_ kind: StoreKind) async throws {
        let (f, _, _) = try await R.loaded(kind, 0..<300)
        Self.forgetRuns(f)
        let started = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: true))
        func checkpoint() async throws -> JSONValue? { try await f.store.variantState(baseVariant)?.checkpoint?["page"] }
        _ = try await f.store.saveRecords(R.page(0..<100), model: "Order", checkpoint: ["page": 1], for: started.lease)
        let ways = Self.ways(f)
        #expect(try await f.store.saveRecords(R.page(100..<200), model: "Order", checkpoint: ["page": 2], for: started.lease) == ModelResult())
        #expect(try await checkpoint() == 2)
        #expect(
            try await f.store.saveRecords(R.page(200..<300, changing: [250], to: 1), model: "Order", checkpoint: ["page": 3], for: started.lease)
                == ModelResult(updated: 1))
        #expect(try await checkpoint() == 3)
        #expect(try await R.live(f)[R.id(250)] == 1)
        if let delta = Self.delta(ways, Self.ways(f)) { #expect(delta == Ways(alone: 2, aligned: 2, upserts: 1, sent: 1), "both pages alone") }
    }

    /// The upsert alone writes nothing — no record, head, count or checkpoint — when what it expects
    /// no longer holds: the kinds its lookup foretold (the statement fails whole on the counts), the
    /// dataset's head (another writer came between the two calls), or the run's counts (its page of
    /// another model). With nothing in the way, the same page then goes through both calls.
    @Test func anUpsertAloneThatFindsOtherThanItsLookupWritesNothing() async throws {
        guard StoreKind.available.contains(.postgres) else { return }
        let (f, refresh, webhook) = try await Self.refreshBesideAWebhook(.postgres)
        let store = try #require(f.store as? PostgresStore)
        let page = R.page(100..<200, changing: [110, 150], to: 1)
        guard case .toWrite(let lookup, let head) = try await store.lookUpPageAlone(page, model: "Order", checkpoint: nil, for: refresh) else {
            Issue.record("the page needs two writes")
            return
        }
        #expect(lookup.kinds == [.changed, .changed])
        func state() async throws -> [String] {
            let run = try await f.store.runs(of: baseVariant, limit: 1).first { $0.id == refresh.runId }
            let head = try await f.onDatabase { try await $0.integer("SELECT last_seq FROM datasets WHERE model = 'Order'") }
            return [
                "\(try await R.sequences(f).sorted { $0.key < $1.key })", "\(try await R.live(f).sorted { $0.key < $1.key })", "\(head)",
                "\(run?.results ?? [:])", "\(try await f.store.variantState(baseVariant)?.checkpoint?.json ?? "none")",
            ]
        }
        let before = try await state()

        // Other kinds than the lookup's: the upsert's counts differ, the statement fails whole.
        let foretold = try PageLookup(writes: lookup.indices.map { Int64($0 + 1) * 4 + 1 }, aligned: true, count: page.count)
        #expect(try await store.upsertPageAlone(page, foretold, model: "Order", checkpoint: ["page": 2], for: refresh, after: head) == nil)
        #expect(try await state() == before)

        // Another writer between the lookup and the upsert: the head moved.
        #expect(try await f.store.saveRecords(R.page([250], value: 9), model: "Order", checkpoint: nil, for: webhook) == ModelResult(updated: 1))
        let moved = try await state()
        #expect(try await store.upsertPageAlone(page, lookup, model: "Order", checkpoint: ["page": 2], for: refresh, after: head) == nil)
        #expect(try await state() == moved)

        // The run's counts changed between the two (a page of another model of the same run): the
        // upsert would write them back stale.
        guard case .toWrite(let again, let current) = try await store.lookUpPageAlone(page, model: "Order", checkpoint: nil, for: refresh) else {
            Issue.record("the page still needs two writes")
            return
        }
        #expect(try await f.store.saveRecords(R.page([900]), model: "Customer", checkpoint: nil, for: refresh) == ModelResult(added: 1))
        let counted = try await state()
        #expect(try await store.upsertPageAlone(page, again, model: "Order", checkpoint: ["page": 2], for: refresh, after: current) == nil)
        #expect(try await state() == counted)

        // Nothing in the way: the same page goes through both calls (without its payloads, which
        // the lookups above, finding writes, would have sent with the next page, as would a
        // process that saw the dataset's last run).
        store.changingPages.unmark(runId: refresh.runId, model: "Order")
        Self.forgetRuns(f)
        let ways = Self.ways(f)
        #expect(try await f.store.saveRecords(page, model: "Order", checkpoint: ["page": 2], for: refresh) == ModelResult(updated: 2))
        #expect(Self.delta(ways, Self.ways(f)) == Ways(alone: 1, aligned: 1, upserts: 1, sent: 2))
        #expect(try await f.store.variantState(baseVariant)?.checkpoint?["page"] == 2)
    }

    /// A run that lost its lease after an unchanged page — or a changed one, its next page marked to
    /// send its payloads with the lookup — writes nothing more with its next one: no record, no
    /// checkpoint, no count. It gets the error the transaction gives; the attempt that took the run
    /// over saves the same page.
    @Test(arguments: StoreKind.available, FirstLoadPageTests.Loss.allCases.flatMap { loss in [false, true].map { (loss, $0) } })
    func aLaterPageOfARunThatLostItsLeaseWritesNothing(_ kind: StoreKind, _ test: (loss: FirstLoadPageTests.Loss, changed: Bool)) async throws {
        let (loss, changed) = test
        let clock = TestClock()
        let f = try await StoreFixture(kind, clock: { clock.now })
        _ = try await f.store.saveRecords(R.page(0..<300), model: "Order", of: baseVariant)
        try await f.store.enqueueRuns([baseVariant])
        let claim = RunClaim(leaseSeconds: 60, maxRunsPerConnection: 10, syncs: [FirstLoadPageTests.orders: false])
        let first = try #require(try await f.store.claimRun(claim))
        let firstPage = R.page(0..<100, changing: changed ? [5] : [], to: 1)
        let counted = ModelResult(updated: changed ? 1 : 0)
        #expect(try await f.store.saveRecords(firstPage, model: "Order", checkpoint: ["page": 1], for: first.started.lease) == counted)
        if let store = f.store as? PostgresStore {
            #expect(store.changingPages.contains(runId: first.started.runId, model: "Order") == changed, "the next page sends its payloads")
        }
        let ways = Self.ways(f)

        let second = try await loss.happen(to: first, f, clock: clock, claim: claim)
        let next = R.page(100..<200, changing: changed ? [150] : [], to: 1)
        let late = await #expect(throws: TributaryError.self) {
            _ = try await f.store.saveRecords(next, model: "Order", checkpoint: ["page": 2], for: first.started.lease)
        }
        #expect(late?.code == loss.error)
        #expect(try await f.store.variantState(baseVariant)?.checkpoint?["page"] == 1)
        #expect(try await R.live(f)[R.id(150)] == 0)
        #expect(try await f.store.runs(of: baseVariant, limit: 1).first?.results["Order"] ?? ModelResult() == counted)
        if let delta = Self.delta(ways, Self.ways(f)) { #expect(delta == Ways(alone: 0, aligned: 0, sent: 0), "the statement was refused") }

        guard let second else { return }
        #expect(try await f.store.saveRecords(next, model: "Order", checkpoint: ["page": 2], for: second.started.lease) == counted)
        #expect(try await f.store.variantState(baseVariant)?.checkpoint?["page"] == 2)
        #expect(try await R.live(f)[R.id(150)] == (changed ? 1 : 0))
    }

    /// A webhook execution changes a record between two unchanged pages of a refresh: the next page,
    /// holding that record's old version, is not aligned (the record moved) and writes it back,
    /// counted as updated.
    @Test(arguments: StoreKind.available) func aWebhooksWriteBetweenTwoPagesIsSeenByTheNext(_ kind: StoreKind) async throws {
        let (f, refresh, webhook) = try await Self.refreshBesideAWebhook(kind)
        #expect(try await f.store.saveRecords(R.page([150], value: 7), model: "Order", checkpoint: nil, for: webhook) == ModelResult(updated: 1))
        let ways = Self.ways(f)

        #expect(try await f.store.saveRecords(R.page(100..<200), model: "Order", checkpoint: nil, for: refresh) == ModelResult(updated: 1))
        #expect(try await f.store.saveRecords(R.page(200..<300), model: "Order", checkpoint: nil, for: refresh) == ModelResult())
        if let delta = Self.delta(ways, Self.ways(f)) { #expect(delta == Ways(alone: 1, aligned: 1, sent: 1)) }
        let run = try await f.store.completeRun(
            refresh, RunCompletion(outcome: .succeeded, models: ["Order"], deleteUnseenModels: ["Order"], clearCheckpoint: true))
        #expect(run.results["Order"] == ModelResult(updated: 1))
        let live = try await R.live(f)
        #expect(live.count == 300 && live[R.id(150)] == 0, "the refresh's version")
    }

    /// A webhook execution's pages never take the autocommit statements (their seen generation is
    /// the variant's open window, and a checkpoint is not theirs to save), even with the run marked
    /// for them: the statement refuses it in SQL and the transaction names the error.
    @Test(arguments: [false, true]) func aWebhookExecutionIsRefusedTheStatementsInSQL(withPayloads: Bool) async throws {
        guard StoreKind.available.contains(.postgres) else { return }
        let f = try await StoreFixture(.postgres)
        let store = try #require(f.store as? PostgresStore)
        _ = try await f.store.importConnection(
            ConnectionImport(ref: connection, metadata: [:], connectionConfig: [:], credentialsType: "NONE", sealedCredentials: nil), baseVariantsOf: ["orders"])
        _ = try await f.store.saveRecords(R.page(0..<100), model: "Order", of: baseVariant)
        _ = try await f.store.enqueueProviderWebhook(for: [baseVariant], type: nil, payload: Array("{}".utf8))
        let webhook = try #require(try await f.store.claimProviderWebhook(leaseSeconds: 60, maxAttempts: 3))
        store.lookingUpAlone.mark(runId: webhook.started.runId, model: "Order")
        if withPayloads { store.changingPages.mark(runId: webhook.started.runId, model: "Order") }
        let ways = Self.ways(f)
        let refused = await #expect(throws: TributaryError.self) {
            _ = try await f.store.saveRecords(R.page(0..<100), model: "Order", checkpoint: ["page": 1], for: webhook.started.lease)
        }
        #expect(refused?.code == .invalidCheckpoint)
        #expect(try await f.store.variantState(baseVariant)?.checkpoint == nil)
        #expect(Self.delta(ways, Self.ways(f)) == Ways(alone: 0, aligned: 0, sent: 0))
        #expect(try await f.store.saveRecords(R.page(0..<100, changing: [5], to: 1), model: "Order", checkpoint: nil, for: webhook.started.lease) == ModelResult(updated: 1))
        #expect(Self.delta(ways, Self.ways(f)) == Ways(alone: 0, aligned: 1, sent: 1), "in the transaction")
    }

    /// The page functions carry `jit = off`, whatever the session's setting: their cost estimates
    /// pass `jit_above_cost` on a large analysed dataset, and compiling costs far more than running
    /// them. The check keeps one generic plan (its custom plans looked cheaper to PostgreSQL, which
    /// then planned each of its statements at every call).
    @Test func thePageFunctionsAreNeverCompiledByJIT() async throws {
        guard StoreKind.available.contains(.postgres) else { return }
        let f = try await StoreFixture(.postgres)
        let settings = try await f.onDatabase { database in
            var settings: [String: [String]] = [:]
            let rows = try await database.connection.query(
                """
                SELECT proname, coalesce(proconfig, '{}') FROM pg_proc
                WHERE proname LIKE 'tributary\\_%\\_page' OR proname LIKE 'tributary\\_check\\_%' OR proname LIKE 'tributary\\_upsert\\_%' OR proname IN ('tributary_look_up_alone', 'tributary_save_alone')
                """,
                logger: database.logger)
            for try await (name, config) in rows.decode((String, [String]).self) { settings[name] = config }
            return settings
        }
        #expect(settings.count == 8)
        for (name, config) in settings { #expect(config.contains("jit=off"), "\(name)") }
        for name in ["tributary_check_aligned", "tributary_check_skipping", "tributary_upsert_records"] {
            #expect(settings[name]?.contains("plan_cache_mode=force_generic_plan") == true, "\(name): planned once per session")
        }
    }

    /// A PostgreSQL database as the release before `v12-page-check` left it is upgraded in place,
    /// and its pages are then aligned with their rows.
    @Test func aDatabaseWithoutTheCheckFunctionIsUpgradedInPlace() async throws {
        guard StoreKind.available.contains(.postgres) else { return }
        let (f, _, _) = try await R.loaded(.postgres, 0..<300)
        let store = try #require(f.store as? PostgresStore)
        try await f.onDatabase { database in
            let function = "SELECT count(*)::int8 FROM pg_proc WHERE proname = 'tributary_check_page'"
            // The way back to that release, as docs/OPERATIONS.md gives it.
            for statement in R.v12WayBack { try await database.run(statement) }
            #expect(try await database.integer(function) == 0)
            #expect(try await database.integer("SELECT count(*)::int8 FROM pg_proc WHERE proname = 'tributary_look_up_page' AND proconfig IS NULL") == 1)
            try await store.migrate()
            #expect(try await database.integer(function) == 1)
            #expect(try await database.integer("SELECT count(*)::int8 FROM pg_proc WHERE proname = 'tributary_look_up_page' AND proconfig = '{jit=off}'") == 1)
        }

        let ways = Self.ways(f)
        let run = try await R.fullRun(f, [(R.page(0..<100), ModelResult()), (R.page(100..<200), ModelResult())])
        #expect(run.results["Order"] == ModelResult(deleted: 100))
        #expect(Self.delta(ways, Self.ways(f)) == Ways(alone: 1, aligned: 2, sent: 0))
    }

    /// A PostgreSQL database as the release before `v13-page-upsert` left it is upgraded in place,
    /// and an aligned page's changes are then upserted alone by the new function.
    @Test func aDatabaseWithoutTheUpsertFunctionsIsUpgradedInPlace() async throws {
        guard StoreKind.available.contains(.postgres) else { return }
        let (f, before, _) = try await R.loaded(.postgres, 0..<300)
        Self.forgetRuns(f)
        let store = try #require(f.store as? PostgresStore)
        try await f.onDatabase { database in
            let functions = """
                SELECT count(*)::int8 FROM pg_proc
                WHERE proname IN ('tributary_upsert_records', 'tributary_upsert_alone', 'tributary_check_aligned', 'tributary_check_skipping')
                """
            // The way back to that release, as docs/OPERATIONS.md gives it.
            for statement in R.v13WayBack { try await database.run(statement) }
            #expect(try await database.integer(functions) == 0)
            try await store.migrate()
            #expect(try await database.integer(functions) == 4)
        }

        let ways = Self.ways(f)
        let run = try await R.fullRun(
            f, [(R.page(0..<100), ModelResult()), (R.page(100..<200, changing: [150], to: 1), ModelResult(updated: 1)), (R.page(200..<300), ModelResult())])
        #expect(run.results["Order"] == ModelResult(updated: 1))
        #expect(Self.delta(ways, Self.ways(f)) == Ways(alone: 2, aligned: 3, upserts: 1, sent: 1))
        #expect(try await R.live(f)[R.id(150)] == 1)
        #expect((try await R.sequences(f)[R.id(150)] ?? 0) > (before[R.id(299)] ?? .max), "moved to the end of the feed")
    }
}
