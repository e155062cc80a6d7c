import Logging
import NIOCore
import PostgresNIO
import Testing
@testable import TributaryCore
@testable import TributaryPostgres
import TributaryTestSupport

/// A page's columns bound as PostgreSQL arrays (``PageColumn``): the same bytes postgres-nio's own
/// `[String]` and `[Int64]` bindings send, and the same values back from a real server — for ids
/// and payloads of one- to four-byte UTF-8 characters, quotes and backslashes, hashes with the high
/// bit set and of zero, and an empty page.
@Suite("A page's columns as bound arrays")
struct PageColumnTests {
    /// Records whose ids and payloads cover the cases a byte count can get wrong.
    static let records: [PreparedRecord] = {
        let ids = ["a", "é", "日本", "🚀 rocket", "quote \" and \\ backslash", "x"]
        return ids.enumerated().compactMap { index, id in
            try? PreparedRecord(["id": .string(id), "note": .string(String(repeating: "✓", count: index * 3)), "n": .number(JSONNumber(index))])
        }
    }()

    /// What postgres-nio's generic encoding writes for `value` (its bytes, without the length).
    static func postgresNIO<Value: PostgresDynamicTypeEncodable>(_ value: Value) -> ByteBuffer {
        var buffer = ByteBuffer()
        value.encode(into: &buffer, context: .default)
        return buffer
    }

    static func encoded(_ column: PageColumn) -> ByteBuffer {
        var buffer = ByteBuffer()
        column.encode(into: &buffer, context: .default)
        return buffer
    }

    @Test(arguments: [0, 1, 6])
    func writesTheBytesPostgresNIOWritesForTheSameArray(_ count: Int) throws {
        let records = Array(Self.records.prefix(count))
        #expect(records.count == count)
        let ids = try PageColumn(records, .ids)
        let hashes = try PageColumn(records, .hashes)
        let payloads = try PageColumn(records, .payloads)
        #expect(Self.encoded(ids) == Self.postgresNIO(records.map(\.id)))
        #expect(Self.encoded(hashes) == Self.postgresNIO(records.map { Int64(bitPattern: $0.hash) }))
        #expect(Self.encoded(payloads) == Self.postgresNIO(records.map { String(decoding: $0.json, as: UTF8.self) }))
        #expect(ids.psqlType == .textArray && payloads.psqlType == .textArray && hashes.psqlType == .int8Array)
        #expect(ids.psqlFormat == .binary && hashes.psqlFormat == .binary)
    }

    /// Written after what the buffer already holds, as a binding is.
    @Test func appendsToTheBuffer() throws {
        var buffer = ByteBuffer(bytes: [9, 9, 9])
        try PageColumn(Self.records, .ids).encode(into: &buffer, context: .default)
        var expected = ByteBuffer(bytes: [9, 9, 9])
        Self.records.map(\.id).encode(into: &expected, context: .default)
        #expect(buffer == expected)
    }

    /// An array past what one PostgreSQL value may hold fails the page as invalid (never retried as
    /// an outage), naming the column; one that fits exactly is taken. (The real limit, 1 GiB, is
    /// passed here as a page's own size.)
    @Test func anArrayPastTheLimitIsRefusedNamingItsColumn() throws {
        let records = Self.records
        let payloads = 20 + records.reduce(0) { $0 + 4 + $1.json.count }
        #expect(try PageColumn(records, .payloads, limit: payloads).records.count == records.count)
        #expect(throws: TributaryError.self) { try PageColumn(records, .payloads, limit: payloads - 1) }
        do {
            _ = try PageColumn(records, .ids, limit: 20)
            Issue.record("a page past the limit was taken")
        } catch {
            #expect(error.code == .invalidRecord)
            #expect(error.message.contains("its ids come to"), "\(error.message)")
        }
        #expect(PageColumn.maximumBytes == 1_073_741_823)
    }

    /// Bound in a statement to a real server, each column comes back as the records hold it.
    @Test func aRealServerReadsTheRecordsValues() async throws {
        guard StoreKind.available.contains(.postgres) else { return }
        let f = try await TestStore(.postgres)
        let store = try #require(f.store as? PostgresStore)
        var records = Self.records
        // A hash with the high bit set, and one of zero.
        records[0] = PreparedRecord(id: records[0].id, canonicalJSON: records[0].json, hash: UInt64.max - 5)
        records[1] = PreparedRecord(id: records[1].id, canonicalJSON: records[1].json, hash: 0)
        let (ids, hashes, payloads, empty) = try await store.read { [records] db in
            let columns = try PostgresStore.PageArrays(records)
            let none = try PostgresStore.PageArrays([])
            let query: PostgresQuery = """
                SELECT \(columns.ids)::text[], \(columns.hashes)::int8[], \(columns.payloads)::text[],
                    cardinality(\(none.ids)::text[]) + cardinality(\(none.hashes)::int8[]) + cardinality(\(none.payloads)::text[])
                """
            let rows = try await db.query(query, logger: Logger(label: "tests"))
            for try await (ids, hashes, payloads, empty) in rows.decode(([String], [Int64], [String], Int).self) {
                return (ids, hashes, payloads, empty)
            }
            throw TributaryError(.storeUnavailable, "no row")
        }
        #expect(ids == records.map(\.id))
        #expect(hashes.map { UInt64(bitPattern: $0) } == records.map(\.hash))
        #expect(payloads.map { Array($0.utf8) } == records.map(\.json))
        #expect(empty == 0)
    }
}
