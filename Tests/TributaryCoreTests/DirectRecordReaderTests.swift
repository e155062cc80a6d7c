import PropertyBased
import Synchronization
import Testing

@testable import TributaryCore

/// Records read straight from the response bytes (``DirectRecordReader``) must be exactly what the
/// tree path gives — parse, ``DeclarativeSpec/transform(_:)``, ``PreparedRecord`` — or the reader
/// must give up so that the tree path answers (with the records or the precise error).
@Suite("Records read straight from the bytes")
struct DirectRecordReaderTests {
    /// What the tree path makes of a page: its body and prepared records, or its error.
    static func treeRead(_ bytes: [UInt8], spec: DeclarativeSpec, recordsPath: String?) -> Result<(body: JSONValue, records: [PreparedRecord]), TributaryError> {
        do {
            let (body, records) = try ProviderResponse(status: 200, headers: [], body: bytes).records(at: recordsPath, answering: ProviderRequest(.GET, "/orders"))
            return .success((body, try records.map { try PreparedRecord(spec.transform($0)) }))
        } catch let error as TributaryError {
            return .failure(error)
        } catch {
            return .failure(TributaryError(.init(rawValue: "unexpected"), "\(error)"))
        }
    }

    /// `body` with the value at `path` (object members) replaced by an empty array.
    static func emptied(_ body: JSONValue, at path: ArraySlice<String>) -> JSONValue {
        guard let name = path.first else { return .array([]) }
        guard case .object(var object) = body, let inner = object[name] else { return body }
        object[name] = emptied(inner, at: path.dropFirst())
        return .object(object)
    }

    /// Reads `bytes` both ways and checks they agree; answers whether the direct path was taken.
    @discardableResult
    static func check(_ bytes: [UInt8], idField: String = "id", recordsPath: String?, sourceLocation: SourceLocation = #_sourceLocation) -> Bool {
        let spec = DeclarativeSpec(endpoint: "/orders", recordsPath: recordsPath, idField: idField)
        let tree = treeRead(bytes, spec: spec, recordsPath: recordsPath)
        let text = String(decoding: bytes, as: UTF8.self)
        // Through the public entry point: the same records, or the same error.
        let public_: Result<(body: JSONValue, records: [PreparedRecord]), TributaryError>
        do {
            public_ = .success(try spec.preparedRecords(of: ProviderResponse(status: 200, headers: [], body: bytes), at: recordsPath, answering: ProviderRequest(.GET, "/orders")))
        } catch let error as TributaryError {
            public_ = .failure(error)
        } catch {
            public_ = .failure(TributaryError(.init(rawValue: "unexpected"), "\(error)"))
        }
        switch (tree, public_) {
        case (.success(let expected), .success(let got)):
            #expect(got.records == expected.records, "\(text)", sourceLocation: sourceLocation)
        case (.failure(let expected), .failure(let got)):
            #expect(got.code == expected.code && got.message == expected.message, "\(text)", sourceLocation: sourceLocation)
        default:
            Issue.record("tree \(tree) but public \(public_) for \(text)", sourceLocation: sourceLocation)
        }
        guard let direct = DirectRecordReader.read(bytes, recordsPath: Pagination.components(recordsPath), idMember: idField) else { return false }
        guard case .success(let expected) = tree else {
            Issue.record("the direct path read a page the tree path refuses (\(tree)): \(text)", sourceLocation: sourceLocation)
            return true
        }
        #expect(direct.records == expected.records, "\(text)", sourceLocation: sourceLocation)
        #expect(direct.body == emptied(expected.body, at: Pagination.components(recordsPath)[...]), "\(text)", sourceLocation: sourceLocation)
        return true
    }

    @Test func plainRecordsAreCanonicalWithTheIdAsAString() throws {
        let page = #"{"meta":{"next":"c2"}, "data": [ {"total": 12.50, "id": 7, "tags":["b","a"], "_nango_metadata": {"x":1}, "customer": {"z": null, "a": true}} , {"id":"o-2","b":1,"a":2} ] }"#
        #expect(Self.check(Array(page.utf8), recordsPath: "data"))
        let read = try #require(DirectRecordReader.read(Array(page.utf8), recordsPath: ["data"], idMember: "id"))
        #expect(read.records.map(\.id) == ["7", "o-2"])
        #expect(String(decoding: read.records[0].json, as: UTF8.self) == #"{"customer":{"a":true,"z":null},"id":"7","tags":["b","a"],"total":12.50}"#)
        #expect(String(decoding: read.records[1].json, as: UTF8.self) == #"{"a":2,"b":1,"id":"o-2"}"#)
        #expect(read.body == ["meta": ["next": "c2"], "data": []])
    }

    @Test func anIdFromAnotherMemberIsAddedAsId() throws {
        let page = #"[{"order_id": 42, "z": 1, "a": 0}, {"order_id": "x", "id": 9}]"#
        #expect(Self.check(Array(page.utf8), idField: "order_id", recordsPath: nil))
        let read = try #require(DirectRecordReader.read(Array(page.utf8), recordsPath: [], idMember: "order_id"))
        #expect(String(decoding: read.records[0].json, as: UTF8.self) == #"{"a":0,"id":"42","order_id":42,"z":1}"#)
        #expect(String(decoding: read.records[1].json, as: UTF8.self) == #"{"id":"x","order_id":"x"}"#)
        // An `id` member only canonically equivalent to the id field (e + U+0301 beside U+00E9) is
        // replaced by the id field's bytes, by either path.
        let accent = #"[{"code":"é","id":"e\u0301"}]"#
        #expect(Self.check(Array(accent.utf8), idField: "code", recordsPath: nil))
        let accented = try #require(DirectRecordReader.read(Array(accent.utf8), recordsPath: [], idMember: "code"))
        #expect(accented.records.map { Array($0.id.utf8) } == [Array("\u{e9}".utf8)])
        #expect(accented.records.map(\.json) == [Array(#"{"code":"\#u{e9}","id":"\#u{e9}"}"#.utf8)])
    }

    @Test func duplicatesKeepTheLastValueAsTheTreeDoes() {
        // A duplicate member, a duplicate id, and the records key twice (the second array wins).
        #expect(Self.check(Array(#"{"data":[{"id":1}],"data":[{"id":2,"a":1,"a":2,"id":3}]}"#.utf8), recordsPath: "data"))
        // The records key again with something else: the tree finds no array, so neither may the direct path.
        #expect(!Self.check(Array(#"{"data":[{"id":1}],"data":null}"#.utf8), recordsPath: "data"))
        #expect(!Self.check(Array(#"{"r":{"items":[{"id":1}]},"r":{"other":1}}"#.utf8), recordsPath: "r.items"))
        #expect(Self.check(Array(#"{"r":{"items":[{"id":1}]},"r":{"items":[{"id":5}]}}"#.utf8), recordsPath: "r.items"))
    }

    @Test func escapedStringsAndInvalidUTF8AreDecodedAndWrittenAgain() {
        #expect(Self.check(Array(#"[{"id":"\u0041\/b","s":"caf\u00e9 \ud83d\ude00 \"q\" \\ \n","t":"café","u":"\ud800x"}]"#.utf8), recordsPath: nil))
        // Invalid UTF-8 in a value is repaired to U+FFFD, as the parser does.
        #expect(Self.check(Array(#"[{"id":"a","s":""#.utf8) + [0xFF, 0xC3] + Array(#"x"}]"#.utf8), recordsPath: nil))
    }

    @Test func validUTF8KeysAndStringsAreCopiedAsTheyAre() throws {
        // Sorted by their bytes (e + U+0301 is 65 CC 81, `id` 69 64, U+00E9 C3 A9), canonically
        // equivalent keys kept apart, the last of two equal ones winning — as the tree does.
        let page = "[{\"\u{e9}\":1,\"id\":1,\"e\u{301}\":2,\"\u{e9}\":3,\"s\":\"caf\u{e9} \u{65e5}\u{672c} \u{1F600}\"}]"
        #expect(Self.check(Array(page.utf8), recordsPath: nil))
        let read = try #require(DirectRecordReader.read(Array(page.utf8), recordsPath: [], idMember: "id"))
        #expect(read.records.map(\.json) == [Array("{\"e\u{301}\":2,\"id\":\"1\",\"s\":\"caf\u{e9} \u{65e5}\u{672c} \u{1F600}\",\"\u{e9}\":3}".utf8)])
        // Nested, and the id taken from a member whose name is not ASCII.
        let nested = "{\"data\":[{\"c\u{f3}digo\":\"\u{e9}-1\",\"Stra\u{df}e\":{\"\u{65e5}\u{672c}\":[{\"\u{1F600}\":true}],\"a\":\"\u{fc}\"}}]}"
        #expect(Self.check(Array(nested.utf8), idField: "c\u{f3}digo", recordsPath: "data"))
        let byName = try #require(DirectRecordReader.read(Array(nested.utf8), recordsPath: ["data"], idMember: "c\u{f3}digo"))
        #expect(byName.records.map { Array($0.id.utf8) } == [Array("\u{e9}-1".utf8)])
    }

    @Test func onlyWellFormedUTF8IsCopied() throws {
        // Well formed, and kept by the parser as it is: a byte-order mark, a noncharacter, the line
        // and paragraph separators, the last scalar, DEL (none of which the writer escapes).
        for text in ["\u{FEFF}x", "\u{FFFE}", "a\u{2028}b\u{2029}", "\u{10FFFF}", "\u{7F}"] {
            let page = Array("[{\"id\":1,\"\(text)\":\"\(text)\"}]".utf8)
            #expect(Self.check(page, recordsPath: nil), "\(text.unicodeScalars.map { $0.value })")
            let read = try #require(DirectRecordReader.read(page, recordsPath: [], idMember: "id"))
            let member = "\"\(text)\":\"\(text)\"", id = #""id":"1""#
            let sorted = Array(text.utf8).lexicographicallyPrecedes(Array("id".utf8)) ? "{\(member),\(id)}" : "{\(id),\(member)}"
            #expect(read.records.map(\.json) == [Array(sorted.utf8)])
        }
        // Ill formed: overlong forms, an encoded surrogate, past U+10FFFF, a five-byte form, C0/C1,
        // a sequence cut short by the closing quote. In a key the page goes the tree way; in a value
        // it is repaired as the tree repairs it.
        let invalid: [[UInt8]] = [[0xC0, 0xAF], [0xE0, 0x80, 0xAF], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xF8, 0x88, 0x80, 0x80, 0x80], [0xC1, 0xBF], [0x61, 0xE6, 0x97]]
        for bytes in invalid {
            #expect(!Self.check(Array(#"[{"id":1,""#.utf8) + bytes + Array(#"":1}]"#.utf8), recordsPath: nil), "\(bytes)")
            let value = Array(#"[{"id":1,"s":""#.utf8) + bytes + Array(#""}]"#.utf8)
            #expect(Self.check(value, recordsPath: nil), "\(bytes)")
            let read = try #require(DirectRecordReader.read(value, recordsPath: [], idMember: "id"))
            #expect(String(validating: read.records[0].json, as: UTF8.self) != nil, "\(bytes)")
        }
        // The check agrees with `String(validating:)`, its fallback where `UTF8Span` is not available.
        for bytes in invalid + ["\u{FEFF}x", "\u{10FFFF}", "caf\u{e9}", "", "\u{1F600}"].map({ Array($0.utf8) }) {
            let valid = bytes.withUnsafeBufferPointer { DirectRecordReader.Scanner.isValidUTF8($0) }
            #expect(valid == (String(validating: bytes, as: UTF8.self) != nil), "\(bytes)")
        }
    }

    @Test func whatTheDirectPathDoesNotVouchForGoesTheTreeWay() {
        // Keys with an escape or invalid UTF-8 (the tree decodes them, repairing invalid bytes to
        // U+FFFD, before it compares them: two invalid keys can be one there).
        #expect(!Self.check(Array(#"[{"id":1,"k\n":1}]"#.utf8), recordsPath: nil))
        #expect(!Self.check(Array(#"[{"id":1,"o":{"e\u0301":1}}]"#.utf8), recordsPath: nil))
        #expect(!Self.check(Array(#"[{"id":1,""#.utf8) + [0xFF] + Array(#"":1,""#.utf8) + [0xFE] + Array(#"":2}]"#.utf8), recordsPath: nil))
        #expect(!Self.check(Array(#"[{"id":1,"o":{"a"#.utf8) + [0xC3] + Array(#"":1}}]"#.utf8), recordsPath: nil))
        // Records that are not objects or have no usable id: the tree path's error.
        for page in [#"[1]"#, #"[{"a":1}]"#, #"[{"id":""}]"#, #"[{"id":null}]"#, #"[{"id":"\u0000"}]"#, "[{\"id\":\"\(String(repeating: "x", count: 256))\"}]"] {
            #expect(!Self.check(Array(page.utf8), recordsPath: nil), "\(page)")
        }
        // Invalid JSON anywhere, or no array where the records should be.
        for page in [#"[{"id":1}"#, #"[{"id":01}]"#, #"{"data":[{"id":1}]} x"#, #"{"data":{"id":1}}"#, #"{"meta":tru,"data":[]}"#, "[{\"id\":\"a\u{1}\"}]"] {
            #expect(!Self.check(Array(page.utf8), recordsPath: "data"), "\(page)")
        }
        // Records inside an array on the path (`items.0.records`): the tree path walks arrays.
        #expect(!Self.check(Array(#"{"items":[{"records":[{"id":1}]}]}"#.utf8), recordsPath: "items.0.records"))
    }

    @Test func nestingIsCheckedAsStrictlyAsTheParser() {
        let deep = String(repeating: "[", count: 600) + String(repeating: "]", count: 600)
        #expect(!Self.check(Array("[{\"id\":1,\"d\":\(deep)}]".utf8), recordsPath: nil))
        let fine = String(repeating: "[", count: 10) + String(repeating: "]", count: 10)
        #expect(Self.check(Array("[{\"id\":1,\"d\":\(fine)}]".utf8), recordsPath: nil))
    }

    @Test func depthIsLimitedAsInTheParserAndInsideRecords() {
        func nested(_ levels: Int) -> String { String(repeating: "[", count: levels) + String(repeating: "]", count: levels) }
        // Around the parser's limit of 512, in the body beside the records and inside a record.
        for levels in 505...514 {
            Self.check(Array("{\"meta\":\(nested(levels)),\"data\":[{\"id\":1}]}".utf8), recordsPath: "data")
            Self.check(Array("[{\"id\":1,\"d\":\(nested(levels))}]".utf8), recordsPath: nil)
        }
        // Values up to 16 containers deep in a record are read directly; deeper ones go the tree way
        // (each level is scanned again when written, so depth would multiply the work).
        #expect(Self.check(Array("[{\"id\":1,\"d\":\(nested(16))}]".utf8), recordsPath: nil))
        #expect(!Self.check(Array("[{\"id\":1,\"d\":\(nested(17))}]".utf8), recordsPath: nil))
    }

    @Test func aHugeRecordIsReadDirectlyInItsSize() {
        // 40,000 members in descending order with a duplicate: an insertion sort would take its
        // size squared; the library sort keeps equal keys in input order, so the last one wins.
        var text = "[{"
        for i in stride(from: 39_999, through: 0, by: -1) { text += "\"k\(i)\":\(i)," }
        text += #""k7":"last","id":"big"}]"#
        #expect(Self.check(Array(text.utf8), recordsPath: nil))
    }

    @Test func truncatedPagesAreNeverReadDirectly() async {
        let seeds = Gen<Int>.int(in: 0...Int.max)
        await propertyCheck(count: 40, input: seeds) { seed in
            var writer = PageWriter(state: UInt64(seed), hostile: false)
            let page = writer.page(recordsPath: "data")
            for length in stride(from: 0, to: page.count, by: max(1, page.count / 60)) {
                #expect(!Self.check(Array(page[..<length]), recordsPath: "data"), "a page cut at \(length) was read")
            }
        }
    }

    @Test func aNextPositionInsideTheRecordsKeepsThemInTheBody() {
        #expect(Pagination(.cursor(nextCursorPath: "data.0.id", cursorParameter: "after"), recordsPath: "data").readsNextFromRecords)
        #expect(Pagination(.cursor(nextCursorPath: "0.id", cursorParameter: "after")).readsNextFromRecords)
        #expect(!Pagination(.cursor(nextCursorPath: "meta.next", cursorParameter: "after"), recordsPath: "data").readsNextFromRecords)
        #expect(!Pagination(.cursor(nextCursorPath: "datum", cursorParameter: "after"), recordsPath: "data").readsNextFromRecords)
        #expect(!Pagination(.link(nextURLPath: nil), recordsPath: nil).readsNextFromRecords)
        #expect(Pagination(.link(nextURLPath: "items.9.href"), recordsPath: "items").readsNextFromRecords)
    }

    // MARK: Random pages

    /// A small deterministic generator (splitmix64) that writes JSON text, hostile on request.
    struct PageWriter {
        var state: UInt64
        let hostile: Bool
        /// The member records take their id from.
        var idName = "id"

        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }

        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
        mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }

        mutating func space() -> String { pick(["", "", "", " ", "\n  ", "\t"]) }

        mutating func key() -> [UInt8] {
            // Keys that are not ASCII: canonically equivalent spellings, and ones that sort after
            // every ASCII key or between two of them by their first bytes.
            var keys = ["a", "b", "ab", "B", "name", "_nango_metadata", "total", "z", "i", "idx", "id_", "\u{e9}", "e\u{301}", "\u{65e5}\u{672c}", "\u{1F600}", "a\u{df}"]
                .filter { $0 != idName }.map { Array($0.utf8) }
            // With the id from another member, a plain `id` member is just data.
            if idName != "id" { keys.append(Array("id".utf8)) }
            // `id` among the other members may replace a record's id with any value; invalid UTF-8
            // is repaired by the tree, so two such keys can be one there.
            if hostile { keys += [Array("id".utf8), Array(#"k\n"#.utf8), Array(#"\u0041"#.utf8), Array("a b".utf8), [0xFF], [0x61, 0xC3], [0xED, 0xA0, 0x80]] }
            return [UInt8(ascii: "\"")] + pick(keys) + [UInt8(ascii: "\"")]
        }

        mutating func string() -> [UInt8] {
            var pieces: [[UInt8]] = [
                Array("x".utf8), Array("Hello".utf8), Array(" ".utf8), Array("42".utf8), Array(#"\""#.utf8), Array(#"\\"#.utf8),
                Array("caf\u{e9}".utf8), Array("\u{65e5}\u{672c}\u{8a9e}".utf8), Array("\u{1F600}".utf8),
            ]
            if hostile {
                pieces += [Array(#"\/"#.utf8), Array(#"\n"#.utf8), Array(#"\u00e9"#.utf8), Array(#"\ud83d\ude00"#.utf8), Array(#"\ud800"#.utf8), Array("é€".utf8), [0xFF], [0xC3]]
                if below(40) == 0 { pieces.append([0x01]) }  // a raw control byte: invalid JSON
            }
            var bytes: [UInt8] = [UInt8(ascii: "\"")]
            for _ in 0..<below(5) { bytes += pick(pieces) }
            return bytes + [UInt8(ascii: "\"")]
        }

        mutating func number() -> String {
            var numbers = ["0", "-1", "7", "12.50", "1e9", "-0.0e-3", "12345678901234567890", "3.14E+2"]
            if hostile, below(30) == 0 { numbers += ["01", "1.", "-", "+1", ".5"] }
            return pick(numbers)
        }

        mutating func value(depth: Int) -> [UInt8] {
            switch below(depth > 3 ? 4 : 7) {
            case 0: return string()
            case 1: return Array(number().utf8)
            case 2: return Array(pick(["true", "false", "null"]).utf8)
            case 3: return string()
            case 4, 5: return object(depth: depth + 1, id: nil)
            default:
                var bytes = Array(("[" + space()).utf8)
                for index in 0..<below(4) {
                    if index > 0 { bytes += Array(("," + space()).utf8) }
                    bytes += value(depth: depth + 1)
                }
                return bytes + Array((space() + "]").utf8)
            }
        }

        /// An object; with `id`, a record whose id member is written as given (and maybe again).
        mutating func object(depth: Int, id: [UInt8]?) -> [UInt8] {
            var members: [[UInt8]] = []
            for _ in 0..<below(6) { members.append(key() + Array((space() + ":" + space()).utf8) + value(depth: depth)) }
            if let id {
                members.insert(Array("\"\(idName)\":".utf8) + id, at: below(members.count + 1))
                if below(8) == 0 { members.append(Array("\"\(idName)\":".utf8) + self.id()) }  // a duplicate id: the last wins
            }
            var bytes = Array(("{" + space()).utf8)
            for (index, member) in members.enumerated() {
                if index > 0 { bytes += Array(("," + space()).utf8) }
                bytes += member
            }
            return bytes + Array((space() + "}").utf8)
        }

        mutating func id() -> [UInt8] {
            var ids: [[UInt8]] = [Array(#""o-1""#.utf8), Array("17".utf8), Array(#""a\"b""#.utf8), Array("-3.5".utf8), Array(#""é""#.utf8)]
            if hostile { ids += [Array(#""""#.utf8), Array("null".utf8), Array("true".utf8), Array(#""\u0000""#.utf8), Array("{}".utf8)] }
            return pick(ids)
        }

        mutating func record() -> [UInt8] {
            if hostile, below(40) == 0 { return value(depth: 1) }  // not an object, or no id
            return object(depth: 1, id: below(hostile ? 15 : 1_000_000) == 0 ? nil : id())
        }

        /// A page: the records array alone, or inside `data` / `result.items` next to other members.
        mutating func page(recordsPath: String?) -> [UInt8] {
            var records = Array(("[" + space()).utf8)
            for index in 0..<below(6) {
                if index > 0 { records += Array(("," + space()).utf8) }
                records += record()
            }
            records += Array((space() + "]").utf8)
            switch recordsPath {
            case nil: return records
            case "data"?: return Array(#"{"meta":{"next":"#.utf8) + string() + Array(("}," + space() + #""data":"#).utf8) + records + Array("}".utf8)
            default: return Array(#"{"result":{"count":3,"items":"#.utf8) + records + Array(#"},"next":null}"#.utf8)
            }
        }
    }

    @Test func anyPlainPageIsReadDirectlyAndExactlyAsTheTree() async {
        let seeds = Gen<Int>.int(in: 0...Int.max)
        let paths: [String?] = [nil, "data", "result.items"]
        await propertyCheck(count: 300, input: seeds, Gen<Int>.int(in: 0..<paths.count)) { seed, which in
            var writer = PageWriter(state: UInt64(seed), hostile: false)
            let page = writer.page(recordsPath: paths[which])
            #expect(Self.check(page, recordsPath: paths[which]), "a plain page took the tree path: \(String(decoding: page, as: UTF8.self))")
        }
    }

    @Test func anyIdMemberGivesTheTreesRecords() async {
        // The id taken from another member: `id` is then added in its sorted place (before `idx`,
        // after `i`), or replaces a member named `id`.
        let seeds = Gen<Int>.int(in: 0...Int.max)
        let idFields = ["order_id", "i", "idx", "id_", "a", "c\u{f3}digo", "\u{65e5}\u{672c}"]
        await propertyCheck(count: 300, input: seeds, Gen<Int>.int(in: 0..<idFields.count)) { seed, which in
            var writer = PageWriter(state: UInt64(seed), hostile: false, idName: idFields[which])
            let page = writer.page(recordsPath: "data")
            #expect(Self.check(page, idField: idFields[which], recordsPath: "data"), "\(String(decoding: page, as: UTF8.self))")
        }
    }

    @Test func anyHostilePageGivesTheTreesRecordsOrItsError() async {
        let seeds = Gen<Int>.int(in: 0...Int.max)
        let paths: [String?] = [nil, "data", "result.items"]
        let direct = DirectCount()
        await propertyCheck(count: 600, input: seeds, Gen<Int>.int(in: 0..<paths.count)) { seed, which in
            var writer = PageWriter(state: UInt64(seed), hostile: true)
            let page = writer.page(recordsPath: paths[which])
            if Self.check(page, recordsPath: paths[which]) { direct.add() }
        }
        // Hostile pages still often read directly (escaped values and invalid UTF-8 in values are handled).
        #expect(direct.value > 30, "\(direct.value) of 600 hostile pages were read directly")
    }

    final class DirectCount: Sendable {
        private let count = Mutex(0)
        var value: Int { count.withLock { $0 } }
        func add() { count.withLock { $0 += 1 } }
    }
}
