import Testing
import TributaryCore
@testable import TributaryPostgres

/// A page lookup's answer from the database, decoded and checked before anything is written by it.
@Suite("Page lookups' answers (PageLookup)")
struct PageLookupTests {
    @Test func anAlignedAnswerGivesPositionsAndKinds() throws {
        let lookup = try PageLookup(writes: [1 * 4 + 0, 3 * 4 + 1, 10 * 4 + 2], aligned: true, count: 10)
        #expect(lookup.indices == [0, 2, 9])
        #expect(lookup.kinds == [.changed, .deleted, .pruned])
        #expect(lookup.aligned)
    }

    @Test func aRecordByRecordAnswerGivesPositionsOnly() throws {
        let lookup = try PageLookup(writes: [2, 5], aligned: false, count: 5)
        #expect(lookup.indices == [1, 4])
        #expect(lookup.kinds == nil)
        #expect(!lookup.aligned)
        #expect(try PageLookup(writes: [], aligned: true, count: 5) == PageLookup(writes: [], aligned: true, count: 0))
    }

    /// Answers no page of five records can have: a position out of the page, one named twice or
    /// out of order, a kind that does not exist.
    static let impossible: [(writes: [Int64], aligned: Bool)] = [
        ([0], false), ([6], false), ([-3], false), ([2, 2], false), ([3, 1], false), ([Int64.max], false), ([Int64.min], false),
        ([0], true), ([24], true), ([11], true), ([8, 9], true), ([-1], true), ([Int64.max], true),
    ]

    @Test(arguments: Self.impossible)
    func anAnswerNamingNoRecordOfThePageOrOneTwiceIsRefused(_ answer: (writes: [Int64], aligned: Bool)) {
        #expect(throws: TributaryError.self) { try PageLookup(writes: answer.writes, aligned: answer.aligned, count: 5) }
    }
}
