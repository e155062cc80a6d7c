import Testing
import TributaryCore
@testable import TributaryPostgres
import TributaryStore
import TributaryTestSupport

/// What a process keeps of each dataset's last run (``StoredHashes``, ``RecordFingerprints``):
/// pure values, no database.
@Suite("Stored hashes: the records a dataset's last run saved")
struct StoredHashesTests {
    static func records(_ numbers: some Sequence<Int>, value: Int = 0) -> [PreparedRecord] {
        numbers.map { order("o\($0)", ["v": .number(JSONNumber(value))]) }
    }

    static func lease(_ runId: Int64, attempt: Int64 = 1) -> RunLease {
        RunLease(runId: runId, token: attempt)
    }

    static func fingerprints(_ records: [PreparedRecord]) -> RecordFingerprints {
        RecordFingerprints(unsorted: records.map(\.hash))
    }

    /// A record's hash stands for its id and its content: its canonical JSON holds both.
    @Test func aRecordsHashTellsIdsAndContentsApart() throws {
        let set = Self.fingerprints(Self.records(0..<1_000))
        #expect(set.count == 1_000)
        for record in Self.records(0..<1_000) { #expect(set.contains(record.hash)) }
        for record in Self.records(0..<1_000, value: 1) { #expect(!set.contains(record.hash)) }
        for record in Self.records(1_000..<2_000) { #expect(!set.contains(record.hash)) }
        #expect(order("o7", ["v": 0]).hash != order("o8", ["v": 0]).hash, "the same content under another id")
        #expect(order("7", ["v": 0]).hash == (try PreparedRecord(["id": .number(JSONNumber(7)), "v": .number(JSONNumber(0))])).hash, "one id, one hash")
    }

    @Test func aSetIsSortedWithoutRepeatsAndUnitesSets() {
        let set = RecordFingerprints(unsorted: [5, 1, 5, 3, 1, 9])
        #expect(set.values == [1, 3, 5, 9] && set.base == 4)
        #expect(set.contains(1) && set.contains(9) && !set.contains(0) && !set.contains(4) && !set.contains(10))
        #expect(RecordFingerprints().contains(0) == false)
        #expect(set.union(RecordFingerprints(unsorted: [0, 3, 4, 10])).values == [0, 1, 3, 4, 5, 9, 10])
        #expect(set.union(RecordFingerprints()).values == set.values)
        #expect(RecordFingerprints().union(set).values == set.values)
        #expect(RecordFingerprints(unsorted: [.max, 0]).contains(.max))
    }

    /// Every size of set finds each of its fingerprints and no other, at the ends of the range and
    /// of its buckets too, and after a union.
    @Test(arguments: [0, 1, 7, 8, 9, 15, 16, 17, 100, 4_096, 20_000]) func aSetFindsExactlyItsFingerprints(_ count: Int) {
        var generator = SystemRandomNumberGenerator()
        var members = Set((0..<count).map { _ in UInt64.random(in: .min ... .max, using: &generator) })
        if count > 2 { members.formUnion([0, .max, 1 << 63, (1 << 63) - 1]) }
        let set = RecordFingerprints(unsorted: Array(members) + Array(members.prefix(count / 2)))
        #expect(set.count == members.count && set.values == members.sorted(), "sorted, repeats dropped")
        for member in members { #expect(set.contains(member)) }
        var others = (0..<1_000).map { _ in UInt64.random(in: .min ... .max, using: &generator) }
        others += members.flatMap { [$0 &+ 1, $0 &- 1] }
        for other in others where !members.contains(other) { #expect(!set.contains(other), "\(other)") }
        let more = Set((0..<count).map { _ in UInt64.random(in: .min ... .max, using: &generator) })
        let union = set.union(RecordFingerprints(unsorted: Array(more)))
        #expect(union.count == members.union(more).count)
        for member in members.union(more) { #expect(union.contains(member)) }
        for other in others where !members.contains(other) && !more.contains(other) { #expect(!union.contains(other)) }
        // The page-at-once search answers as the one-by-one search, in the page's order, with
        // members, neighbours and strangers mixed and repeated.
        var page = Array(members.prefix(600)) + others.prefix(300) + others.suffix(300)
        page += page.prefix(50)
        page.shuffle(using: &generator)
        let missing = set.missing(page)
        #expect(missing == page.indices.filter { !members.contains(page[$0]) })
        #expect(missing == page.indices.filter { !set.contains(page[$0]) })
        #expect(set.missing([]) == [])
        #expect(RecordFingerprints().missing(page) == Array(page.indices))
    }

    /// A run that saw at least as many records replaces the set; one that saw fewer is added to it,
    /// up to twice what the last replacing run saw, past which its own set replaces it.
    @Test func aRunReplacesOrAddsToItsDatasetsSet() {
        let full = RecordFingerprints(unsorted: Array(0..<100))
        #expect(RecordFingerprints.afterRun(nil, run: full) == full)
        let smaller = RecordFingerprints(unsorted: Array(50..<90))
        #expect(RecordFingerprints.afterRun(full, run: RecordFingerprints(unsorted: Array(200..<300))).values == Array(200..<300))
        #expect(RecordFingerprints.afterRun(smaller, run: full) == full)
        var set = full
        for start in stride(from: 1_000, to: 1_100, by: 10) {
            set = RecordFingerprints.afterRun(set, run: RecordFingerprints(unsorted: Array(UInt64(start)..<UInt64(start + 10))))
            #expect(set.base == 100)
        }
        #expect(set.count == 200, "ten incremental runs of ten, added")
        #expect(set.contains(5) && set.contains(1_095))
        let past = RecordFingerprints.afterRun(set, run: RecordFingerprints(unsorted: [5_000]))
        #expect(past.values == [5_000], "past twice the last full run's: the run's own")
    }

    /// A process predicts a run's writes only once it knows the dataset the run saves into and what
    /// the dataset's last run saved; every outcome of a run counts.
    @Test func aRunsLikelyWritesAreTheRecordsTheLastRunLeftOtherwise() {
        let hashes = StoredHashes()
        let page = Self.records(0..<100)
        #expect(hashes.likelyWrites(page, model: "Order", for: Self.lease(1)) == nil, "the run's dataset is not known")
        hashes.record(page, model: "Order", for: Self.lease(1), dataset: 7)
        #expect(hashes.likelyWrites(page, model: "Order", for: Self.lease(1)) == nil, "the dataset's last run is not known")
        hashes.record(Self.records(100..<200), model: "Order", for: Self.lease(1), dataset: 7)
        #expect(hashes.held == 200)
        hashes.finish(Self.lease(1))
        #expect(hashes.held == 200)

        var next = Self.records(100..<200)
        next[10] = order("o110", ["v": 1])
        next[20] = order("o999", ["v": 0])
        #expect(hashes.likelyWrites(next, model: "Order", for: Self.lease(2)) == nil, "run 2's dataset is not known yet")
        hashes.record(Self.records(0..<100), model: "Order", for: Self.lease(2), dataset: 7)
        #expect(hashes.likelyWrites(next, model: "Order", for: Self.lease(2)) == [10, 20])
        #expect(hashes.likelyWrites(next, model: "Customer", for: Self.lease(2)) == nil, "another model")
        // A failed run keeps what it saved: the changed record is known as it is now.
        hashes.record(next, model: "Order", for: Self.lease(2), dataset: 7)
        hashes.finish(Self.lease(2))
        hashes.record(Self.records(0..<1), model: "Order", for: Self.lease(3), dataset: 7)
        #expect(hashes.likelyWrites(next, model: "Order", for: Self.lease(3)) == [])
        // o110 as it was, and o120, which that run did not save (it saw as many records: it replaced the set).
        #expect(hashes.likelyWrites(Self.records(100..<200), model: "Order", for: Self.lease(3)) == [10, 20])
        hashes.finish(Self.lease(3))
        hashes.removeAll()
        #expect(hashes.held == 0)
    }

    /// Past its limit the least recently used dataset's set goes first, then another run's
    /// recording; a run that cannot be recorded within the limit records nothing more and leaves
    /// its dataset's set as it was.
    @Test func theHashesHeldStayWithinTheLimit() {
        let hashes = StoredHashes(limit: 250)
        hashes.record(Self.records(0..<100), model: "Order", for: Self.lease(1), dataset: 1)
        hashes.finish(Self.lease(1))
        hashes.record(Self.records(0..<100), model: "Order", for: Self.lease(2), dataset: 2)
        hashes.finish(Self.lease(2))
        #expect(hashes.held == 200)
        // Dataset 1's set used since: dataset 2's goes first.
        hashes.record(Self.records(0..<1), model: "Order", for: Self.lease(3), dataset: 1)
        #expect(hashes.likelyWrites(Self.records(0..<100), model: "Order", for: Self.lease(3)) == [])
        hashes.record(Self.records(100..<200), model: "Order", for: Self.lease(4), dataset: 3)
        #expect(hashes.held <= 250)
        hashes.record(Self.records(0..<1), model: "Order", for: Self.lease(5), dataset: 2)
        #expect(hashes.likelyWrites(Self.records(0..<1), model: "Order", for: Self.lease(5)) == nil, "dataset 2's set dropped")
        hashes.record(Self.records(0..<1), model: "Order", for: Self.lease(6), dataset: 1)
        #expect(hashes.likelyWrites(Self.records(0..<1), model: "Order", for: Self.lease(6)) == [], "dataset 1's kept")

        // A run of more than the limit: dropped, and nothing published for it.
        let big = StoredHashes(limit: 150)
        big.record(Self.records(0..<100), model: "Order", for: Self.lease(1), dataset: 1)
        big.finish(Self.lease(1))
        big.record(Self.records(0..<100, value: 1), model: "Order", for: Self.lease(2), dataset: 1)
        #expect(big.held <= 150)
        big.record(Self.records(100..<200, value: 1), model: "Order", for: Self.lease(2), dataset: 1)
        #expect(big.held <= 150)
        big.record(Self.records(200..<300, value: 1), model: "Order", for: Self.lease(2), dataset: 1)
        big.finish(Self.lease(2))
        #expect(big.held <= 150)
        big.record(Self.records(0..<1), model: "Order", for: Self.lease(3), dataset: 1)
        #expect(big.likelyWrites(Self.records(0..<100, value: 1), model: "Order", for: Self.lease(3)) == nil, "dataset 1's set dropped for run 2, which was not published")
    }

    /// A recording no run finishes (its lease was lost) ages out before a set used since; a later
    /// attempt of a run records and finishes apart from the earlier one.
    @Test func anUnfinishedRecordingAgesOutAndAttemptsAreApart() {
        let hashes = StoredHashes(limit: 250)
        hashes.record(Self.records(0..<100), model: "Order", for: Self.lease(9), dataset: 9)
        hashes.record(Self.records(0..<100), model: "Order", for: Self.lease(1), dataset: 1)
        hashes.finish(Self.lease(1))
        hashes.record(Self.records(0..<1), model: "Order", for: Self.lease(2), dataset: 1)
        #expect(hashes.likelyWrites(Self.records(0..<100), model: "Order", for: Self.lease(2)) == [])
        hashes.record(Self.records(100..<200), model: "Order", for: Self.lease(3), dataset: 3)
        #expect(hashes.held == 201, "run 9's recording dropped, dataset 1's set kept")
        #expect(hashes.likelyWrites(Self.records(0..<100), model: "Order", for: Self.lease(2)) == [])
        hashes.finish(Self.lease(9))
        hashes.record(Self.records(0..<1), model: "Order", for: Self.lease(4), dataset: 9)
        #expect(hashes.likelyWrites(Self.records(0..<1), model: "Order", for: Self.lease(4)) == nil, "nothing published for dataset 9")

        // Run 5's first attempt recorded; its second attempt's end does not finish it.
        hashes.record(Self.records(0..<10), model: "Order", for: Self.lease(5), dataset: 5)
        hashes.finish(Self.lease(5, attempt: 2))
        hashes.record(Self.records(0..<1), model: "Order", for: Self.lease(6), dataset: 5)
        #expect(hashes.likelyWrites(Self.records(0..<1), model: "Order", for: Self.lease(6)) == nil)
        hashes.finish(Self.lease(5))
        #expect(hashes.likelyWrites(Self.records(0..<10), model: "Order", for: Self.lease(6)) == [])
        #expect(hashes.likelyWrites(Self.records(0..<10), model: "Order", for: Self.lease(5, attempt: 2)) == nil, "attempt 2 saved nothing yet")
    }

    /// Past the dataset limit the least recently used dataset's set goes, not a run's recording.
    @Test func theDatasetLimitDropsASetNotARecording() {
        let hashes = StoredHashes()
        hashes.record(Self.records(0..<10), model: "Order", for: Self.lease(1_000_000), dataset: 1_000_000)
        let one = Self.records(0..<1)
        for dataset in 0...Int64(StoredHashes.datasetLimit) {
            hashes.record(one, model: "Order", for: Self.lease(dataset), dataset: dataset)
            hashes.finish(Self.lease(dataset))
        }
        #expect(hashes.held == 10 + StoredHashes.datasetLimit, "the recording and the newest sets")
        hashes.record(one, model: "Order", for: Self.lease(2_000_000), dataset: 0)
        #expect(hashes.likelyWrites(one, model: "Order", for: Self.lease(2_000_000)) == nil, "dataset 0's set, the oldest, dropped")
    }

    /// A run whose recording another run's pages dropped records nothing more (a part of its
    /// pages would pass for the dataset's whole).
    @Test func aDroppedRecordingStaysDropped() {
        let hashes = StoredHashes(limit: 150)
        hashes.record(Self.records(0..<100), model: "Order", for: Self.lease(1), dataset: 1)
        hashes.record(Self.records(0..<100), model: "Order", for: Self.lease(2), dataset: 2)
        #expect(hashes.held == 100, "run 1's recording dropped for run 2's page")
        hashes.record(Self.records(100..<110), model: "Order", for: Self.lease(1), dataset: 1)
        hashes.finish(Self.lease(1))
        hashes.finish(Self.lease(2))
        hashes.record(Self.records(0..<1), model: "Order", for: Self.lease(3), dataset: 1)
        #expect(hashes.likelyWrites(Self.records(100..<110), model: "Order", for: Self.lease(3)) == nil, "nothing published for dataset 1")
        hashes.record(Self.records(0..<1), model: "Order", for: Self.lease(4), dataset: 2)
        #expect(hashes.likelyWrites(Self.records(0..<100), model: "Order", for: Self.lease(4)) == [])
    }
}
