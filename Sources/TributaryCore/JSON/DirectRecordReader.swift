/// Reads the records of a provider page straight from the response bytes into ``PreparedRecord``s:
/// each record's canonical JSON is written member by member from the input, with no ``JSONValue``
/// tree built for it (the rest of the body, which holds the cursor or next link, is parsed as
/// usual).
///
/// The result is byte for byte what the tree path gives — ``JSONParser`` then
/// ``DeclarativeSpec/transform(_:)`` (with no `fields` or `rename`) then ``PreparedRecord`` —
/// including the last of duplicate keys winning, `_nango_metadata` left out, the id written as a
/// string, strings with escapes decoded and re-encoded, and invalid UTF-8 in strings repaired. Keys
/// and strings without an escape that are valid UTF-8 (ASCII or not) are copied as they are: the
/// tree path decodes them to the same bytes and, like this reader, compares and sorts keys by those
/// bytes. Where it cannot vouch for that it gives up and answers nil, and the caller takes the tree
/// path, which then gives the records or the precise error: invalid JSON anywhere, records not at an
/// object path, a record that is not an object or has no usable id, a key with an escape or invalid
/// UTF-8 (the tree path decodes such keys, repairing invalid UTF-8, before it compares their bytes:
/// two spellings of one key in the input, or two invalid sequences, can be one key there), a record
/// nested more than ``Scanner/maximumRecordNesting`` levels (each level is scanned again when it is
/// written, so deep nesting would cost its depth times its size).
enum DirectRecordReader {
    /// The records found in `body` at `recordsPath` (object member names; empty: the body is the
    /// array), each prepared with its id taken from the member `idMember`, and the body without
    /// them (an empty array stands where they were). nil: take the tree path.
    static func read(_ body: [UInt8], recordsPath: [String], idMember: String) -> (body: JSONValue, records: [PreparedRecord])? {
        let idKey = Array(idMember.utf8)
        // A key in the input is matched by its raw bytes: one the writer would escape is never raw.
        guard !idKey.isEmpty, !idKey.contains(where: { $0 == UInt8(ascii: "\\") || $0 == UInt8(ascii: "\"") || $0 < 0x20 }) else {
            return nil
        }
        return body.withUnsafeBufferPointer { buffer in
            var reader = Scanner(buffer: buffer, idKey: idKey)
            return reader.document(recordsPath: recordsPath)
        }
    }

    /// One member of an object being canonicalised: byte ranges of its key (without quotes) and
    /// its value.
    struct Member {
        var keyStart: Int
        var keyEnd: Int
        var valueStart: Int
        var valueEnd: Int
    }

    /// Gives up on the fast path (the caller takes the tree path).
    struct Unsupported: Error {}

    struct Scanner {
        var reader: JSONParser.Reader
        let buffer: UnsafeBufferPointer<UInt8>
        let idKey: [UInt8]
        /// Members of the objects being written, innermost last (a stack shared by every level).
        var members: [Member] = []
        var records: [PreparedRecord]? = nil
        /// Below the parser's own limit, so that anything accepted here is accepted there too.
        static let maximumDepth = JSONParser.maximumDepth - 2
        /// The deepest nesting inside one record read here; deeper records go the tree way.
        static let maximumRecordNesting = 16
        /// The deepest a value may be at the moment: ``maximumDepth``, and within a record also
        /// its depth plus ``maximumRecordNesting``.
        var depthLimit = Self.maximumDepth

        init(buffer: UnsafeBufferPointer<UInt8>, idKey: [UInt8]) {
            self.buffer = buffer
            self.reader = JSONParser.Reader(buffer: buffer)
            self.idKey = idKey
            members.reserveCapacity(64)
        }

        var index: Int {
            get { reader.index }
            set { reader.index = newValue }
        }

        mutating func document(recordsPath: [String]) -> (body: JSONValue, records: [PreparedRecord])? {
            do throws(Unsupported) {
                reader.skipWhitespace()
                let body = try skeleton(path: recordsPath[...], depth: 0)
                reader.skipWhitespace()
                guard index == buffer.count, let records else { return nil }
                return (body, records)
            } catch {
                return nil
            }
        }

        // MARK: The body around the records

        /// The value at the reader, parsed as a tree, except the records at `path` below it: they
        /// are prepared into ``records`` and an empty array stands in their place.
        mutating func skeleton(path: ArraySlice<String>, depth: Int) throws(Unsupported) -> JSONValue {
            guard let name = path.first else {
                try recordArray(depth: depth + 1)
                return .array([])
            }
            guard index < buffer.count, buffer[index] == UInt8(ascii: "{"), depth + 1 <= Self.maximumDepth else { throw Unsupported() }
            index += 1
            var members = ObjectMembers()
            reader.skipWhitespace()
            if index < buffer.count, buffer[index] == UInt8(ascii: "}") {
                index += 1
                return .object(JSONObject(uniqueMembers: members.members))
            }
            while true {
                reader.skipWhitespace()
                guard index < buffer.count, buffer[index] == UInt8(ascii: "\"") else { throw Unsupported() }
                let key = try attempt { (reader: inout JSONParser.Reader) throws(JSONParseError) in try reader.parseString() }
                try expect(UInt8(ascii: ":"))
                reader.skipWhitespace()
                let value: JSONValue
                if ExactString.same(key, name) {
                    // A later duplicate wins, as in the tree: it alone decides what the records are.
                    records = nil
                    value = try skeleton(path: path.dropFirst(), depth: depth + 1)
                } else {
                    value = try attempt { (reader: inout JSONParser.Reader) throws(JSONParseError) in try reader.parseValue(depth: depth + 1) }
                }
                members.set(key, value)
                if try moreMembers(closing: UInt8(ascii: "}")) { continue }
                return .object(JSONObject(uniqueMembers: members.members))
            }
        }

        /// Runs a parser step; its error only means "take the tree path".
        mutating func attempt<T>(_ step: (inout JSONParser.Reader) throws(JSONParseError) -> T) throws(Unsupported) -> T {
            do {
                return try step(&reader)
            } catch {
                throw Unsupported()
            }
        }

        mutating func expect(_ byte: UInt8) throws(Unsupported) {
            reader.skipWhitespace()
            guard index < buffer.count, buffer[index] == byte else { throw Unsupported() }
            index += 1
        }

        // MARK: Records

        /// The array of records at the reader: every element must be an object with a usable id.
        mutating func recordArray(depth: Int) throws(Unsupported) {
            guard index < buffer.count, buffer[index] == UInt8(ascii: "["), depth <= Self.maximumDepth else { throw Unsupported() }
            index += 1
            var prepared: [PreparedRecord] = []
            // One buffer for the page: each record's canonical bytes are copied out of it.
            var writer = JSONWriter(canonical: true, reservingCapacity: 1024)
            reader.skipWhitespace()
            if index < buffer.count, buffer[index] == UInt8(ascii: "]") {
                index += 1
                records = prepared
                return
            }
            while true {
                reader.skipWhitespace()
                prepared.append(try record(depth: depth + 1, writer: &writer))
                if try moreMembers(closing: UInt8(ascii: "]")) { continue }
                records = prepared
                return
            }
        }

        /// The record object at the reader: its id and canonical bytes.
        mutating func record(depth: Int, writer: inout JSONWriter) throws(Unsupported) -> PreparedRecord {
            let base = members.count
            depthLimit = min(Self.maximumDepth, depth + Self.maximumRecordNesting)
            defer {
                members.removeSubrange(base...)
                depthLimit = Self.maximumDepth
            }
            try collectMembers(depth: depth)
            let end = index
            // The id: the last member of that name (a later duplicate wins), a non-empty string or a number.
            guard let idMember = members[base...].last(where: { keyEquals($0, idKey) }) else { throw Unsupported() }
            let id: String
            switch buffer[idMember.valueStart] {
            case UInt8(ascii: "\""): id = try stringValue(idMember.valueStart..<idMember.valueEnd)
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): id = text(idMember.valueStart..<idMember.valueEnd)
            default: throw Unsupported()
            }
            guard !id.isEmpty, id.utf8.count <= 255, !id.utf8.contains(0) else { throw Unsupported() }
            writer.removeAll()
            try writeMembers(from: base, into: &writer, recordId: id)
            index = end
            return PreparedRecord(id: id, canonicalJSON: writer.bytes, hash: writer.hash)
        }

        static let metadataKey = Array(RecordMetadata.key.utf8)
        static let idKeyBytes = Array("id".utf8)

        /// Writes the members collected from `base` on, sorted by key bytes, the last of duplicate
        /// keys winning. With a `recordId` (a record's own members), `_nango_metadata` is left out
        /// and `id` is that id as a string, in its place whether or not a member had that name.
        mutating func writeMembers(from base: Int, into writer: inout JSONWriter, recordId: String? = nil) throws(Unsupported) {
            sortMembers(from: base)
            writer.appendByte(UInt8(ascii: "{"))
            var first = true
            var idPending = recordId != nil
            let top = members.count
            var position = base
            while position < top {
                let member = members[position]
                position += 1
                // Of equal keys (kept in input order by the stable sort), only the last is written.
                if position < top, keyEquals(member, members[position]) { continue }
                if let recordId {
                    if idPending, keyPrecedes(Self.idKeyBytes, member) {
                        if !first { writer.appendByte(UInt8(ascii: ",")) }
                        first = false
                        writer.appendVerbatim(#""id":"#)
                        writer.writeString(recordId)
                        idPending = false
                    }
                    if keyEquals(member, Self.metadataKey) { continue }
                    if keyEquals(member, Self.idKeyBytes) {
                        if !first { writer.appendByte(UInt8(ascii: ",")) }
                        first = false
                        writer.appendVerbatim(#""id":"#)
                        writer.writeString(recordId)
                        idPending = false
                        continue
                    }
                }
                if !first { writer.appendByte(UInt8(ascii: ",")) }
                first = false
                writer.appendByte(UInt8(ascii: "\""))
                writer.appendVerbatim(keyBytes(member))
                writer.appendVerbatim(#"":"#)
                try writeValue(member.valueStart..<member.valueEnd, into: &writer)
            }
            if idPending, let recordId {
                if !first { writer.appendByte(UInt8(ascii: ",")) }
                writer.appendVerbatim(#""id":"#)
                writer.writeString(recordId)
            }
            writer.appendByte(UInt8(ascii: "}"))
        }

        /// Scans the object at the reader, checking it, and (`keeping`) appends its members to
        /// ``members``; the reader ends past the object. Keys must be plain (``plainKey()``).
        mutating func collectMembers(depth: Int, keeping: Bool = true) throws(Unsupported) {
            guard index < buffer.count, buffer[index] == UInt8(ascii: "{"), depth <= depthLimit else { throw Unsupported() }
            index += 1
            reader.skipWhitespace()
            if index < buffer.count, buffer[index] == UInt8(ascii: "}") {
                index += 1
                return
            }
            while true {
                reader.skipWhitespace()
                let (keyStart, keyEnd) = try plainKey()
                try expect(UInt8(ascii: ":"))
                reader.skipWhitespace()
                let valueStart = index
                try skipValue(depth: depth)
                if keeping { members.append(Member(keyStart: keyStart, keyEnd: keyEnd, valueStart: valueStart, valueEnd: index)) }
                if try moreMembers(closing: UInt8(ascii: "}")) { continue }
                return
            }
        }

        /// After a member or element: true past a `,` (another follows), false past `closing`.
        mutating func moreMembers(closing: UInt8) throws(Unsupported) -> Bool {
            reader.skipWhitespace()
            guard index < buffer.count else { throw Unsupported() }
            if buffer[index] == UInt8(ascii: ",") {
                index += 1
                return true
            }
            guard buffer[index] == closing else { throw Unsupported() }
            index += 1
            return false
        }

        /// The key at the reader, without its quotes: no escape or control byte, and valid UTF-8.
        mutating func plainKey() throws(Unsupported) -> (start: Int, end: Int) {
            guard index < buffer.count, buffer[index] == UInt8(ascii: "\"") else { throw Unsupported() }
            index += 1
            let start = index
            while true {
                guard index < buffer.count else { throw Unsupported() }
                let byte = buffer[index]
                if byte == UInt8(ascii: "\"") { break }
                if byte >= 0x80 || byte == UInt8(ascii: "\\") || byte < 0x20 {
                    guard byte >= 0x80 else { throw Unsupported() }
                    return try nonASCIIKey(from: start)
                }
                index += 1
            }
            let end = index
            index += 1
            return (start, end)
        }

        /// The rest of ``plainKey()`` once it met a byte past ASCII (kept out of its loop, which
        /// most keys never leave).
        @inline(never)
        mutating func nonASCIIKey(from start: Int) throws(Unsupported) -> (start: Int, end: Int) {
            while true {
                guard index < buffer.count else { throw Unsupported() }
                let byte = buffer[index]
                if byte == UInt8(ascii: "\"") { break }
                if byte == UInt8(ascii: "\\") || byte < 0x20 { throw Unsupported() }
                index += 1
            }
            let end = index
            guard Self.isValidUTF8(UnsafeBufferPointer(rebasing: buffer[start..<end])) else { throw Unsupported() }
            index += 1
            return (start, end)
        }

        /// Whether `bytes` are well-formed UTF-8: then decoding them (as the parser does) gives
        /// them back unchanged. The standard library's check, without a copy where `UTF8Span` is
        /// available (always on Linux; macOS 26).
        static func isValidUTF8(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
            if #available(macOS 26, *) {
                return (try? UTF8Span(validating: bytes.span)) != nil
            }
            return String(validating: bytes, as: UTF8.self) != nil
        }

        /// Sorts ``members`` from `base` on by key bytes, equal keys in input order: an insertion
        /// sort for the small objects records are made of, a library sort past 32 members (an
        /// insertion sort of a huge object in reverse order would take its size squared).
        mutating func sortMembers(from base: Int) {
            let top = members.count
            guard top - base > 1 else { return }
            if top - base > 32 {
                let buffer = self.buffer
                members[base..<top].sort { a, b in
                    let keyA = UnsafeBufferPointer(rebasing: buffer[a.keyStart..<a.keyEnd])
                    let keyB = UnsafeBufferPointer(rebasing: buffer[b.keyStart..<b.keyEnd])
                    if JSONWriter.bytesPrecede(keyA, keyB) { return true }
                    if JSONWriter.bytesPrecede(keyB, keyA) { return false }
                    return a.valueStart < b.valueStart  // equal keys: input order
                }
                return
            }
            for i in (base + 1)..<top {
                let moving = members[i]
                var j = i
                while j > base, keyPrecedes(moving, members[j - 1]) {
                    members[j] = members[j - 1]
                    j -= 1
                }
                members[j] = moving
            }
        }

        @inline(__always) func keyBytes(_ member: Member) -> UnsafeBufferPointer<UInt8> {
            UnsafeBufferPointer(rebasing: buffer[member.keyStart..<member.keyEnd])
        }

        @inline(__always) func keyPrecedes(_ a: Member, _ b: Member) -> Bool {
            JSONWriter.bytesPrecede(keyBytes(a), keyBytes(b))
        }

        @inline(__always) func keyPrecedes(_ a: [UInt8], _ b: Member) -> Bool {
            a.withUnsafeBufferPointer { JSONWriter.bytesPrecede($0, keyBytes(b)) }
        }

        @inline(__always) func keyEquals(_ a: Member, _ b: Member) -> Bool {
            a.keyEnd - a.keyStart == b.keyEnd - b.keyStart && keyBytes(a).elementsEqual(keyBytes(b))
        }

        @inline(__always) func keyEquals(_ a: Member, _ key: [UInt8]) -> Bool {
            a.keyEnd - a.keyStart == key.count && key.withUnsafeBufferPointer { keyBytes(a).elementsEqual($0) }
        }


        // MARK: Values

        /// Writes the canonical form of a value checked before (by ``skipValue(depth:)``).
        mutating func writeValue(_ range: Range<Int>, into writer: inout JSONWriter) throws(Unsupported) {
            switch buffer[range.lowerBound] {
            case UInt8(ascii: "{"):
                _ = try writeObject(at: range.lowerBound, into: &writer)
            case UInt8(ascii: "["):
                writer.appendByte(UInt8(ascii: "["))
                index = range.lowerBound + 1
                reader.skipWhitespace()
                var first = true
                while index < range.upperBound, buffer[index] != UInt8(ascii: "]") {
                    if !first { writer.appendByte(UInt8(ascii: ",")) }
                    first = false
                    let end: Int
                    if buffer[index] == UInt8(ascii: "{") {
                        // An object (a line item, say): collected and written without a pass to find its end first.
                        end = try writeObject(at: index, into: &writer)
                    } else {
                        let start = index
                        try skipValue(depth: 0)
                        end = index
                        try writeValue(start..<end, into: &writer)
                    }
                    index = end
                    reader.skipWhitespace()
                    if index < range.upperBound, buffer[index] == UInt8(ascii: ",") {
                        index += 1
                        reader.skipWhitespace()
                    }
                }
                writer.appendByte(UInt8(ascii: "]"))
            case UInt8(ascii: "\""):
                if isPlain(range) || isPlainUTF8(range) {
                    writer.appendVerbatim(UnsafeBufferPointer(rebasing: buffer[range]))
                } else {
                    // Escapes or invalid UTF-8: decoded as the parser does (invalid UTF-8 repaired), written as the writer does.
                    writer.writeString(try decodedString(range))
                }
            default:
                // Numbers keep their text; literals are themselves.
                writer.appendVerbatim(UnsafeBufferPointer(rebasing: buffer[range]))
            }
        }

        /// Writes the canonical form of the object at `start`, checked before (by
        /// ``skipValue(depth:)``, so the depth does not matter here); answers where it ends.
        mutating func writeObject(at start: Int, into writer: inout JSONWriter) throws(Unsupported) -> Int {
            let base = members.count
            defer { members.removeSubrange(base...) }
            index = start
            try collectMembers(depth: 0)
            let end = index
            try writeMembers(from: base, into: &writer)
            return end
        }

        /// Whether a string literal's bytes are already canonical and ASCII: no escape, no byte
        /// past ASCII (the writer escapes only `"`, `\` and control bytes, which a checked literal
        /// holds only escaped). Most strings in records are; ``isPlainUTF8(_:)`` answers for the others.
        func isPlain(_ range: Range<Int>) -> Bool {
            var i = range.lowerBound + 1
            let end = range.upperBound - 1
            while i < end {
                let byte = buffer[i]
                if byte >= 0x80 || byte == UInt8(ascii: "\\") { return false }
                i += 1
            }
            return true
        }

        /// Whether a checked string literal's bytes are already canonical: no escape, and valid
        /// UTF-8. Asked only of literals ``isPlain(_:)`` refused, out of its loop.
        @inline(never)
        func isPlainUTF8(_ range: Range<Int>) -> Bool {
            let content = (range.lowerBound + 1)..<(range.upperBound - 1)
            for i in content where buffer[i] == UInt8(ascii: "\\") { return false }
            return Self.isValidUTF8(UnsafeBufferPointer(rebasing: buffer[content]))
        }

        /// A checked string literal decoded as the parser decodes it.
        mutating func stringValue(_ range: Range<Int>) throws(Unsupported) -> String {
            if isPlain(range) || isPlainUTF8(range) {
                return String(decoding: UnsafeBufferPointer(rebasing: buffer[(range.lowerBound + 1)..<(range.upperBound - 1)]), as: UTF8.self)
            }
            return try decodedString(range)
        }

        /// A checked string literal decoded by the parser (escapes, invalid UTF-8 repaired).
        mutating func decodedString(_ range: Range<Int>) throws(Unsupported) -> String {
            let saved = index
            defer { index = saved }
            index = range.lowerBound
            return try attempt { (reader: inout JSONParser.Reader) throws(JSONParseError) in try reader.parseString() }
        }

        func text(_ range: Range<Int>) -> String {
            String(decoding: UnsafeBufferPointer(rebasing: buffer[range]), as: UTF8.self)
        }

        /// Moves past one value, checking it as strictly as ``JSONParser`` does — and more: an
        /// object key with an escape or invalid UTF-8 is refused here, so that writing never
        /// meets one.
        mutating func skipValue(depth: Int) throws(Unsupported) {
            guard index < buffer.count else { throw Unsupported() }
            switch buffer[index] {
            case UInt8(ascii: "{"):
                try collectMembers(depth: depth + 1, keeping: false)
            case UInt8(ascii: "["):
                guard depth + 1 <= depthLimit else { throw Unsupported() }
                index += 1
                reader.skipWhitespace()
                if index < buffer.count, buffer[index] == UInt8(ascii: "]") {
                    index += 1
                    return
                }
                while true {
                    reader.skipWhitespace()
                    try skipValue(depth: depth + 1)
                    if try moreMembers(closing: UInt8(ascii: "]")) { continue }
                    return
                }
            case UInt8(ascii: "\""):
                try skipString()
            case UInt8(ascii: "t"): try literal("true")
            case UInt8(ascii: "f"): try literal("false")
            case UInt8(ascii: "n"): try literal("null")
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): try skipNumber()
            default: throw Unsupported()
            }
        }

        /// Moves past a string literal, checking it exactly as ``JSONParser`` decodes it — control
        /// bytes, escapes, `\u` hex digits, a high surrogate escape followed by `\u` that is not a
        /// low one — without decoding it (it may be scanned once per level above it).
        mutating func skipString() throws(Unsupported) {
            index += 1  // the opening quote
            while true {
                guard index < buffer.count else { throw Unsupported() }
                let byte = buffer[index]
                index += 1
                if byte == UInt8(ascii: "\"") { return }
                if byte < 0x20 { throw Unsupported() }
                guard byte == UInt8(ascii: "\\") else { continue }
                guard index < buffer.count else { throw Unsupported() }
                let escape = buffer[index]
                index += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    continue
                case UInt8(ascii: "u"):
                    let scalar = try hex4()
                    // A high surrogate followed by another `\u` escape needs a low one there (the parser
                    // throws otherwise); without a following `\u` it becomes U+FFFD.
                    if (0xD800...0xDBFF).contains(scalar), index + 1 < buffer.count, buffer[index] == UInt8(ascii: "\\"), buffer[index + 1] == UInt8(ascii: "u") {
                        index += 2
                        guard (0xDC00...0xDFFF).contains(try hex4()) else { throw Unsupported() }
                    }
                default:
                    throw Unsupported()
                }
            }
        }

        mutating func hex4() throws(Unsupported) -> UInt32 {
            try attempt { (reader: inout JSONParser.Reader) throws(JSONParseError) in try reader.parseHex4() }
        }

        mutating func literal(_ text: StaticString) throws(Unsupported) {
            try attempt { (reader: inout JSONParser.Reader) throws(JSONParseError) in try reader.expectLiteral(text) }
        }

        /// The number grammar of RFC 8259, as ``JSONParser`` checks it.
        mutating func skipNumber() throws(Unsupported) {
            if buffer[index] == UInt8(ascii: "-") { index += 1 }
            guard index < buffer.count else { throw Unsupported() }
            if buffer[index] == UInt8(ascii: "0") {
                index += 1
            } else if isDigit(index) {
                while isDigit(index) { index += 1 }
            } else {
                throw Unsupported()
            }
            if index < buffer.count, buffer[index] == UInt8(ascii: ".") {
                index += 1
                guard isDigit(index) else { throw Unsupported() }
                while isDigit(index) { index += 1 }
            }
            if index < buffer.count, buffer[index] == UInt8(ascii: "e") || buffer[index] == UInt8(ascii: "E") {
                index += 1
                if index < buffer.count, buffer[index] == UInt8(ascii: "+") || buffer[index] == UInt8(ascii: "-") { index += 1 }
                guard isDigit(index) else { throw Unsupported() }
                while isDigit(index) { index += 1 }
            }
        }

        @inline(__always) func isDigit(_ at: Int) -> Bool {
            at < buffer.count && buffer[at] >= 0x30 && buffer[at] <= 0x39
        }
    }
}
