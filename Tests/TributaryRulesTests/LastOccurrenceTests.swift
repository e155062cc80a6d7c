import Testing
import TributaryCore
import TributaryStore

/// A batch saved with an id more than once keeps each id's last version, in the order those last
/// versions come (what saving the records one after another leaves), ids compared by their bytes.
@Suite("One record per id in a batch")
struct LastOccurrenceTests {
    static func record(_ id: String, _ version: Int) throws -> PreparedRecord {
        try PreparedRecord(["id": .string(id), "v": .number(JSONNumber(version))])
    }

    static func versions(_ records: [PreparedRecord]) -> [String] {
        records.map { "\($0.id)@\(String(decoding: $0.json, as: UTF8.self))" }
    }

    @Test func eachIdKeepsItsLastVersionInTheOrderTheLastVersionsCome() throws {
        let batch = try [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("b", 5)].map(Self.record)
        #expect(Self.versions(batch.lastOccurrencePerId) == Self.versions([batch[2], batch[3], batch[4]]))
    }

    @Test func aBatchWithEachIdOnceIsKeptAsItIs() throws {
        let batch = try [("x", 1), ("y", 2), ("z", 3)].map(Self.record)
        #expect(Self.versions(batch.lastOccurrencePerId) == Self.versions(batch))
        #expect([PreparedRecord]().lastOccurrencePerId.isEmpty)
    }

    @Test func idsAreComparedByTheirBytes() throws {
        // One `String`, two ids: the databases compare bytes.
        let batch = try [("é", 1), ("e\u{301}", 2), ("é", 3)].map(Self.record)
        #expect(Self.versions(batch.lastOccurrencePerId) == Self.versions([batch[1], batch[2]]))
    }
}
