import Foundation
import Testing
import TributaryCore
import TributaryStore

/// The feed page writer: every record's metadata right, whatever timestamps the records before it
/// had (it keeps the last ones it rendered), and cursors as clients decode them.
@Suite("Feed page rendering")
struct FeedRendererTests {
    static func record(_ id: String, firstSeen: Int64, modified: Int64, deleted: Int64? = nil, cursor: FeedCursor) -> StoredRecord {
        StoredRecord(
            id: id, json: Array(#"{"id":"\#(id)","n":1}"#.utf8), firstSeenAt: Timestamp(microseconds: firstSeen),
            lastModifiedAt: Timestamp(microseconds: modified), deletedAt: deleted.map { Timestamp(microseconds: $0) }, cursor: cursor)
    }

    @Test func eachRecordKeepsItsOwnTimesAndAction() throws {
        let base: Int64 = 1_764_000_000_000_000
        let records = [
            Self.record("a", firstSeen: base, modified: base, cursor: FeedCursor(sequence: 1, tiebreaker: 1)),
            Self.record("b", firstSeen: base, modified: base, cursor: FeedCursor(sequence: 1, tiebreaker: 2)),
            Self.record("c", firstSeen: base, modified: base + 1, cursor: FeedCursor(sequence: 2, tiebreaker: 3)),
            Self.record("d", firstSeen: base - 86_400_000_000, modified: base + 1, deleted: base + 1, cursor: FeedCursor(sequence: 3, tiebreaker: 4)),
            Self.record("e", firstSeen: base, modified: base, cursor: FeedCursor(sequence: Int64.max, tiebreaker: 0)),
        ]
        var renderer = FeedRenderer()
        renderer.append("[")
        for (index, record) in records.enumerated() {
            if index > 0 { renderer.append(UInt8(ascii: ",")) }
            renderer.append(record)
        }
        renderer.append("]")
        let page = try #require(try JSONParser.parse(renderer.bytes).arrayValue)
        #expect(page.count == records.count)
        for (rendered, record) in zip(page, records) {
            // Each as rendered alone, and its metadata as the record states it.
            #expect(rendered == (try JSONParser.parse(record.renderedJSON())))
            let metadata = try #require(rendered["_nango_metadata"]?.objectValue)
            #expect(metadata == record.metadata)
            #expect(metadata["first_seen_at"]?.stringValue.flatMap { Timestamp(iso8601: $0) } == record.firstSeenAt)
            #expect(metadata["last_modified_at"]?.stringValue.flatMap { Timestamp(iso8601: $0) } == record.lastModifiedAt)
        }
        #expect(page.compactMap { $0["_nango_metadata"]?["last_action"]?.stringValue } == ["ADDED", "ADDED", "UPDATED", "DELETED", "ADDED"])
    }

    /// A page's body: its records in order, each as rendered alone, and the next cursor (null at the end).
    @Test func aPageBodyHoldsItsRecordsAndTheNextCursor() throws {
        let base: Int64 = 1_764_000_000_000_000
        let records = [
            Self.record("a", firstSeen: base, modified: base, cursor: FeedCursor(sequence: 1, tiebreaker: 1)),
            Self.record("b", firstSeen: base, modified: base + 3, cursor: FeedCursor(sequence: 2, tiebreaker: 9)),
        ]
        let next = FeedCursor(sequence: 2, tiebreaker: 9)
        let body = try JSONParser.parse(FeedRenderer.body(of: ChangePage(records: records, nextCursor: next)))
        #expect(body["records"]?.arrayValue == (try records.map { try JSONParser.parse($0.renderedJSON()) }))
        #expect(try body["next_cursor"]?.stringValue.map { try FeedCursor(encoded: $0) } == next)
        #expect(body.objectValue?.keys.sorted() == ["next_cursor", "records"])

        let last = try JSONParser.parse(FeedRenderer.body(of: ChangePage(records: [], nextCursor: nil)))
        #expect(last == .object(["records": .array([]), "next_cursor": .null]))

        // The exact bytes: the envelope around each record as rendered alone, no whitespace.
        #expect(FeedRenderer.body(of: ChangePage(records: [], nextCursor: nil)) == Array(#"{"records":[],"next_cursor":null}"#.utf8))
        let exact = Array(#"{"records":["#.utf8) + records[0].renderedJSON() + Array(",".utf8) + records[1].renderedJSON()
            + Array(#"],"next_cursor":"\#(next.encoded)"}"#.utf8)
        #expect(FeedRenderer.body(of: ChangePage(records: records, nextCursor: next)) == exact)
    }

    /// `appendRendered(to:)` adds the record after what the buffer held, each time on its own timestamps.
    @Test func appendRenderedKeepsWhatCameBefore() throws {
        let base: Int64 = 1_764_000_000_000_000
        let first = Self.record("a", firstSeen: base, modified: base, cursor: FeedCursor(sequence: 1, tiebreaker: 1))
        let second = Self.record("b", firstSeen: base - 5, modified: base + 7, cursor: FeedCursor(sequence: 2, tiebreaker: 2))
        var out = Array("[".utf8)
        first.appendRendered(to: &out)
        out.append(UInt8(ascii: ","))
        second.appendRendered(to: &out)
        out.append(UInt8(ascii: "]"))
        #expect(out == Array("[".utf8) + first.renderedJSON() + Array(",".utf8) + second.renderedJSON() + Array("]".utf8))
        let page = try #require(try JSONParser.parse(out).arrayValue)
        #expect(page.map { $0["_nango_metadata"]?["last_action"]?.stringValue } == ["ADDED", "UPDATED"])
    }

    @Test(arguments: [(Int64(0), Int64(0)), (1, 22), (123_456_789, 987_654_321), (Int64.max, Int64.max)])
    func cursorsEncodeAsBefore(_ sequence: Int64, _ tiebreaker: Int64) throws {
        let cursor = FeedCursor(sequence: sequence, tiebreaker: tiebreaker)
        var out: [UInt8] = []
        cursor.appendEncoded(to: &out)
        let text = String(decoding: out, as: UTF8.self)
        #expect(text == Data("v1:\(sequence):\(tiebreaker)".utf8).base64EncodedString())
        #expect(try FeedCursor(encoded: text) == cursor)
    }

    @Test(arguments: [Int64(0), 7, 10, 99, -1, -120, 1_000_000, Int64.max, Int64.min])
    func decimalsAreWrittenInPlace(_ value: Int64) {
        let text = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 24) { buffer in
            var position = 2
            ASCIIDecimal.write(value, into: buffer, at: &position)
            return String(decoding: UnsafeBufferPointer(rebasing: buffer[2..<position]), as: UTF8.self)
        }
        #expect(text == String(value))
    }
}
