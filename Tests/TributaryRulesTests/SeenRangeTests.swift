import Testing
import TributaryStore

@Suite("Seen ranges (SeenRange)")
struct SeenRangeTests {
    func at(_ seq: Int64, _ id: Int64) -> FeedPosition { FeedPosition(seq: seq, id: id) }

    @Test func feedPositionsOrderBySequenceThenRowId() {
        #expect(at(1, 900) < at(2, 5))
        #expect(at(2, 5) < at(2, 6))
        #expect(!(at(2, 6) < at(2, 6)))
        #expect([at(3, 1), at(1, 7), at(1, 2)].sorted() == [at(1, 2), at(1, 7), at(3, 1)])
    }

    @Test func aPageIsTriedWholeThenByChangeSequenceThenByConsecutiveRowIds() {
        #expect(SeenRange.candidates([]).whole == nil)
        #expect(SeenRange.candidates([]).bySequence.isEmpty)
        // A page of a first load's block (seq 4, rows 100…129 but 110, which the page did not
        // see), a record changed since (seq 9) and the head of the next block (seq 5).
        let block = (100..<130).filter { $0 != 110 }.map { at(4, $0) }, next = (130..<146).map { at(5, $0) }, moved = [at(9, 7)]
        let (whole, bySequence) = SeenRange.candidates((moved + next + block).shuffled())
        #expect(whole == SeenRange.Candidate(range: SeenRange(lo: at(4, 100), hi: at(9, 7)), count: 46))
        #expect(bySequence.map(\.candidate.range) == [SeenRange(lo: at(4, 100), hi: at(4, 129)), SeenRange(lo: at(5, 130), hi: at(5, 145))])
        #expect(bySequence.map(\.candidate.count) == [29, 16])
        // seq 4 splits around row 110: 100…109 is too short for a range, 111…129 is not. seq 5 has
        // no gap: trying it again as one run would be the same span.
        #expect(bySequence[0].consecutive == [SeenRange.Candidate(range: SeenRange(lo: at(4, 111), hi: at(4, 129)), count: 19)])
        #expect(bySequence[1].consecutive.isEmpty)
        // A run of one sequence below the minimum is left to stamps.
        let short = (0..<SeenRange.minimumRecords - 1).map { at(2, Int64($0)) }
        #expect(SeenRange.candidates(short + next).bySequence.map(\.candidate.count) == [16])
    }

    @Test func aSpanIsVerifiedOnlyWhenThePageAccountsForEveryRecordInIt() {
        #expect(SeenRange.isVerified(recordsInSpan: 20, pageRecords: 20))
        #expect(!SeenRange.isVerified(recordsInSpan: 21, pageRecords: 20), "another record (or a tombstone) lies in the span")
        #expect(!SeenRange.isVerified(recordsInSpan: 19, pageRecords: 20))
        #expect(!SeenRange.worthTrying(unstamped: SeenRange.minimumRecords - 1))
        #expect(SeenRange.worthTrying(unstamped: SeenRange.minimumRecords))
    }

    @Test func rangesContainAndOverlapByPosition() {
        let range = SeenRange(lo: at(2, 10), hi: at(3, 4))
        #expect(range.contains(at(2, 10)) && range.contains(at(2, 99)) && range.contains(at(3, 4)))
        #expect(!range.contains(at(2, 9)) && !range.contains(at(3, 5)) && !range.contains(at(1, 50)))
        #expect(range.overlaps(SeenRange(lo: at(1, 0), hi: at(2, 10))))
        #expect(range.overlaps(SeenRange(lo: at(3, 4), hi: at(8, 0))))
        #expect(range.overlaps(SeenRange(lo: at(2, 50), hi: at(2, 60))))
        #expect(!range.overlaps(SeenRange(lo: at(1, 0), hi: at(2, 9))))
        #expect(!range.overlaps(SeenRange(lo: at(3, 5), hi: at(3, 9))))
    }

    @Test func aGapIsReadInPartsAnIndexOnSequenceAndRowIdReadsExactly() {
        #expect(SeenRange.parts(after: nil, before: nil) == [.sequences(above: nil, below: nil)])
        #expect(SeenRange.parts(after: at(3, 40), before: at(3, 60)) == [.withinSequence(3, idAbove: 40, idBelow: 60)])
        #expect(
            SeenRange.parts(after: at(3, 40), before: at(7, 2))
                == [.withinSequence(3, idAbove: 40, idBelow: nil), .sequences(above: 3, below: 7), .withinSequence(7, idAbove: nil, idBelow: 2)])
        #expect(SeenRange.parts(after: at(3, 40), before: nil) == [.withinSequence(3, idAbove: 40, idBelow: nil), .sequences(above: 3, below: nil)])
        #expect(SeenRange.parts(after: nil, before: at(7, 2)) == [.sequences(above: nil, below: 7), .withinSequence(7, idAbove: nil, idBelow: 2)])
        // The parts cover exactly the positions strictly between the bounds.
        let after = at(3, 40), before = at(5, 10)
        func inPart(_ p: FeedPosition, _ part: SeenRange.GapPart) -> Bool {
            switch part {
            case .withinSequence(let seq, let above, let below):
                return p.seq == seq && above.map { p.id > $0 } ?? true && below.map { p.id < $0 } ?? true
            case .sequences(let above, let below):
                return above.map { p.seq > $0 } ?? true && below.map { p.seq < $0 } ?? true
            }
        }
        for seq in Int64(2)...6 {
            for id in Int64(0)...50 {
                let p = at(seq, id)
                let parts = SeenRange.parts(after: after, before: before).filter { inPart(p, $0) }
                #expect(parts.count == (after < p && p < before ? 1 : 0), "\(p)")
            }
        }
    }

    @Test func theGapsAreEverythingNoRangeCovers() {
        let none = SeenRange.gaps(between: [])
        #expect(none.count == 1)
        #expect(none[0].after == nil && none[0].before == nil)
        let gaps = SeenRange.gaps(between: [SeenRange(lo: at(1, 1), hi: at(1, 9)), SeenRange(lo: at(4, 2), hi: at(4, 2))])
        #expect(gaps.map(\.after) == [nil, at(1, 9), at(4, 2)])
        #expect(gaps.map(\.before) == [at(1, 1), at(4, 2), nil])
    }
}
