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

    /// Each record's id bytes and payload (bytes: `String`s compare "é" and "e\u{301}" equal).
    static func versions(_ records: [PreparedRecord]) -> [[UInt8]] {
        records.map { Array($0.id.utf8) + Array("@".utf8) + $0.json }
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
