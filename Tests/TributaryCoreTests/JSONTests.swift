import PropertyBased
import Testing
import TributaryCore

@Suite("JSON")
struct JSONTests {
    @Test func parsesAndWritesEveryKindOfValue() throws {
        let text = #"{"s":"a\"b\\c\n\u00e9\ud83d\ude00","n":-12.50e3,"big":12345678901234567890,"t":true,"f":false,"z":null,"a":[1,[],{}],"o":{"k":"v"}}"#
        let value = try JSONParser.parse(text)
        #expect(value["s"] == .string("a\"b\\c\né😀"))
        #expect(value["n"]?.doubleValue == -12500)
        #expect(value["big"] == .number(try #require(JSONParser.parse("12345678901234567890").numberValue)), "numbers keep their text")
        #expect(JSONWriter.string(value["big"]!) == "12345678901234567890")
        #expect(value["a"] == [1, [], [:]])
        // Writing and parsing again gives the same value.
        #expect(try JSONParser.parse(JSONWriter.string(value)) == value)
    }

    @Test func prettyFormIndentsSortsKeysAndKeepsNumbersExact() throws {
        let value = try JSONParser.parse(#"{"b":[1.10,{"z":null,"a":"x\"<"}],"a":{},"c":[],"d":12345678901234567890}"#)
        #expect(
            JSONWriter.pretty(value) == """
                {
                  "a": {},
                  "b": [
                    1.10,
                    {
                      "a": "x\\"<",
                      "z": null
                    }
                  ],
                  "c": [],
                  "d": 12345678901234567890
                }
                """)
        #expect(JSONWriter.pretty(.string("s")) == #""s""#)
    }

    @Test func canonicalFormSortsKeysAtEveryLevel() throws {
        let a = try JSONParser.parse(#"{"b":1,"a":{"d":2,"c":3}}"#)
        let b = try JSONParser.parse(#" { "a" : { "c" : 3 , "d" : 2 } , "b" : 1 } "#)
        #expect(JSONWriter.string(a) == #"{"a":{"c":3,"d":2},"b":1}"#)
        #expect(JSONWriter.bytes(a) == JSONWriter.bytes(b))
        #expect(a == b)
        #expect(JSONWriter.string(.string("tab\tctl\u{01}")) == #""tab\tctl\u0001""#)
    }

    /// Characters the writer escapes, with plain, multi-byte and awkward ones around them.
    static let escapable = Gen<Character?>.element(of: Array("aZ9 \"\\\n\r\t\u{08}\u{0C}\u{00}\u{01}\u{1F}\u{7F}é€😀/<") as [Character]).map { $0! }

    /// The escaping rule spelled out byte by byte: the oracle for the writer's word-at-a-time scan.
    static func referenceLiteral(_ string: String) -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "\"")]
        for byte in string.utf8 {
            switch byte {
            case 0x22: out += Array(#"\""#.utf8)
            case 0x5C: out += Array(#"\\"#.utf8)
            case 0x0A: out += Array(#"\n"#.utf8)
            case 0x0D: out += Array(#"\r"#.utf8)
            case 0x09: out += Array(#"\t"#.utf8)
            case 0x08: out += Array(#"\b"#.utf8)
            case 0x0C: out += Array(#"\f"#.utf8)
            case ..<0x20: out += Array(#"\u00"#.utf8) + Array(String(byte, radix: 16).leftPadded(to: 2).utf8)
            default: out.append(byte)
            }
        }
        return out + [UInt8(ascii: "\"")]
    }

    /// Any string, short or past the writer's word size and buffer, escapes exactly as the rule
    /// says and reads back as itself; one writer reused for many values writes each the same.
    @Test func stringsEscapeExactlyAndReadBack() async throws {
        await propertyCheck(count: 400, input: Self.escapable.string(of: 0...70)) { text in
            let written = JSONWriter.bytes(.string(text))
            #expect(written == Self.referenceLiteral(text), "\(text.debugDescription)")
            #expect((try? JSONParser.parse(written)) == .string(text), "\(text.debugDescription)")
        }
        // Every ASCII byte and a multi-byte character alone at every offset of two words, in plain
        // text of every length short of a word (read as one word), as long as a word, and longer
        // (its last bytes short of a word read as the last eight); one writer, from a small buffer.
        var writer = JSONWriter(canonical: true, reservingCapacity: 16)
        let singles = (0...0x7F).map { String(UnicodeScalar(UInt8($0))) } + ["é"]
        for length in [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 300] {
            for offset in 0..<17 {
                for single in singles {
                    var text = String(repeating: "x", count: length)
                    text.insert(contentsOf: single, at: text.index(text.startIndex, offsetBy: min(offset, length)))
                    writer.removeAll()
                    writer.writeString(text)
                    let expected = Self.referenceLiteral(text)
                    #expect(writer.bytes == expected, "\(text.debugDescription)")
                    #expect(writer.hash == ContentHash.hash(expected))
                }
            }
        }
        // Strings of up to two words written where the writer has room for their bytes and quotes
        // only: a word stored for a short string, or as a long string's last, stays inside the
        // room reserved (the writer asserts so in debug builds), and the bytes are the rule's.
        for length in 0...16 {
            for single in ["x", "\"", "\u{01}", "é"] {
                let text = String(repeating: "x", count: max(length - 1, 0)) + (length > 0 ? single : "")
                var edge = JSONWriter(canonical: true, reservingCapacity: 64)
                let filler = String(repeating: "f", count: 64 - text.utf8.count - 4)
                edge.writeString(filler)
                edge.writeString(text)
                #expect(edge.bytes == Self.referenceLiteral(filler) + Self.referenceLiteral(text), "\(text.debugDescription)")
            }
        }
        // Six bytes written for every one read, far past the buffer the writer had.
        let controls = String(repeating: "\u{01}", count: 5_000)
        writer.removeAll()
        writer.writeString(controls)
        #expect(writer.bytes == Self.referenceLiteral(controls))
    }

    /// Records are written canonically straight from the parsed object: keys sorted by UTF-8 bytes
    /// at every level (non-ASCII and prefix keys included), `_nango_metadata` left out, an integer id
    /// written as a string — the same bytes whatever order the provider sent.
    @Test func preparedRecordIsCanonicalWithoutCopying() throws {
        let a = try PreparedRecord(value: JSONParser.parse(#"{"zé":1,"z":2,"id":7,"_nango_metadata":{"x":1},"b":{"ab":1,"a":2,"é":3,"e":4},"aa":[{"y":1,"x":2}]}"#))
        let b = try PreparedRecord(value: JSONParser.parse(#"{"aa":[{"x":2,"y":1}],"b":{"e":4,"é":3,"a":2,"ab":1},"id":"7","z":2,"zé":1}"#))
        #expect(String(decoding: a.json, as: UTF8.self) == #"{"aa":[{"x":2,"y":1}],"b":{"a":2,"ab":1,"e":4,"é":3},"id":"7","z":2,"zé":1}"#)
        #expect(a == b)
        #expect(a.id == "7")
        // The same order as sorting the keys' UTF-8 bytes.
        let keys = ["b", "a", "ab", "é", "e", "Z", "_", "aa", "a\u{0}"]
        let object = JSONObject(keys.map { ($0, JSONValue.null) })
        let written = try JSONParser.parse(JSONWriter.bytes(.object(object))).objectValue!.keys
        #expect(written == keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) })
    }

    /// Keys that share their first eight bytes or more, end in NUL, or are not ASCII.
    static let keyPieces = Gen<String?>.element(of: ["created_", "customer", "a", "b", "\u{0}", "é", "z", "_", "Z"]).map { $0 ?? "" }

    /// Any object's keys are written in the order of their UTF-8 bytes, small objects (sorted in
    /// place) and large ones (past 32 members) alike, and the object reads back as itself.
    @Test func canonicalKeyOrderIsTheKeysByteOrder() async throws {
        let keys = Self.keyPieces.array(of: 1...4).map { $0.joined() }.array(of: 0...40)
        await propertyCheck(count: 300, input: keys) { keys in
            var unique: [String] = []
            var seen = Set<[UInt8]>()
            for key in keys where seen.insert(Array(key.utf8)).inserted { unique.append(key) }
            let object = JSONObject(unique.enumerated().map { ($1, JSONValue.number(JSONNumber($0))) })
            let written = JSONWriter.bytes(.object(object))
            let order = try? JSONParser.parse(written).objectValue?.keys.map { Array($0.utf8) }
            #expect(order == unique.map { Array($0.utf8) }.sorted { $0.lexicographicallyPrecedes($1) }, "\(unique)")
            #expect((try? JSONParser.parse(written)) == .object(object), "\(unique)")
        }
    }

    @Test(arguments: [
        "", "{", "[1,]", "{\"a\":1,}", "01", "1.", "-", "tru", "\"unterminated", "{\"a\" 1}", "[1] 2", "\"\u{01}\"", "\"\\x\"", "{1:2}",
    ])
    func rejectsInvalidJSON(_ text: String) {
        #expect(throws: JSONParseError.self) { try JSONParser.parse(text) }
    }

    @Test func rejectsHostileNesting() {
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        #expect(throws: JSONParseError.self) { try JSONParser.parse(deep) }
    }

    @Test func hugeObjectsCostTheirSizeNotItsSquare() throws {
        // 60,000 keys in descending order with duplicates: a linear duplicate search or an insertion
        // sort would take billions of comparisons (minutes); the index and the library sort do not.
        let count = 60_000
        var text = "{"
        for i in stride(from: count - 1, through: 0, by: -1) { text += "\"k\(i)\":\(i)," }
        text += #""k5":"again","k59999":"last","e\u0301":1,"é":2}"#
        let object = try #require(try JSONParser.parse(text).objectValue)
        #expect(object.count == count + 2, "duplicates replace, whether found by search or by the index")
        #expect(object["k5"] == "again" && object["k59999"] == "last" && object["k0"] == 0)
        // Canonically equivalent keys of other bytes are two keys, as below the index and in JavaScript.
        #expect(object.keys.suffix(2).map { Array($0.utf8) } == [Array("e\u{301}".utf8), Array("\u{e9}".utf8)])
        #expect(object["e\u{301}"] == 1 && object["\u{e9}"] == 2)
        let written = JSONWriter.bytes(.object(object))
        #expect(written.starts(with: Array(#"{"e\#u{301}":1,"k0":0,"k1":1,"k10":10,"#.utf8)))
        #expect(written.suffix(8) == Array(#","é":2}"#.utf8), "after every ASCII key: sorted by bytes")
        #expect(try JSONParser.parse(written) == .object(object))
        // Below the index the same rules hold.
        let small = try #require(try JSONParser.parse(#"{"b":1,"e\u0301":1,"a":2,"b":3,"é":4}"#).objectValue)
        #expect(small.keys.map { Array($0.utf8) } == ["b", "e\u{301}", "a", "\u{e9}"].map { Array($0.utf8) })
        #expect(small["b"] == 3 && small["e\u{301}"] == 1 && small["\u{e9}"] == 4)
    }

    /// Keys are told apart by their bytes, as JavaScript and PostgreSQL's `jsonb` tell them apart:
    /// a provider record with "é" spelled two ways, or "Kind" beside "\u{212A}ind" (the Kelvin
    /// sign), keeps both members — in the object, its canonical JSON and its hash — where a `String`
    /// comparison would have kept one and lost the other's value. Equal bytes are still one key.
    @Test func keysThatAreOnlyCanonicallyEquivalentAreTwoMembers() throws {
        let text = #"{"id":"r1","caf\u00e9":1,"cafe\u0301":2,"Kind":"a","\u212Aind":"b","café":3}"#
        let object = try #require(try JSONParser.parse(text).objectValue)
        #expect(object.count == 5, "é as one code point, é as e and a combining accent, Kind, Kelvin-ind: four keys and the id")
        #expect(object["caf\u{e9}"] == 3, "a later duplicate of the same bytes replaces the value")
        #expect(object["cafe\u{301}"] == 2)
        #expect(object["Kind"] == "a" && object["\u{212A}ind"] == "b")
        let record = try PreparedRecord(value: .object(object))
        #expect(record.json == Array(#"{"Kind":"a","cafe\#u{301}":2,"caf\#u{e9}":3,"id":"r1","\#u{212A}ind":"b"}"#.utf8))
        // Dropping either spelling changes the record's hash: both are part of the data.
        var withoutOne = object
        withoutOne.removeValue(forKey: "cafe\u{301}")
        #expect(withoutOne.count == 4 && withoutOne["caf\u{e9}"] == 3)
        #expect(try PreparedRecord(value: .object(withoutOne)).hash != record.hash)
        // Objects differing only in a key's spelling are different objects, in either size class.
        #expect(JSONObject([("é", 1)]) != JSONObject([("e\u{301}", 1)]))
        let large = (0..<20).map { ("k\($0)", JSONValue.number(JSONNumber($0))) }
        #expect(JSONObject(large + [("é", 1)]) != JSONObject(large + [("e\u{301}", 1)]))
        #expect(JSONObject(large + [("é", 1)]) == JSONObject([("é", 1)] + large))
        // A merge (batchUpdate, updateMetadata) sets the key of the same bytes, small or large.
        for base in [JSONObject([("é", 1)]), JSONObject(large + [("é", 1)])] {
            let merged = base.merging(JSONObject([("e\u{301}", 2)]))
            #expect(merged.count == base.count + 1 && merged["é"] == 1 && merged["e\u{301}"] == 2)
        }
    }

    @Test func mergingLargeObjectsCostsTheirSizes() {
        // 50,000 keys patched onto 50,000 (half shared): a search per member would be 2.5 billion
        // comparisons; the index makes it linear, with the same result as the small case.
        let base = JSONObject((0..<50_000).map { ("k\($0)", JSONValue.number(JSONNumber($0))) } + [("nested", ["a": 1, "b": 2])])
        let patch = JSONObject((25_000..<75_000).map { ("k\($0)", JSONValue.string("p\($0)")) } + [("nested", ["b": 3, "c": 4])])
        let merged = base.merging(patch)
        #expect(merged.count == 75_001)
        #expect(merged["k0"] == 0 && merged["k24999"] == 24_999 && merged["k25000"] == "p25000" && merged["k74999"] == "p74999")
        #expect(merged["nested"] == ["a": 1, "b": 3, "c": 4], "nested objects still merge member by member")
        #expect(merged.keys.prefix(2) == ["k0", "k1"] && merged.keys.last == "k74999", "existing keys keep their place, new ones are appended")
        let shallow = base.shallowMerging(patch)
        #expect(shallow.count == 75_001 && shallow["nested"] == ["b": 3, "c": 4])
    }

    @Test func deepMergeReplacesArraysAndMergesObjects() {
        let old: JSONObject = ["a": 1, "o": ["x": 1, "y": 2], "arr": [1, 2]]
        let merged = old.merging(["o": ["y": 3], "arr": [9], "new": true])
        #expect(merged == ["a": 1, "o": ["x": 1, "y": 3], "arr": [9], "new": true])
        #expect(old.shallowMerging(["o": ["y": 3]]) == ["a": 1, "o": ["y": 3], "arr": [1, 2]])
    }

    @Test func contentHashSeparatesDifferentInputs() {
        var hashes = Set<UInt64>()
        var input: [UInt8] = []
        for i in 0..<600 {
            hashes.insert(ContentHash.hash(input))
            input.append(UInt8(i % 251))
        }
        #expect(hashes.count == 600, "every length 0…599 hashes differently")
        #expect(ContentHash.hash(Array("same".utf8)) == ContentHash.hash(Array("same".utf8)))
        let a = Array(String(repeating: "x", count: 100).utf8)
        var b = a
        b[50] = UInt8(ascii: "y")
        #expect(ContentHash.hash(a) != ContentHash.hash(b))
    }
}

extension JSONValue {
    var numberValue: JSONNumber? {
        if case .number(let n) = self { return n }
        return nil
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        String(repeating: "0", count: max(0, width - count)) + self
    }
}
