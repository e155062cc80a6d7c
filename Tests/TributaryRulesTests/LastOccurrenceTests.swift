import PropertyBased
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

    /// The rule spelled out: for each id (by its bytes), its last index; those indices in order.
    static func reference(_ batch: [PreparedRecord]) -> [PreparedRecord] {
        var last: [[UInt8]: Int] = [:]
        for (index, record) in batch.enumerated() { last[Array(record.id.utf8)] = index }
        return last.values.sorted().map { batch[$0] }
    }

    /// Ids from a few that repeat, share prefixes and differ only in their bytes.
    static let ids = Gen<String?>.element(of: ["a", "b", "ab", "a\u{0}", "é", "e\u{301}", "ord_1234567890", "ord_1234567891", ""]).map { $0 ?? "" }

    /// Any batch, with the real hash and with one under which every id looks alike (the exact
    /// comparison alone decides, as when a batch's ids are crafted to collide): the rule's records.
    @Test func anyBatchKeepsTheRulesRecordsWhateverTheHashSays() async throws {
        await propertyCheck(count: 300, input: Self.ids.array(of: 0...24)) { ids in
            let batch = ids.enumerated().compactMap { index, id in try? Self.record(id.isEmpty ? "z" : id, index) }
            let expected = Self.versions(Self.reference(batch))
            #expect(Self.versions(batch.lastOccurrencePerId) == expected, "\(ids)")
            #expect(Self.versions(batch.lastOccurrencePerId(idHash: { _ in 7 })) == expected, "\(ids)")
        }
    }

    @Test func idsWhoseHashesCollideAreStillTwoRecords() throws {
        let batch = try [("x", 1), ("y", 2), ("z", 3)].map(Self.record)
        #expect(Self.versions(batch.lastOccurrencePerId(idHash: { _ in 0 })) == Self.versions(batch))
        let repeated = try [("é", 1), ("e\u{301}", 2), ("é", 3)].map(Self.record)
        #expect(Self.versions(repeated.lastOccurrencePerId(idHash: { _ in 0 })) == Self.versions([repeated[1], repeated[2]]))
    }
}
