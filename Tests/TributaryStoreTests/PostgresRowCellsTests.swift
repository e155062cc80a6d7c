import Logging
import PostgresNIO
import Testing
@testable import TributaryPostgres
import TributaryTestSupport

/// The change feed's row reader: each column in order, binary integers and text read in place,
/// other types through postgres-nio's decoding, and an error — never a trap — for a NULL where a
/// value must be, a column of another type, or a column that is not there.
@Suite("PostgreSQL row cells")
struct PostgresRowCellsTests {
    @Test func readsEachColumnInOrderAndRefusesWhatIsNotThere() async throws {
        guard StoreKind.available.contains(.postgres) else { return }
        let f = try await TestStore(.postgres)
        let store = try #require(f.store as? PostgresStore)
        let rows = try await store.read { db in
            var read: [String] = []
            let query: PostgresQuery = """
                SELECT 42::int8, 7::int4, NULL::int8, '-9223372036854775808'::int8, 'é x'::text, 'v'::varchar(4), '{"a": 1}'::jsonb::text, NULL::text, 'x'::text, NULL::int8
                """
            for try await row in try await db.query(query, logger: Logger(label: "tests")) {
                var cells = RowCells(row)
                #expect(try cells.int64() == 42)
                #expect(try cells.int64() == 7, "an int4 column, through postgres-nio")
                #expect(try cells.optionalInt64() == nil)
                #expect(try cells.optionalInt64() == Int64.min)
                #expect(try cells.string() == "é x")
                #expect(try cells.textBytes() == Array("v".utf8))
                #expect(try cells.textBytes() == Array(#"{"a": 1}"#.utf8))
                #expect(throws: (any Error).self, "NULL where text must be") { try cells.string() }
                #expect(throws: (any Error).self, "text read as an integer") { try cells.int64() }
                #expect(throws: RowCells.Missing.self, "NULL where an integer must be") { try cells.int64() }
                #expect(throws: RowCells.Missing.self, "past the last column") { try cells.optionalInt64() }
                read.append("row")
            }
            return read
        }
        #expect(rows == ["row"])
    }
}
