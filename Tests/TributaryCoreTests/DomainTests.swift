import Testing
import TributaryCore

@Suite("Domain rules")
struct DomainTests {
    @Test func preparedRecordsAreCanonicalAndIdentifiedByStringIds() throws {
        let a = try PreparedRecord(["total": 5, "id": 42, "_nango_metadata": ["cursor": "x"]])
        let b = try PreparedRecord(["id": "42", "total": 5])
        #expect(a.id == "42")
        #expect(String(decoding: a.json, as: UTF8.self) == #"{"id":"42","total":5}"#)
        #expect(a.hash == b.hash)
        #expect(a.hash != (try PreparedRecord(["id": "42", "total": 6])).hash)
        #expect(throws: TributaryError.self) { try PreparedRecord(["name": "no id"]) }
        #expect(throws: TributaryError.self) { try PreparedRecord(["id": 1.5]) }
        #expect(throws: TributaryError.self) { try PreparedRecord(["id": ""]) }
        #expect(throws: TributaryError.self) { try PreparedRecord(["id": .string(String(repeating: "x", count: 256))]) }
        #expect(throws: TributaryError.self) { try PreparedRecord(value: [1, 2]) }
    }

    @Test(arguments: [
        ("every 5 minutes", 300), ("every hour", 3600), ("every day", 86_400), ("30s", 30), ("1h", 3600), ("every half hour", 1800),
        ("every 2 hours", 7200), ("every quarter hour", 900), ("every week", 604_800), ("every 30 seconds", 30), ("5m", 300), ("2 days", 172_800),
    ])
    func frequencies(_ text: String, _ seconds: Int) throws {
        #expect(try Frequency(text).intervalSeconds == Int64(seconds))
    }

    @Test(arguments: ["every 10 seconds", "29s", "every fortnight", "5 parsecs", "", "every", "-5m"])
    func badFrequencies(_ text: String) {
        #expect(throws: TributaryError.self) { try Frequency(text) }
    }

    @Test func namesAndVariants() throws {
        #expect(ModelName.isValid("Order"))
        #expect(ModelName.isValid("Order_V2"))
        #expect(!ModelName.isValid("order"))
        #expect(!ModelName.isValid("Order-X"))
        try Variant.validate("store-eu_1")
        #expect(throws: TributaryError.self) { try Variant.validate("has space") }
        #expect(throws: TributaryError.self) { try Variant.validate(String(repeating: "v", count: 256)) }
        #expect(Variant.isBase("BASE"))
    }

    @Test func checkpointsAreFlatAndSmall() throws {
        let checkpoint: Checkpoint = ["cursor": "abc", "page": 3, "done": false]
        #expect(try Checkpoint(json: checkpoint.json) == checkpoint)
        #expect(throws: TributaryError.self) { try Checkpoint(["nested": ["a": 1]]) }
        #expect(throws: TributaryError.self) { try Checkpoint(["s": .string(String(repeating: "x", count: 4001))]) }
    }

    @Test func timestampsFormatAndParse() throws {
        let t = try #require(Timestamp(iso8601: "2023-09-18T15:20:35.941305+00:00"))
        #expect(t.iso8601 == "2023-09-18T15:20:35.941305+00:00")
        #expect(Timestamp(iso8601: "2023-09-18T17:20:35.941305+02:00") == t)
        #expect(Timestamp(iso8601: "2024-02-29T00:00:00Z")?.iso8601 == "2024-02-29T00:00:00.000000+00:00")
        #expect(Timestamp(iso8601: "2024-01-31")?.microseconds == 1_706_659_200_000_000)
        #expect(Timestamp(microseconds: 0).iso8601 == "1970-01-01T00:00:00.000000+00:00")
        #expect(Timestamp(iso8601: "yesterday") == nil)
        #expect(Timestamp(iso8601: "2024-13-01T00:00:00Z") == nil)
    }
}
