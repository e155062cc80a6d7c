import TributaryCore

/// A record's place in its dataset's change feed: its change sequence, then its row id. New and
/// rewritten records always take a sequence above every existing one, so nothing ever moves *into*
/// a span of positions; records only leave it (changed or deleted).
public struct FeedPosition: Sendable, Hashable, Comparable {
    public var seq: Int64
    public var id: Int64

    public init(seq: Int64, id: Int64) {
        self.seq = seq
        self.id = id
    }

    public static func < (a: FeedPosition, b: FeedPosition) -> Bool {
        (a.seq, a.id) < (b.seq, b.id)
    }
}

/// A span of feed positions all of whose records a full refresh's deletion window has seen: the
/// compressed form of the window's seen stamps for a run of unchanged records, so that a re-sync
/// page writes one range instead of one stamp per record.
///
/// A page's unchanged records keep their feed positions. When they fill a span of the dataset's
/// feed with no other record in it — counted after the page is written, when its changed records
/// have moved out — the span is *verified*: every record in it was seen. That holds for a re-sync
/// whose pages follow the first load's order, whatever the ids look like. A span that is not
/// verified (records the page did not see, tombstones, another order) is tried again as its runs
/// of one change sequence, and those as their runs of consecutive row ids; what no verified range
/// covers is stamped as before, and so is a range that would overlap one the window already has.
/// Deletion detection marks deleted only the unstamped live records in the gaps between the
/// window's ranges. Since records only ever leave a
/// span, a range stays true for the rest of its window. A range never moves, changes or counts a
/// record: the feed, hashes and counts are exactly what per-record stamps give.
public struct SeenRange: Sendable, Hashable {
    /// The first and last position of the span (inclusive).
    public var lo: FeedPosition
    public var hi: FeedPosition

    public init(lo: FeedPosition, hi: FeedPosition) {
        self.lo = lo
        self.hi = hi
    }

    /// Below this many records a range is not tried: it costs a count over its span and a row,
    /// about what this many stamps cost.
    public static let minimumRecords = 16

    /// Whether a page with `unstamped` unchanged records not yet seen in the window should try ranges.
    public static func worthTrying(unstamped: Int) -> Bool {
        unstamped >= minimumRecords
    }

    /// A span to try, and how many of the page's records it holds.
    public struct Candidate: Sendable, Hashable {
        public var range: SeenRange
        public var count: Int

        public init(range: SeenRange, count: Int) {
            self.range = range
            self.count = count
        }
    }

    /// A run of one change sequence to try when the page's whole span is not verified, and the
    /// runs of consecutive row ids it splits into, to try when it is not verified either (a record
    /// the page did not see, in the middle of a block the first load wrote in one transaction).
    /// Each holds at least ``minimumRecords`` of the page's records.
    public struct SequenceRun: Sendable, Hashable {
        public var candidate: Candidate
        /// Empty when the run has no gap in its row ids (the same span would fail again).
        public var consecutive: [Candidate]
    }

    /// The spans to try for a page's unchanged records at `positions` (distinct): the whole span
    /// first; then, if that is not verified, each run of one change sequence; then, for each of
    /// those not verified, its runs of consecutive row ids.
    public static func candidates(_ positions: [FeedPosition]) -> (whole: Candidate?, bySequence: [SequenceRun]) {
        let sorted = positions.sorted()
        guard let first = sorted.first, let last = sorted.last else { return (nil, []) }
        func candidate(_ slice: ArraySlice<FeedPosition>) -> Candidate? {
            guard slice.count >= minimumRecords, let lo = slice.first, let hi = slice.last else { return nil }
            return Candidate(range: SeenRange(lo: lo, hi: hi), count: slice.count)
        }
        var runs: [SequenceRun] = []
        var start = 0
        for end in 1...sorted.count where end == sorted.count || sorted[end].seq != sorted[start].seq {
            if let whole = candidate(sorted[start..<end]) {
                var consecutive: [Candidate] = []
                var from = start
                for index in (start + 1)...end where index == end || sorted[index].id != sorted[index - 1].id &+ 1 {
                    if let run = candidate(sorted[from..<index]) { consecutive.append(run) }
                    from = index
                }
                runs.append(SequenceRun(candidate: whole, consecutive: consecutive.count == 1 && consecutive[0] == whole ? [] : consecutive))
            }
            start = end
        }
        return (Candidate(range: SeenRange(lo: first, hi: last), count: sorted.count), runs)
    }

    /// Whether a span is verified: the dataset holds `recordsInSpan` records in it (live or
    /// deleted), and the page's `pageRecords` records in it account for every one of them.
    public static func isVerified(recordsInSpan: Int, pageRecords: Int) -> Bool {
        recordsInSpan == pageRecords
    }

    /// Whether `position` lies in the span.
    public func contains(_ position: FeedPosition) -> Bool {
        lo <= position && position <= hi
    }

    /// Whether this range shares a position with `other`.
    public func overlaps(_ other: SeenRange) -> Bool {
        !(hi < other.lo) && !(other.hi < lo)
    }

    /// A part of a gap that an index on (dataset, seq, row id) reads as one contiguous range: within
    /// one sequence, the row ids above and/or below a bound; or every row of the sequences above
    /// and/or below bounds. (SQLite reads a row-value bound `(seq, id) > (a, b)` as `seq >= a`, so
    /// a gap inside one sequence would scan the whole sequence.)
    public enum GapPart: Sendable, Hashable {
        case withinSequence(Int64, idAbove: Int64?, idBelow: Int64?)
        case sequences(above: Int64?, below: Int64?)
    }

    /// The parts of the gap between `after` and `before` (both exclusive; nil: unbounded).
    public static func parts(after: FeedPosition?, before: FeedPosition?) -> [GapPart] {
        switch (after, before) {
        case (nil, nil):
            return [.sequences(above: nil, below: nil)]
        case (let after?, nil):
            return [.withinSequence(after.seq, idAbove: after.id, idBelow: nil), .sequences(above: after.seq, below: nil)]
        case (nil, let before?):
            return [.sequences(above: nil, below: before.seq), .withinSequence(before.seq, idAbove: nil, idBelow: before.id)]
        case (let after?, let before?):
            if after.seq == before.seq { return [.withinSequence(after.seq, idAbove: after.id, idBelow: before.id)] }
            return [
                .withinSequence(after.seq, idAbove: after.id, idBelow: nil), .sequences(above: after.seq, below: before.seq),
                .withinSequence(before.seq, idAbove: nil, idBelow: before.id),
            ]
        }
    }

    /// The spans between `ranges` (sorted by `lo`, disjoint) that no range covers: each bound
    /// exclusive, nil for unbounded. Deletion detection looks for unseen records only in these.
    public static func gaps(between ranges: [SeenRange]) -> [(after: FeedPosition?, before: FeedPosition?)] {
        var gaps: [(after: FeedPosition?, before: FeedPosition?)] = []
        var after: FeedPosition? = nil
        for range in ranges {
            gaps.append((after, range.lo))
            after = range.hi
        }
        gaps.append((after, nil))
        return gaps
    }
}
