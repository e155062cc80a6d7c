import PostgresNIO
import TributaryCore

/// What a page's lookup in the database found: the records of the page that need a write.
///
/// Two functions answer (migrations `v11-page-lookup`, `v12-page-check`, `v13-page-upsert`), and
/// their answers are decoded here, each number checked before it is used (positions in the page,
/// each once, in increasing order):
/// - `tributary_check_page`, when the page's ids are its rows' in feed order, or are since v13 but
///   for some rows of its span it skips (`aligned`): for each record to write, `position * 4 +
///   kind` — the position 1-based in the page, the kind ``Kind``'s raw value;
/// - `tributary_look_up_page` otherwise: the 1-based positions alone.
struct PageLookup: Sendable, Equatable {
    /// Why a record aligned with its row needs a write.
    enum Kind: Int64, Sendable {
        /// Its hash differs: rewritten, moved in the feed, counted updated.
        case changed = 0
        /// Its row is deleted: added again, counted added.
        case deleted = 1
        /// Unchanged, its payload pruned: the payload back in place, neither moved nor counted.
        case pruned = 2
    }

    /// Indices in the page of the records to write, in page order.
    var indices: [Int]
    /// Each one's kind, when the page was aligned with its rows (nil when looked up record by record).
    var kinds: [Kind]?

    /// Whether the check aligned the page with its rows.
    var aligned: Bool { kinds != nil }

    /// Decodes the numbers the database returned for a page of `count` records.
    init(writes: [Int64], aligned: Bool, count: Int) throws(TributaryError) {
        var indices: [Int] = []
        indices.reserveCapacity(writes.count)
        var kinds: [Kind] = []
        var previous: Int64 = 0
        for value in writes {
            let position = aligned ? value >> 2 : value
            guard position > previous, position <= Int64(count) else {
                throw TributaryError(
                    .storeUnavailable, "The database named record \(position) of a page of \(count) in its lookup, after record \(previous).")
            }
            previous = position
            indices.append(Int(position) - 1)
            if aligned {
                guard let kind = Kind(rawValue: value & 3) else {
                    throw TributaryError(.storeUnavailable, "The database gave record \(position) of a page an unknown kind of write (\(value & 3)).")
                }
                kinds.append(kind)
            }
        }
        self.indices = indices
        self.kinds = aligned ? kinds : nil
    }

    /// Decodes a lookup's row: `writes` (BIGINT[]) and `aligned` (BOOLEAN).
    init(_ row: PostgresRandomAccessRow, count: Int) throws {
        try self.init(writes: try row["writes"].decode([Int64].self), aligned: try row["aligned"].decode(Bool.self), count: count)
    }
}
