import Foundation
import GRDB
import PropertyBased
import Testing
import TributaryCore
@testable import TributaryPostgres
@testable import TributarySQLite
import TributaryStore
import TributaryTestSupport

/// Deletion detection with seen ranges: a full refresh's page of unchanged records in feed order is
/// recorded as one range instead of a stamp per record, and every run still deletes exactly the
/// records it did not see — whatever the pages' order, overlaps, holes and tombstones, across
/// resumed attempts and replaced windows. Both stores run every test (they verify spans at
/// different moments — SQLite after the page's write, PostgreSQL before it — and agree).
@Suite("Seen ranges in deletion detection (SQLite and PostgreSQL)")
struct SeenRangeStoreTests {
    /// Ids `r000`, `r001`, …
    static func id(_ n: Int) -> String { "r" + String(1000 + n).dropFirst() }

    static func page(_ numbers: some Sequence<Int>, value: Int = 0, changed: Set<Int> = []) -> [PreparedRecord] {
        numbers.map { order(id($0), ["v": .number(JSONNumber(changed.contains($0) ? value + 1 : value))]) }
    }

    /// A full-refresh run saving `pages`, then finished with `outcome` (its window closes only on success).
    @discardableResult
    static func fullRun(
        _ store: any Store, _ variant: VariantRef, pages: [[PreparedRecord]], checkpoint: Bool = false, outcome: RunOutcome = .succeeded
    ) async throws -> (StartedRun, RunRecord) {
        let started = try await store.startRun(variant, RunStart(tracksDeletes: true))
        for page in pages { _ = try await store.saveRecords(page, model: "Order", for: started.lease) }
        if checkpoint { try await store.saveCheckpoint(["after": .string("page")], for: started.lease) }
        let done = try await store.completeRun(
            started.lease,
            RunCompletion(outcome: outcome, models: ["Order"], deleteUnseenModels: ["Order"], clearCheckpoint: outcome == .succeeded))
        return (started, done)
    }

    /// The ids of the records stamped seen in `generation`, read from the database.
    static func stamped(_ f: StoreFixture, in generation: Int64) async throws -> [String] {
        try await texts(f, "SELECT external_id FROM records WHERE seen_generation = \(generation) ORDER BY external_id")
    }

    /// A query's single text column, from either store's database (`sql` holds no outside values).
    static func texts(_ f: StoreFixture, _ sql: String) async throws -> [String] {
        if let sqlite = f.store as? SQLiteStore {
            return try await sqlite.pool.read { db in try String.fetchAll(db, sql: sql) }
        }
        return try await f.onDatabase { try await $0.column(sql, as: String.self) }
    }

    static func live(_ store: any Store, _ variant: VariantRef = baseVariant) async throws -> [Int] {
        try await store.liveRecords(variant.dataset("Order")).keys.compactMap { Int($0.dropFirst()) }.sorted()
    }

    @Test(arguments: StoreKind.available) func anUnchangedPageInFeedOrderIsOneRangeAndStampsNothing(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        _ = try await f.store.saveRecords(Self.page(0..<60), model: "Order", of: baseVariant)
        // Three pages, the middle one with two changed records: all three become ranges; only the
        // two changed records are written (and so stamped).
        let (started, run) = try await Self.fullRun(
            f.store, baseVariant, pages: [Self.page(0..<20), Self.page((20..<40).reversed(), changed: [25, 31]), Self.page(40..<56)])
        #expect(run.results["Order"] == ModelResult(updated: 2, deleted: 4))
        #expect(try await Self.live(f.store) == Array(0..<56))
        let stamped = try await Self.stamped(f, in: try #require(started.deletionGeneration))
        #expect(stamped == [Self.id(25), Self.id(31)], "unchanged records in a verified range are not stamped")
        // The closed window leaves no ranges behind.
        #expect(try await f.census().seenRanges == 0)
        guard let sqlite = f.store as? SQLiteStore else { return }

        // While a window is open its ranges are kept (here: after a failed attempt with a checkpoint).
        let (_, failed) = try await Self.fullRun(f.store, baseVariant, pages: [Self.page(0..<20), Self.page(20..<40)], checkpoint: true, outcome: .failed(message: "boom"))
        #expect(failed.status == .failed)
        // 0…19 is one range; 25 and 31 moved in the feed when they changed, so the second page is a
        // range of the other 18 and two stamps.
        let covered = try await sqlite.pool.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT (SELECT group_concat(CAST(substr(r.external_id, 2) AS INTEGER)) FROM records r
                        WHERE r.dataset_id = s.dataset_id AND (r.seq, r.id) BETWEEN (s.lo_seq, s.lo_id) AND (s.hi_seq, s.hi_id))
                    FROM seen_ranges s ORDER BY s.lo_seq, s.lo_id
                    """
            ).map { row -> [Int] in (row[0] as String? ?? "").split(separator: ",").compactMap { Int($0) }.sorted() }
        }
        #expect(covered == [Array(0..<20), (20..<40).filter { $0 != 25 && $0 != 31 }])
        // A copy (tributary migrate) carries a range's records as stamped in its window.
        let snapshot = try sqlite.copySnapshot()
        let columns = try await snapshot.copyColumns(CopyTable("records"))
        let rows = try await snapshot.copyRows(CopyTable("records"), columns: columns, after: nil, limit: 1000)
        let idColumn = try #require(columns.firstIndex(of: "external_id")), seenColumn = try #require(columns.firstIndex(of: "seen_generation"))
        let window = try #require(try await f.store.variantState(baseVariant)?.deletionGeneration)
        for row in rows {
            guard case .text(let external) = row[idColumn], let n = Int(external.dropFirst()) else { continue }
            #expect((row[seenColumn] == .integer(window)) == (n < 40), "\(external)")
        }
    }

    /// Ids like `ord_7`, `ord_10`, `ord_1000`, paged in numeric order: their byte order interleaves
    /// the pages (`ord_10` < `ord_100` < `ord_11`), their feed order does not.
    @Test(arguments: StoreKind.available) func numericIdsPagedInTheFirstLoadsOrderAreRanged(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        func pages(_ numbers: [Int]) -> [[PreparedRecord]] {
            stride(from: 0, to: numbers.count, by: 50).map { start in
                numbers[start..<min(numbers.count, start + 50)].map { order("ord_\($0)", ["v": 1]) }
            }
        }
        let (_, first) = try await Self.fullRun(f.store, baseVariant, pages: pages(Array(1...300)))
        #expect(first.results["Order"] == ModelResult(added: 300))
        // The provider lost 150; the pages after it shift by one against the first load's.
        let (started, run) = try await Self.fullRun(f.store, baseVariant, pages: pages((1...300).filter { $0 != 150 }))
        #expect(run.results["Order"] == ModelResult(deleted: 1))
        #expect(try await f.store.liveRecords(baseVariant.dataset("Order")).count == 299)
        #expect(try await f.store.liveRecords(baseVariant.dataset("Order"))["ord_150"] == nil)
        // Every page is a verified range but the one around the hole (101…149 and 151): its whole
        // span holds 150, so it is tried by change sequence — 101…149 is a range, 151 (alone from
        // the first load's next page) is stamped.
        #expect(try await Self.stamped(f, in: try #require(started.deletionGeneration)) == ["ord_151"])
        // Then 210 goes, in the middle of the first load's block 201…250, which the page 202…252
        // (less 210) spans together with 251 and 252 from the next block: neither that span nor
        // block 201…250's holds only the page's records, but its run of consecutive rows 211…250
        // does. 202…209 is too short for a range; 251 and 252 too. (PostgreSQL matches the page to
        // its rows in order, skipping 210: its run 211…252 is consecutive in the feed across the two
        // blocks, and one range.)
        let (third, again) = try await Self.fullRun(f.store, baseVariant, pages: pages((1...300).filter { $0 != 150 && $0 != 210 }))
        #expect(again.results["Order"] == ModelResult(deleted: 1))
        #expect(try await f.store.liveRecords(baseVariant.dataset("Order")).count == 298)
        #expect(
            try await Self.stamped(f, in: try #require(third.deletionGeneration))
                == (202...209).map { "ord_\($0)" } + (kind == .postgres ? [] : ["ord_251", "ord_252"]))
    }

    @Test(arguments: StoreKind.available) func prunedRecordsInARangeGetTheirPayloadsBack(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        _ = try await f.store.saveRecords(Self.page(0..<40), model: "Order", of: baseVariant)
        let dataset = baseVariant.dataset("Order")
        let before = try await f.store.allChanges(dataset)
        #expect(try await f.store.pruneRecords(dataset, through: before[19].cursor, limit: 100).count == 20)
        let (_, run) = try await Self.fullRun(f.store, baseVariant, pages: [Self.page(0..<40)])
        #expect(run.results["Order"] == ModelResult())
        let after = try await f.store.allChanges(dataset)
        #expect(after.map(\.id) == before.map(\.id), "nothing moved in the feed")
        #expect(after.map(\.cursor) == before.map(\.cursor))
        #expect(after.map(\.json) == before.map(\.json), "every payload is back")
        #expect(after.allSatisfy { $0.prunedAt == nil && $0.deletedAt == nil })
    }

    @Test(arguments: StoreKind.available) func aRecordInsideAPagesSpanButNotInThePageIsDeleted(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        _ = try await f.store.saveRecords(Self.page(0..<40), model: "Order", of: baseVariant)
        // The page spans 0…39 but skips 7 and 30: its span holds records it did not see.
        let (_, run) = try await Self.fullRun(f.store, baseVariant, pages: [Self.page((0..<40).filter { $0 != 7 && $0 != 30 })])
        #expect(run.results["Order"] == ModelResult(deleted: 2))
        #expect(try await Self.live(f.store) == (0..<40).filter { $0 != 7 && $0 != 30 })
    }

    @Test(arguments: StoreKind.available) func overlappingAndShuffledPagesDeleteExactlyTheUnseen(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        _ = try await f.store.saveRecords(Self.page(0..<100), model: "Order", of: baseVariant)
        // A tombstone inside a later page's span, a page inside an earlier one's span (its range
        // would end inside the earlier one: 25…29 are seen only by the first page's range), pages
        // that overlap at their ends, one shuffled, and a re-added record.
        _ = try await f.store.deleteRecords(ids: [Self.id(65)], model: "Order", of: baseVariant)
        let pages = [
            Self.page(0..<30), Self.page(5..<25), Self.page(30..<50), Self.page([55, 52, 59, 51, 58, 54, 53, 57, 56, 50, 60, 61, 62, 63, 64, 66, 67, 68]),
            Self.page(70..<90), Self.page(80..<95), Self.page([65]),
        ]
        let (_, run) = try await Self.fullRun(f.store, baseVariant, pages: pages)
        #expect(run.results["Order"] == ModelResult(added: 1, deleted: 6))
        #expect(try await Self.live(f.store) == Array(0..<69) + Array(70..<95))
    }

    @Test(arguments: StoreKind.available) func aResumedWindowKeepsWhatTheInterruptedAttemptSaw(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        _ = try await f.store.saveRecords(Self.page(0..<60), model: "Order", of: baseVariant)
        // Attempt one sees 0…19 and 20…39, checkpoints, and fails; attempt two resumes the window and sees 40…49.
        let (first, _) = try await Self.fullRun(f.store, baseVariant, pages: [Self.page(0..<20), Self.page(20..<40)], checkpoint: true, outcome: .failed(message: "crash"))
        let second = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: true))
        #expect(second.resumesWindow)
        #expect(second.deletionGeneration == first.deletionGeneration)
        _ = try await f.store.saveRecords(Self.page(40..<50), model: "Order", for: second.lease)
        let done = try await f.store.completeRun(
            second.lease, RunCompletion(outcome: .succeeded, models: ["Order"], deleteUnseenModels: ["Order"], clearCheckpoint: true))
        #expect(done.results["Order"] == ModelResult(deleted: 10))
        #expect(try await Self.live(f.store) == Array(0..<50))
    }

    @Test(arguments: StoreKind.available) func aReplacedWindowsRangesSeeNothing(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        _ = try await f.store.saveRecords(Self.page(0..<60), model: "Order", of: baseVariant)
        // Attempt one sees 0…39 and fails without a checkpoint: the next run opens a new window,
        // in which 0…39 were not seen. It sees too few records to add ranges of its own, so the
        // old window's ranges are still there when it ends.
        let (first, _) = try await Self.fullRun(f.store, baseVariant, pages: [Self.page(0..<20), Self.page(20..<40)], outcome: .failed(message: "crash"))
        let (second, run) = try await Self.fullRun(f.store, baseVariant, pages: [Self.page(40..<50)])
        #expect(second.deletionGeneration != first.deletionGeneration)
        #expect(run.results["Order"] == ModelResult(deleted: 50))
        #expect(try await Self.live(f.store) == Array(40..<50))
        // And a later window that sees everything again keeps everything.
        let (_, again) = try await Self.fullRun(f.store, baseVariant, pages: [Self.page(0..<30), Self.page(30..<60)])
        #expect(again.results["Order"] == ModelResult(added: 50))
        #expect(try await Self.live(f.store) == Array(0..<60))
        // A replaced window's ranges do not stand in the way of the next window's over the same
        // records: 0…29 (re-added together above) is a range again, not 30 stamps. 40…49, the
        // only ones of the last page not re-added with the rest, are too few for a range.
        _ = try await Self.fullRun(f.store, baseVariant, pages: [Self.page(0..<30)], outcome: .failed(message: "crash"))
        let (last, complete) = try await Self.fullRun(f.store, baseVariant, pages: [Self.page(0..<30), Self.page(30..<60)])
        #expect(complete.results["Order"] == ModelResult())
        #expect(try await Self.stamped(f, in: try #require(last.deletionGeneration)) == (40..<50).map(Self.id))
        #expect(try await Self.live(f.store) == Array(0..<60))
    }

    /// Random full refreshes over 80 ids (a fifth of them gone at each) — pages in order or not, overlapping or not, with holes,
    /// changes, tombstones and interrupted attempts — against a plain model of which records live.
    @Test(arguments: StoreKind.available) func randomWindowsDeleteExactlyWhatTheModelDoes(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        await propertyCheck(count: 25, input: Gen.int(in: 0...1_000_000).array(of: 1...12)) { codes in
            do {
                try await Self.check(codes, f.store)
            } catch {
                Issue.record("unexpected error: \(error)")
            }
        }
    }

    /// Random full refreshes as above, of 300 ids in long pages mostly in order, the provider
    /// holding 95–99% of them: pages that skip a few rows of their span (aligned on PostgreSQL, each
    /// run between the skipped rows a seen range or stamps) make most of each run.
    @Test(arguments: StoreKind.available) func randomLongPagesHoldingMostDeleteExactlyWhatTheModelDoes(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        await propertyCheck(count: 15, input: Gen.int(in: 0...1_000_000).array(of: 1...8)) { codes in
            do {
                try await Self.check(codes, f.store, all: 0..<300, holding: 95...99, sizes: 40..<90, reordered: 6)
            } catch {
                Issue.record("unexpected error: \(error)")
            }
        }
    }

    /// One sequence of random windows (`codes`) over the ids `all`: the provider holds a share in
    /// `holding` percent of them, paged in chunks of `sizes`, one chunk in `reordered` reversed or
    /// shuffled (or one in three when nil).
    static func check(
        _ codes: [Int], _ store: any Store, all: Range<Int> = 0..<80, holding share: ClosedRange<Int>? = nil, sizes: Range<Int> = 10..<35,
        reordered: Int? = nil
    ) async throws {
        let variant = VariantRef(
            connection: ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: UUID().uuidString), syncName: "orders", variant: "base")
        var live: Set<Int> = Set(all)
        var stored: [Int: Int] = [:]  // each record's value; 0 unless a run changed it
        _ = try await store.saveRecords(page(all), model: "Order", of: variant)
        var openWindow: Set<Int> = []
        for code in codes {
            var random = SeededGenerator(seed: UInt64(code))
            let op = code % 5
            if op == 0 {
                // Tombstones in runs of their own, which close an open window.
                let gone = (0..<3).map { _ in Int.random(in: all, using: &random) }
                _ = try await store.deleteRecords(ids: gone.map(id), model: "Order", of: variant)
                live.subtract(gone)
                continue
            }
            // A full refresh: the provider holds a random subset; the run pages through it in
            // chunks (in order, reversed or shuffled; some overlapping the previous one), a few
            // values changed, and a few records deleted by the run itself first. op 3 fails after
            // checkpointing (the next run resumes its window); op 1, 2 and 4 succeed.
            let holding: [Int]
            if let share {
                let percent = Int.random(in: share, using: &random)
                holding = all.filter { _ in Int.random(in: 0..<100, using: &random) < percent }
            } else {
                holding = all.filter { _ in Int.random(in: 0..<10, using: &random) < 8 }
            }
            var pages: [[Int]] = []
            var start = 0
            while start < holding.count {
                let size = sizes.lowerBound + Int.random(in: 0..<sizes.count, using: &random)
                let from = Int.random(in: 0..<4, using: &random) == 0 ? max(0, start - 5) : start
                var chunk = Array(holding[from..<min(holding.count, start + size)])
                switch Int.random(in: 0..<(reordered.map { $0 * 2 } ?? 3), using: &random) {
                case 0: chunk.reverse()
                case 1: chunk.shuffle(using: &random)
                default: break
                }
                pages.append(chunk)
                start += size
            }
            let changed = Set(holding.filter { _ in Int.random(in: 0..<20, using: &random) == 0 })
            let started = try await store.startRun(variant, RunStart(tracksDeletes: true))
            let deletedByRun = Set((0..<Int.random(in: 0..<3, using: &random)).map { _ in Int.random(in: all, using: &random) })
            let batchDeleted = try await store.deleteRecords(ids: deletedByRun.map(id), model: "Order", for: started.lease)
            #expect(batchDeleted.deleted == deletedByRun.intersection(live).count)
            live.subtract(deletedByRun)
            var saved = ModelResult(), expected = ModelResult()
            for chunk in pages {
                saved += try await store.saveRecords(page(chunk, changed: changed), model: "Order", for: started.lease)
                for n in chunk {
                    let value = changed.contains(n) ? 1 : 0
                    if !live.contains(n) {
                        expected.added += 1
                    } else if stored[n, default: 0] != value {
                        expected.updated += 1
                    }
                    live.insert(n)
                    stored[n] = value
                }
            }
            #expect(saved == expected, "saved in \(codes)")
            let seen = Set(holding).union(started.resumesWindow ? openWindow : [])
            if op == 3 {
                try await store.saveCheckpoint(["at": .number(JSONNumber(code))], for: started.lease)
                _ = try await store.completeRun(started.lease, RunCompletion(outcome: .failed(message: "boom"), models: ["Order"], deleteUnseenModels: ["Order"]))
                openWindow = seen
            } else {
                let run = try await store.completeRun(
                    started.lease, RunCompletion(outcome: .succeeded, models: ["Order"], deleteUnseenModels: ["Order"], clearCheckpoint: true))
                // A run that found a checkpoint from outside its window (the tombstones' own runs
                // close the window) distrusts it and has no window: it deletes nothing.
                let unseen = started.deletionGeneration == nil ? [] : live.subtracting(seen)
                #expect(run.results["Order"]?.deleted ?? 0 == batchDeleted.deleted + unseen.count, "deleted in \(codes)")
                live.subtract(unseen)
                openWindow = []
            }
            #expect(try await Self.live(store, variant) == live.sorted(), "live after \(code) in \(codes)")
        }
    }
}
