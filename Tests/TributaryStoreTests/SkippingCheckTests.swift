import PostgresNIO
import Testing
import TributaryCore
@testable import TributaryPostgres
import TributaryStore
import TributaryTestSupport

/// `tributary_check_skipping` as migration `v16-skipping-walk` makes it (one walk over the page's
/// span) against the same function as `v13-page-upsert` shipped it (the skipped rows found by an
/// anti-join with the page's ids, then the span read again): on random rows and random pages over
/// them, both answer the same and leave the same seen stamps and ranges.
@Suite("The skipping page check's walk (PostgreSQL)")
struct SkippingCheckTests {
    typealias R = ResavedPageTests

    /// A dataset row as the test sets it.
    struct Row {
        var externalId: String
        var rowId: Int64
        var hash: Int64
        var seq: Int64 = 0
        var deleted = false
        var pruned = false
        var seenGeneration: Int64 = 0
    }

    /// A call of the check: the page's ids and hashes, and how many unchanged records not yet seen
    /// make a run of it a seen range.
    struct Call: CustomStringConvertible {
        var ids: [String]
        var hashes: [Int64?]
        var form = HashForm.list
        var minRecords: Int64
        /// Rows of the span the page was made to skip (before any reordering).
        var skipped: Int
        var description: String {
            "\(ids.count) ids from \(ids.first ?? "-") to \(ids.last ?? "-"), \(skipped) skipped, hashes \(form), min \(minRecords)"
        }

        /// The hashes as an `int8[]` literal in `form`.
        var hashesSQL: String {
            let values = hashes.map { $0.map(String.init) ?? "NULL" }
            switch form {
            case .list: return "'{\(values.joined(separator: ","))}'::int8[]"
            case .fromZero: return "'[0:\(values.count - 1)]={\(values.joined(separator: ","))}'::int8[]"
            case .twoDimensional:
                let half = values.count / 2
                return "'{{\(values[..<half].joined(separator: ","))},{\(values[half...].joined(separator: ","))}}'::int8[]"
            }
        }
    }

    /// How a call's hashes are laid out: the store's (a list numbered from 1), or forms it never
    /// sends, which the check must take as v13's did.
    enum HashForm: CustomStringConvertible {
        case list, fromZero, twoDimensional
        var description: String { "\(self == .list ? "list" : self == .fromZero ? "from 0" : "2-D")" }
    }

    /// What a call answered and left: its writes (as text, nil when the page is not aligned), the
    /// dataset's seen ranges, and its rows' seen generations.
    struct Outcome: Equatable {
        var writes: String?
        var ranges: String
        var stamps: String
    }

    /// The window the calls check in: rows seen before it are at 0 or 1.
    static let generation: Int64 = 2

    @Test func theWalkAnswersAndWritesAsTheAntiJoinDid() async throws {
        guard StoreKind.available.contains(.postgres) else { return }
        let (f, _, _) = try await R.loaded(.postgres, 0..<400)
        try await f.onDatabase { database in
            let v13 = try #require(PostgresSchema.migrations.first { $0.name == "v13-page-upsert" })
            let old = try #require(PostgresSchema.statements(of: v13.sql).first { $0.hasPrefix("CREATE FUNCTION tributary_check_skipping(") })
            try await database.run(old.replacingOccurrences(of: "tributary_check_skipping(", with: "tributary_check_skipping_v13("))
            let dataset = try await database.integer("SELECT id FROM datasets WHERE model = 'Order'")
            var rows: [Row] = []
            for try await (externalId, rowId, hash) in try await database.connection.query(
                "SELECT external_id, id, hash FROM records WHERE dataset_id = \(dataset) ORDER BY id", logger: database.logger
            ).decode((String, Int64, Int64).self) {
                rows.append(Row(externalId: externalId, rowId: rowId, hash: hash))
            }
            #expect(rows.count == 400)

            var calls = 0, aligned = 0, alignedMasked = 0, alignedWithoutWrites = 0, alignedByTheLoop = 0, alignedByUnnest = 0, ranged = 0
            for seed in 1...30 {
                var random = SeededGenerator(seed: UInt64(seed))
                let feed = try await Self.scramble(&rows, marking: [0, 200, 40][seed % 3], dataset, database, &random)
                let marked = Set(feed.filter { $0.deleted || $0.pruned }.map(\.externalId))
                let before = try await Self.state(dataset, database)
                let edges = seed <= 10 ? Self.edges(feed, &random) : []
                let shapes: [Shape] = [.skippingMany] + Array(repeating: .any, count: 11)
                for (index, (call, expected)) in (shapes.map { (Self.call($0, feed, &random), Bool?.none) } + edges).enumerated() {
                    let new = try await Self.outcome(of: "tributary_check_skipping", call, dataset, database)
                    let old = try await Self.outcome(of: "tributary_check_skipping_v13", call, dataset, database)
                    #expect(new == old, "seed \(seed), call \(index): \(call)")
                    if let expected { #expect((new.writes != nil) == expected, "seed \(seed), call \(index): \(call)") }
                    calls += 1
                    guard let writes = new.writes else { continue }
                    aligned += 1
                    if index == 0 { alignedMasked += 1 }
                    if writes == "{}" {
                        alignedWithoutWrites += 1
                    } else if call.form == .list && !call.hashes.contains(nil) && marked.isDisjoint(with: call.ids) {
                        alignedByTheLoop += 1
                    } else {
                        alignedByUnnest += 1
                    }
                    if new.ranges != before.ranges { ranged += 1 }
                }
            }
            // The calls reach every way through the check: not aligned, aligned skipping few rows
            // (cut out) or many (filtered), with no records to write, its writes found by the loop
            // or by `unnest` (rows deleted or pruned, hashes not a plain list), its runs ranged or
            // stamped.
            #expect(aligned >= calls / 4 && aligned < calls, "\(aligned) of \(calls) aligned")
            #expect(alignedMasked >= 15, "\(alignedMasked) aligned skipping 50–69 rows")
            #expect(alignedWithoutWrites >= 15 && alignedByTheLoop >= 15 && alignedByUnnest >= 15,
                "aligned with no writes \(alignedWithoutWrites), by the loop \(alignedByTheLoop), by unnest \(alignedByUnnest)")
            #expect(ranged >= 15 && ranged < aligned, "\(ranged) of \(aligned) made ranges")
        }
    }

    /// Calls at the walk's edges, each with whether it must be aligned: 48 rows skipped (cut out)
    /// and 49 (filtered); the last skipped row the last read for the page (aligned) and the one
    /// after it (not aligned) — a page of 100, its first record, 140 or 141 skipped rows, the other
    /// 99; and the first of them with a changed record, its hashes numbered from 0, of two
    /// dimensions, or with a NULL. The NULL is an unseen live record's, and the records a range
    /// needs are its run's other fresh ones and one: v13 does not count it fresh, so that run is
    /// stamped, where counting it would make it a range.
    static func edges(_ feed: [Row], _ random: inout SeededGenerator) -> [(Call, Bool?)] {
        let minRecords: Int64 = [1, 10][Int.random(in: 0..<2, using: &random)]
        func page(_ rows: ArraySlice<Row>, skipping gone: Set<Int>) -> Call {
            let kept = rows.indices.filter { !gone.contains($0 - rows.startIndex) }.map { rows[$0] }
            return Call(ids: kept.map(\.externalId), hashes: kept.map(\.hash), minRecords: minRecords, skipped: gone.count)
        }
        let start = Int.random(in: 0..<(feed.count - 300), using: &random)
        let interior = (1..<299).shuffled(using: &random)
        let cut = page(feed[start..<start + 300], skipping: Set(interior.prefix(48)))
        let filtered = page(feed[start..<start + 300], skipping: Set(interior.prefix(49)))
        let last = Int.random(in: 0..<(feed.count - 241), using: &random)
        var changed = cut
        let change = Int.random(in: 1..<changed.hashes.count, using: &random)
        changed.hashes[change]? &+= 1
        var fromZero = changed, twoDimensional = changed, null = changed
        fromZero.form = .fromZero
        twoDimensional.form = .twoDimensional
        // The cut page's records (their places in the span) and which are fresh: unseen, live, unchanged.
        let places = (0..<300).filter { !interior.prefix(48).contains($0) }
        let fresh = places.indices.map { index in
            let row = feed[start + places[index]]
            return index != change && row.seenGeneration < generation && !row.deleted && !row.pruned
        }
        if let nulled = fresh.indices.filter({ fresh[$0] }).randomElement(using: &random) {
            var runStart = nulled, runEnd = nulled
            while runStart > 0 && places[runStart - 1] == places[runStart] - 1 { runStart -= 1 }
            while runEnd < places.count - 1 && places[runEnd + 1] == places[runEnd] + 1 { runEnd += 1 }
            null.hashes[nulled] = nil
            null.minRecords = Int64((runStart...runEnd).filter { fresh[$0] }.count)
        }
        return [
            (cut, true), (filtered, true),
            (page(feed[last..<last + 240], skipping: Set(1...140)), true), (page(feed[last..<last + 241], skipping: Set(1...141)), false),
            (changed, true), (fromZero, nil), (twoDimensional, nil), (null, nil),
        ]
    }

    /// The way back from migration `v16-skipping-walk` to the release before it (docs/OPERATIONS.md):
    /// its row deleted; the function stays as v16 made it (the same answer, faster).
    static let v16WayBack = ["DELETE FROM tributary_migrations WHERE name = 'v16-skipping-walk'"]

    /// A PostgreSQL database as the release before `v16-skipping-walk` left it (v13's function) is
    /// upgraded in place: the walk replaces the function, and pages that skip rows are then aligned.
    @Test func aDatabaseWithTheAntiJoinCheckIsUpgradedInPlace() async throws {
        guard StoreKind.available.contains(.postgres) else { return }
        let (f, _, _) = try await R.loaded(.postgres, 0..<300)
        let store = try #require(f.store as? PostgresStore)
        let walks = "SELECT count(*)::int8 FROM pg_proc WHERE proname = 'tributary_check_skipping' AND prosrc LIKE '%skip_rns_ := skip_rns_ || i_;%'"
        try await f.onDatabase { database in
            let v13 = try #require(PostgresSchema.migrations.first { $0.name == "v13-page-upsert" })
            let old = try #require(PostgresSchema.statements(of: v13.sql).first { $0.hasPrefix("CREATE FUNCTION tributary_check_skipping(") })
            for statement in Self.v16WayBack { try await database.run(statement) }
            try await database.run(old.replacingOccurrences(of: "CREATE FUNCTION", with: "CREATE OR REPLACE FUNCTION"))
            #expect(try await database.integer(walks) == 0)
            try await store.migrate()
            #expect(try await database.integer(walks) == 1)
            #expect(try await database.integer("SELECT count(*)::int8 FROM tributary_migrations WHERE name = 'v16-skipping-walk'") == 1)
        }
        let gone: Set = [105, 150, 151, 230]
        let ways = UnchangedPageTests.ways(f)
        let run = try await R.fullRun(
            f, [0..<100, 100..<200, 200..<300].map { (R.page($0.filter { !gone.contains($0) }), ModelResult()) })
        #expect(run.results["Order"] == ModelResult(deleted: 4))
        #expect(UnchangedPageTests.delta(ways, UnchangedPageTests.ways(f))?.aligned == 3, "the two pages that skip rows aligned too")
        #expect(try await R.live(f).keys.sorted() == (0..<300).filter { !gone.contains($0) }.map(R.id))
    }

    /// Gives the rows random places in the feed (a tenth moved after the others, sequences shared by
    /// several rows), deleted and pruned marks (one row in `marking` each, none when 0), seen
    /// generations, and the dataset a seen range of the window and an older one, at random; answers
    /// the rows in feed order.
    static func scramble(_ rows: inout [Row], marking: Int, _ dataset: Int, _ database: PostgresDatabase, _ random: inout SeededGenerator) async throws -> [Row] {
        for index in rows.indices {
            rows[index].seq = Int.random(in: 0..<10, using: &random) == 0 ? Int64.random(in: 100..<105, using: &random) : Int64(index / 40 + 1)
            rows[index].deleted = marking > 0 && Int.random(in: 0..<marking, using: &random) == 0
            rows[index].pruned = marking > 0 && Int.random(in: 0..<marking, using: &random) == 0
            rows[index].seenGeneration = [0, 0, 1, 2, 2][Int.random(in: 0..<5, using: &random)]
        }
        try await database.connection.query(
            """
            UPDATE records r SET seq = u.seq, deleted_at = CASE WHEN u.deleted THEN 1 END, pruned_at = CASE WHEN u.pruned THEN 1 END,
                seen_generation = u.seen
            FROM unnest(\(rows.map(\.externalId)), \(rows.map(\.seq)), \(rows.map(\.deleted)), \(rows.map(\.pruned)), \(rows.map(\.seenGeneration)))
                AS u(external_id, seq, deleted, pruned, seen)
            WHERE r.dataset_id = \(dataset) AND r.external_id = u.external_id
            """, logger: database.logger)
        let feed = rows.sorted { ($0.seq, $0.rowId) < ($1.seq, $1.rowId) }
        try await database.run("DELETE FROM seen_ranges WHERE dataset_id = \(dataset)")
        for generation: Int64 in [1, generation] where Bool.random(using: &random) {
            let lo = Int.random(in: 0..<feed.count, using: &random)
            let hi = min(feed.count - 1, lo + Int.random(in: 0..<120, using: &random))
            try await database.run(
                """
                INSERT INTO seen_ranges(dataset_id, lo_seq, lo_id, hi_seq, hi_id, generation)
                VALUES (\(dataset), \(feed[lo].seq), \(feed[lo].rowId), \(feed[hi].seq), \(feed[hi].rowId), \(generation))
                """)
        }
        return feed
    }

    enum Shape { case any, skippingMany }

    /// A page over a random span of the feed: some of its rows skipped (none, a few, a quarter or
    /// more; or, `skippingMany`, 50–69 of a span of 300), its ends kept or not, at times two records
    /// swapped, one repeated, a foreign id added, or the page reversed; a few records changed in a
    /// third of the pages.
    static func call(_ shape: Shape, _ feed: [Row], _ random: inout SeededGenerator) -> Call {
        var page: [Row]
        var skipped = 0
        switch shape {
        case .skippingMany:
            let start = Int.random(in: 0..<(feed.count - 300), using: &random)
            let span = Array(feed[start..<start + 300])
            let gone = Set((1..<299).shuffled(using: &random).prefix(Int.random(in: 50..<70, using: &random)))
            page = span.indices.filter { !gone.contains($0) }.map { span[$0] }
            skipped = gone.count
        case .any:
            let start = Int.random(in: 0..<feed.count, using: &random)
            let span = Array(feed[start..<min(feed.count, start + Int.random(in: 2...160, using: &random))])
            let rate = [0, 1, 5, 25, 45][Int.random(in: 0..<5, using: &random)]
            let keepsEnds = Int.random(in: 0..<5, using: &random) > 0
            page = span.indices.filter { index in
                (keepsEnds && (index == 0 || index == span.count - 1)) || Int.random(in: 0..<100, using: &random) >= rate
            }.map { span[$0] }
            skipped = span.count - page.count
        }
        var ids = page.map(\.externalId)
        let changing = [0, 0, 30][Int.random(in: 0..<3, using: &random)]
        var hashes: [Int64?] = page.map { changing > 0 && Int.random(in: 0..<changing, using: &random) == 0 ? $0.hash &+ 1 : $0.hash }
        if ids.count > 2 {
            let at = Int.random(in: 0..<(ids.count - 1), using: &random)
            switch Int.random(in: 0..<24, using: &random) {
            case 0: ids.swapAt(at, at + 1)
            case 1: ids[at + 1] = ids[at]
            case 2: ids.insert("foreign", at: at + 1); hashes.insert(1, at: at + 1)
            case 3: ids.reverse(); hashes.reverse()
            default: break
            }
        }
        let minRecords: Int64 = [1, 2, 10, 1_000_000][Int.random(in: 0..<4, using: &random)]
        return Call(ids: ids, hashes: hashes, minRecords: minRecords, skipped: skipped)
    }

    /// What `function` answers for `call` and leaves written, in a transaction rolled back after.
    static func outcome(of function: String, _ call: Call, _ dataset: Int, _ database: PostgresDatabase) async throws -> Outcome {
        try await database.run("BEGIN")
        do {
            var writes: String?
            for try await value in try await database.connection.query(
                "SELECT \(unescaped: function)(\(dataset), \(generation), \(call.ids), \(unescaped: call.hashesSQL), \(call.minRecords))::text", logger: database.logger
            ).decode(String?.self) { writes = value }
            var outcome = try await state(dataset, database)
            outcome.writes = writes
            try await database.run("ROLLBACK")
            return outcome
        } catch {
            try? await database.run("ROLLBACK")
            throw error
        }
    }

    /// The dataset's seen ranges and its rows' seen generations, as text.
    static func state(_ dataset: Int, _ database: PostgresDatabase) async throws -> Outcome {
        var texts: [String] = []
        for sql in [
            "SELECT coalesce(string_agg(concat_ws(' ', generation, lo_seq, lo_id, hi_seq, hi_id), ',' ORDER BY generation, lo_seq, lo_id), '') FROM seen_ranges WHERE dataset_id = \(dataset)",
            "SELECT string_agg(seen_generation::text, ',' ORDER BY id) FROM records WHERE dataset_id = \(dataset)",
        ] {
            for try await text in try await database.connection.query(PostgresQuery(unsafeSQL: sql), logger: database.logger).decode(String.self) {
                texts.append(text)
            }
        }
        return Outcome(writes: nil, ranges: texts.first ?? "", stamps: texts.last ?? "")
    }
}
