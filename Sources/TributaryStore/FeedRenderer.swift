import TributaryCore

/// Writes records as `GET /records` returns them — each payload with its `_nango_metadata` spliced
/// in, without re-parsing the payload — into one buffer.
///
/// It runs once per record served, so it builds no intermediate values, and it remembers the last
/// timestamps it wrote: the records saved in one batch share them, so a page mostly renders each
/// time once.
public struct FeedRenderer {
    /// The bytes written so far.
    public private(set) var bytes: [UInt8]
    private var firstSeen = TimeText()
    private var lastModified = TimeText()

    public init(reservingCapacity capacity: Int = 256) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    /// A renderer that appends to `bytes` (taken over, not copied; read them back from ``bytes``).
    public init(appendingTo bytes: consuming [UInt8]) {
        self.bytes = bytes
    }

    /// A whole `GET /records` response body, `{"records":[…],"next_cursor":…}`.
    public static func body(of page: ChangePage) -> [UInt8] {
        var out = FeedRenderer(reservingCapacity: page.records.reduce(64) { $0 + $1.json.count + 240 })
        out.append(#"{"records":["#)
        for (index, record) in page.records.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            out.append(record)
        }
        out.append(#"],"next_cursor":"#)
        if let next = page.nextCursor { out.appendString(next) } else { out.append("null") }
        out.append(UInt8(ascii: "}"))
        return out.bytes
    }

    /// Appends one record (payload and metadata, same members and order as ``StoredRecord/metadata``).
    public mutating func append(_ record: StoredRecord) {
        let json = record.json
        guard json.last == UInt8(ascii: "}") else {
            bytes.append(contentsOf: json)
            return
        }
        json.withUnsafeBufferPointer { bytes.append(contentsOf: UnsafeBufferPointer(rebasing: $0[..<($0.count - 1)])) }
        if json.count > 2 { bytes.append(UInt8(ascii: ",")) }
        append(#""_nango_metadata":{"first_seen_at":""#)
        firstSeen.append(record.firstSeenAt, to: &bytes)
        append(#"","last_modified_at":""#)
        lastModified.append(record.lastModifiedAt, to: &bytes)
        append(#"","last_action":""#)
        switch record.action {
        case .added: append("ADDED")
        case .updated: append("UPDATED")
        case .deleted: append("DELETED")
        }
        append(#"","deleted_at":"#)
        appendJSON(record.deletedAt)
        append(#","pruned_at":"#)
        appendJSON(record.prunedAt)
        append(#","cursor":""#)
        record.cursor.appendEncoded(to: &bytes)
        append(#""}}"#)
    }

    /// Appends literal bytes.
    @inline(__always) public mutating func append(_ literal: StaticString) {
        bytes.append(contentsOf: UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount))
    }

    /// Appends one byte.
    @inline(__always) public mutating func append(_ byte: UInt8) {
        bytes.append(byte)
    }

    /// Appends a cursor as a JSON string.
    public mutating func appendString(_ cursor: FeedCursor) {
        bytes.append(UInt8(ascii: "\""))
        cursor.appendEncoded(to: &bytes)
        bytes.append(UInt8(ascii: "\""))
    }

    /// A JSON string of the ISO 8601 time, or `null` (deletion and pruning times: rarely repeated).
    private mutating func appendJSON(_ time: Timestamp?) {
        guard let time else {
            append("null")
            return
        }
        bytes.append(UInt8(ascii: "\""))
        time.appendISO8601(to: &bytes)
        bytes.append(UInt8(ascii: "\""))
    }

    /// The ISO 8601 text of the last time written in one place.
    private struct TimeText {
        var time: Timestamp? = nil
        var text: [UInt8] = []

        mutating func append(_ timestamp: Timestamp, to out: inout [UInt8]) {
            if timestamp != time {
                text.removeAll(keepingCapacity: true)
                timestamp.appendISO8601(to: &text)
                time = timestamp
            }
            out.append(contentsOf: text)
        }
    }
}
