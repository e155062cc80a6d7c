import Testing
import TributaryCore

@Suite("Preparing a page of records")
struct PreparedRecordPageTests {
    /// Records whose canonical form differs from their input (unsorted keys, integer ids, metadata to drop).
    static func page(_ count: Int) -> [JSONObject] {
        (0..<count).map { index -> JSONObject in
            ["total": .number(JSONNumber(Int64(index % 7))), "id": .number(JSONNumber(Int64(index))), "name": .string("order \(index)"),
             "_nango_metadata": ["cursor": "x"]]
        }
    }

    @Test(arguments: [0, 1, 127, 128, 129, 255, 256, 1000])
    func theSameRecordsInTheSameOrderAsOneByOne(_ count: Int) async throws {
        let objects = Self.page(count)
        let oneByOne = try objects.map { try PreparedRecord($0) }
        for parts in 1...4 {
            let prepared = try await PreparedRecord.preparing(objects, parts: parts)
            #expect(prepared == oneByOne, "\(count) records in \(parts) parts")
        }
        #expect(try await PreparedRecord.preparing(objects) == oneByOne)
    }

    /// The error is the first invalid record's in the page's order, not the first to be found: the
    /// first part's bad record is its last, the second part's its first (found sooner).
    @Test func theFirstInvalidRecordInThePagesOrderIsReported() async throws {
        var objects = Self.page(1000)
        objects[499] = ["id": ""]
        objects[500] = ["name": "no id"]
        for _ in 0..<20 {
            let error = await #expect(throws: TributaryError.self) { try await PreparedRecord.preparing(objects, parts: 2) }
            #expect(error?.message == "A record's \"id\" must be 1 to 255 bytes long.")
        }
        objects[499] = ["id": 499]
        let error = await #expect(throws: TributaryError.self) { try await PreparedRecord.preparing(objects, parts: 4) }
        #expect(error?.message == "A record has no \"id\" field; every record needs a string or integer id.")
    }
}
