#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import TributaryCore

/// A partial record for `batchUpdate`: the id and the members to merge in.
public struct RecordPatch: Sendable, Hashable {
    public var id: String
    public var patch: JSONObject

    public init(id: String, patch: JSONObject) {
        self.id = id
        self.patch = patch
    }

    /// Builds a patch from a partial record object (its `id` is required).
    public init(_ object: JSONObject) throws(TributaryError) {
        id = try PreparedRecord.externalId(of: object)
        var patch = object
        patch.removeValue(forKey: RecordMetadata.key)
        self.patch = patch
    }
}

/// A position in a dataset's change feed: the change sequence and a tiebreaker within it.
/// Clients see it only as an opaque string.
public struct FeedCursor: Sendable, Hashable, Comparable {
    public var sequence: Int64
    public var tiebreaker: Int64

    public init(sequence: Int64, tiebreaker: Int64) {
        self.sequence = sequence
        self.tiebreaker = tiebreaker
    }

    public static func < (lhs: FeedCursor, rhs: FeedCursor) -> Bool {
        (lhs.sequence, lhs.tiebreaker) < (rhs.sequence, rhs.tiebreaker)
    }

    /// The opaque form given to clients.
    public var encoded: String {
        var out: [UInt8] = []
        appendEncoded(to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends ``encoded`` (base64 of `v1:<sequence>:<tiebreaker>`) without intermediate strings.
    public func appendEncoded(to out: inout [UInt8]) {
        // `v1:`, two numbers of at most 20 bytes (sign and 19 digits) and a colon: 44 bytes, on the stack.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 48) { buffer in
            var count = 0
            for byte in "v1:".utf8 {
                buffer[count] = byte
                count += 1
            }
            ASCIIDecimal.write(sequence, into: buffer, at: &count)
            buffer[count] = UInt8(ascii: ":")
            count += 1
            ASCIIDecimal.write(tiebreaker, into: buffer, at: &count)
            Base64.append(UnsafeBufferPointer(rebasing: buffer[..<count]), to: &out)
        }
    }

    /// Decodes a client's cursor.
    ///
    /// - Throws: `invalid_cursor` for anything that is not a cursor Tributary issued.
    public init(encoded: String) throws(TributaryError) {
        let invalid = TributaryError(.invalidCursor, "The cursor is not valid: pass a next_cursor or _nango_metadata.cursor value exactly as received.")
        guard encoded.utf8.count <= 200, let data = Data(base64Encoded: encoded) else { throw invalid }
        let parts = String(decoding: data, as: UTF8.self).split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "v1", let sequence = Int64(parts[1]), let tiebreaker = Int64(parts[2]),
            sequence >= 0, tiebreaker >= 0
        else { throw invalid }
        self.init(sequence: sequence, tiebreaker: tiebreaker)
    }
}

/// A read of one dataset's change feed (`GET /records`).
public struct ChangeQuery: Sendable, Hashable {
    public static let maximumLimit = 10_000
    public static let defaultLimit = 100
    public static let maximumIds = 100

    public var dataset: DatasetRef
    /// Return changes after this position (exclusive).
    public var cursor: FeedCursor?
    public var limit: Int
    /// Only records last modified at or after this time.
    public var modifiedAfter: Timestamp?
    /// Only records whose last action is one of these (nil: all).
    public var actions: Set<RecordAction>?
    /// Only these record ids.
    public var ids: [String]?

    /// - Throws: `invalid_query_params` for a limit outside 1…10000 or more than 100 ids.
    public init(
        dataset: DatasetRef, cursor: FeedCursor? = nil, limit: Int = ChangeQuery.defaultLimit, modifiedAfter: Timestamp? = nil,
        actions: Set<RecordAction>? = nil, ids: [String]? = nil
    ) throws(TributaryError) {
        guard (1...Self.maximumLimit).contains(limit) else {
            throw TributaryError(.invalidQuery, "limit must be between 1 and \(Self.maximumLimit), got \(limit).")
        }
        if let ids, ids.count > Self.maximumIds {
            throw TributaryError(.invalidQuery, "ids accepts at most \(Self.maximumIds) ids, got \(ids.count).")
        }
        self.dataset = dataset
        self.cursor = cursor
        self.limit = limit
        self.modifiedAfter = modifiedAfter
        self.actions = actions
        self.ids = ids
    }
}

/// One page of a change feed.
public struct ChangePage: Sendable {
    public var records: [StoredRecord]
    /// Where the next page starts; nil when this page reached the end of the feed.
    public var nextCursor: FeedCursor?

    public init(records: [StoredRecord], nextCursor: FeedCursor?) {
        self.records = records
        self.nextCursor = nextCursor
    }
}

/// A record as the cache holds it: its latest payload and change-tracking metadata.
public struct StoredRecord: Sendable, Hashable {
    public var id: String
    /// Canonical JSON of the latest payload (for a deleted record: the last one saved).
    public var json: [UInt8]
    public var firstSeenAt: Timestamp
    public var lastModifiedAt: Timestamp
    public var deletedAt: Timestamp?
    public var cursor: FeedCursor
    /// When the payload was pruned (`PATCH /records/prune`): ``json`` then holds only the id.
    public var prunedAt: Timestamp?

    public init(
        id: String, json: [UInt8], firstSeenAt: Timestamp, lastModifiedAt: Timestamp, deletedAt: Timestamp?, cursor: FeedCursor, prunedAt: Timestamp? = nil
    ) {
        self.prunedAt = prunedAt
        self.id = id
        self.json = json
        self.firstSeenAt = firstSeenAt
        self.lastModifiedAt = lastModifiedAt
        self.deletedAt = deletedAt
        self.cursor = cursor
    }

    /// `DELETED` if deleted, `ADDED` if never changed since it (re)appeared, else `UPDATED`.
    public var action: RecordAction {
        if deletedAt != nil { return .deleted }
        return firstSeenAt == lastModifiedAt ? .added : .updated
    }

    /// The record as `GET /records` returns it: the payload plus `_nango_metadata`, spliced in
    /// without re-parsing the payload (see ``FeedRenderer``, which writes a whole page).
    public func renderedJSON() -> [UInt8] {
        var renderer = FeedRenderer(reservingCapacity: json.count + 200)
        renderer.append(self)
        return renderer.bytes
    }

    /// Appends ``renderedJSON()`` to `out` (``FeedRenderer`` writes a whole page, reusing the
    /// timestamps records share).
    public func appendRendered(to out: inout [UInt8]) {
        var renderer = FeedRenderer(appendingTo: out)
        out = []  // `renderer` now holds the only reference: no copy on append
        renderer.append(self)
        out = renderer.bytes
    }

    /// The `_nango_metadata` object.
    public var metadata: JSONObject {
        [
            "first_seen_at": .string(firstSeenAt.iso8601),
            "last_modified_at": .string(lastModifiedAt.iso8601),
            "last_action": .string(action.rawValue),
            "deleted_at": deletedAt.map { .string($0.iso8601) } ?? .null,
            "pruned_at": prunedAt.map { .string($0.iso8601) } ?? .null,
            "cursor": .string(cursor.encoded),
        ]
    }
}
