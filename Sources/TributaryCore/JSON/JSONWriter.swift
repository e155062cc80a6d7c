/// Serialises ``JSONValue``s to compact UTF-8 JSON.
///
/// The *canonical* form sorts object members by the UTF-8 bytes of their keys at every level and
/// has no insignificant whitespace. Two records with the same content have the same canonical
/// bytes, whatever order their provider sent the keys in: it is what Tributary hashes and stores.
///
/// The writer owns a growable byte buffer written through a pointer (no uniqueness or capacity
/// check of an `Array` per byte: records are written a few bytes at a time) and is therefore not
/// copyable. One writer can write many values in turn (``removeAll()`` keeps its capacity).
public struct JSONWriter: ~Copyable {
    private var base: UnsafeMutablePointer<UInt8>
    private var count: Int
    private var capacity: Int
    let canonical: Bool

    public init(canonical: Bool = true, reservingCapacity capacity: Int = 256) {
        self.canonical = canonical
        self.capacity = max(capacity, 16)
        self.count = 0
        self.base = .allocate(capacity: self.capacity)
    }

    deinit { base.deallocate() }

    /// The bytes written so far (a copy).
    public var bytes: [UInt8] { Array(UnsafeBufferPointer(start: base, count: count)) }

    /// ``ContentHash`` of the bytes written so far, without copying them.
    public var hash: UInt64 { ContentHash.hash(UnsafeRawBufferPointer(start: base, count: count)) }

    /// Forgets what was written, keeping the buffer for the next value.
    public mutating func removeAll() { count = 0 }

    /// Serialises one value.
    public static func bytes(_ value: JSONValue, canonical: Bool = true) -> [UInt8] {
        var writer = JSONWriter(canonical: canonical)
        writer.write(value)
        return writer.bytes
    }

    /// Serialises one value to a string.
    public static func string(_ value: JSONValue, canonical: Bool = true) -> String {
        String(decoding: bytes(value, canonical: canonical), as: UTF8.self)
    }

    /// Indented JSON for people to read (the dashboard): members in key order, two spaces per level,
    /// numbers and strings written exactly as ``write(_:)-(JSONValue)`` writes them.
    public static func pretty(_ value: JSONValue) -> String {
        var out = ""
        appendPretty(value, indent: "", to: &out)
        return out
    }

    private static func appendPretty(_ value: JSONValue, indent: String, to out: inout String) {
        let inner = indent + "  "
        switch value {
        case .array(let elements) where !elements.isEmpty:
            out += "[\n"
            for (index, element) in elements.enumerated() {
                out += inner
                appendPretty(element, indent: inner, to: &out)
                out += index == elements.count - 1 ? "\n" : ",\n"
            }
            out += indent + "]"
        case .object(let object) where !object.isEmpty:
            out += "{\n"
            let keys = object.keys.sorted()
            for (index, key) in keys.enumerated() {
                out += inner + string(.string(key)) + ": "
                appendPretty(object[key] ?? .null, indent: inner, to: &out)
                out += index == keys.count - 1 ? "\n" : ",\n"
            }
            out += indent + "}"
        default:
            out += string(value, canonical: false)
        }
    }

    public mutating func write(_ value: JSONValue) {
        switch value {
        case .null: appendVerbatim("null")
        case .bool(true): appendVerbatim("true")
        case .bool(false): appendVerbatim("false")
        case .number(let n): appendUTF8(n.text)
        case .string(let s): writeString(s)
        case .array(let elements):
            appendByte(UInt8(ascii: "["))
            var first = true
            for element in elements {
                if !first { appendByte(UInt8(ascii: ",")) }
                first = false
                write(element)
            }
            appendByte(UInt8(ascii: "]"))
        case .object(let object):
            write(object)
        }
    }

    public mutating func write(_ object: JSONObject) {
        writeMembers(object.storage, skipping: nil, id: nil)
    }

    /// Writes a record object: like ``write(_:)-(JSONObject)`` but without the member `skipping`
    /// and with the member `id` (if any) written as the string `id` — without copying the object.
    mutating func writeRecord(_ object: JSONObject, id: String, skipping: String) {
        writeMembers(object.storage, skipping: skipping, id: id)
    }

    /// Writes members, in key order when canonical. The order is a sort of the members' indices in
    /// a stack buffer (an insertion sort for small objects), each beside its key's first eight bytes
    /// as one integer (``sortPrefix(_:)``): most keys differ there, so most comparisons are one
    /// integer comparison, and only keys sharing those bytes compare their whole bytes. Sorting the
    /// members themselves would copy (retain and release) every key and value.
    private mutating func writeMembers(_ storage: [(key: String, value: JSONValue)], skipping: String?, id: String?) {
        appendByte(UInt8(ascii: "{"))
        storage.withUnsafeBufferPointer { members in
            let count = members.count
            withUnsafeTemporaryAllocation(of: (prefix: UInt64, index: Int).self, capacity: max(count, 1)) { order in
                var kept = 0
                for index in 0..<count {
                    if let skipping, ExactString.same(members[index].key, skipping) { continue }
                    order[kept] = (canonical ? Self.sortPrefix(members[index].key) : 0, index)
                    kept += 1
                }
                // Whether member `a` goes before member `b`: their keys' byte order.
                func precedes(_ a: (prefix: UInt64, index: Int), _ b: (prefix: UInt64, index: Int)) -> Bool {
                    if a.prefix != b.prefix { return a.prefix < b.prefix }
                    return Self.keyPrecedes(members[a.index].key, members[b.index].key)
                }
                if canonical && kept > 32 {
                    // A large object (keys are unique in a JSONObject): a library sort, not the insertion
                    // sort's size squared.
                    var sorted = UnsafeMutableBufferPointer(rebasing: order[0..<kept])
                    sorted.sort(by: precedes)
                } else if canonical && kept > 1 {
                    for i in 1..<kept {
                        let moving = order[i]
                        var j = i
                        while j > 0 && precedes(moving, order[j - 1]) {
                            order[j] = order[j - 1]
                            j -= 1
                        }
                        order[j] = moving
                    }
                }
                for position in 0..<kept {
                    if position > 0 { appendByte(UInt8(ascii: ",")) }
                    let index = order[position].index
                    writeString(members[index].key)
                    appendByte(UInt8(ascii: ":"))
                    if let id, ExactString.same(members[index].key, "id") {
                        writeString(id)
                    } else {
                        write(members[index].value)
                    }
                }
            }
        }
        appendByte(UInt8(ascii: "}"))
    }

    /// A key's first eight UTF-8 bytes as one big-endian integer, zero-padded: two keys whose
    /// prefixes differ are in the order of their prefixes (byte order); equal prefixes say nothing
    /// (`"ab"` and `"ab\u{0}"`, or two keys sharing eight bytes), and the whole keys are compared.
    @inline(__always) static func sortPrefix(_ key: String) -> UInt64 {
        @inline(__always) func prefix(_ bytes: UnsafeBufferPointer<UInt8>) -> UInt64 {
            var prefix: UInt64 = 0
            let n = min(bytes.count, 8)
            for i in 0..<n { prefix |= UInt64(bytes[i]) << UInt64(56 - 8 * i) }
            return prefix
        }
        if let fast = key.utf8.withContiguousStorageIfAvailable(prefix) { return fast }
        var key = key
        return key.withUTF8(prefix)
    }

    /// Byte-wise UTF-8 order of two keys (the canonical member order).
    @inline(__always) static func keyPrecedes(_ a: String, _ b: String) -> Bool {
        let fast = a.utf8.withContiguousStorageIfAvailable { pa in
            b.utf8.withContiguousStorageIfAvailable { pb in bytesPrecede(pa, pb) }
        }
        if let result = fast ?? nil { return result }
        return a.utf8.lexicographicallyPrecedes(b.utf8)
    }

    /// Byte-wise order of two byte strings (a proper prefix first): the canonical member order.
    @inline(__always) static func bytesPrecede(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Bool {
        let count = min(a.count, b.count)
        var i = 0
        while i < count {
            if a[i] != b[i] { return a[i] < b[i] }
            i += 1
        }
        return a.count < b.count
    }

    // MARK: The buffer

    /// Makes room for `extra` more bytes.
    @inline(__always) private mutating func reserve(_ extra: Int) {
        if capacity - count < extra { grow(extra) }
    }

    @inline(never) private mutating func grow(_ extra: Int) {
        let needed = count + extra
        var newCapacity = capacity
        while newCapacity < needed { newCapacity = newCapacity <= Int.max / 2 ? newCapacity * 2 : needed }
        let grown = UnsafeMutablePointer<UInt8>.allocate(capacity: newCapacity)
        grown.initialize(from: base, count: count)
        base.deallocate()
        base = grown
        capacity = newCapacity
    }

    /// Appends one byte as it is.
    @inline(__always) mutating func appendByte(_ byte: UInt8) {
        reserve(1)
        base[count] = byte
        count += 1
    }

    /// Appends bytes as they are (``DirectRecordReader`` copying canonical input).
    @inline(__always) mutating func appendVerbatim(_ raw: UnsafeBufferPointer<UInt8>) {
        guard let source = raw.baseAddress, raw.count > 0 else { return }
        reserve(raw.count)
        if raw.count <= 16 {
            // Short runs (numbers, punctuation) are copied here rather than by a `memmove` call.
            for i in 0..<raw.count { base[count + i] = source[i] }
        } else {
            (base + count).update(from: source, count: raw.count)
        }
        count += raw.count
    }

    @inline(__always) mutating func appendVerbatim(_ raw: StaticString) {
        appendVerbatim(UnsafeBufferPointer(start: raw.utf8Start, count: raw.utf8CodeUnitCount))
    }

    /// Appends a string's UTF-8 bytes as they are (a number's validated text).
    @inline(__always) private mutating func appendUTF8(_ text: String) {
        if text.utf8.withContiguousStorageIfAvailable({ appendVerbatim($0) }) == nil {
            var text = text
            text.withUTF8 { appendVerbatim($0) }
        }
    }

    private static let hexDigits: StaticString = "0123456789abcdef"

    /// Whether any of eight bytes is a control character, `"` or `\\` (the bytes JSON escapes).
    /// Each test is the classic "has a byte less than n" word trick: exact about whether such a
    /// byte exists, which is all this asks.
    @inline(__always) static func anyNeedsEscape(_ word: UInt64) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let high: UInt64 = 0x8080_8080_8080_8080
        let control = (word &- ones &* 0x20) & ~word & high
        let quotes = word ^ (ones &* 0x22)
        let backslashes = word ^ (ones &* 0x5C)
        let quote = (quotes &- ones) & ~quotes & high
        let backslash = (backslashes &- ones) & ~backslashes & high
        return (control | quote | backslash) != 0
    }

    /// Writes a JSON string literal: `"`, `\`, and control characters escaped, the rest as it is.
    public mutating func writeString(_ string: String) {
        if string.utf8.withContiguousStorageIfAvailable({ writeEscaped($0) }) == nil {
            var string = string
            string.withUTF8 { writeEscaped($0) }
        }
    }

    /// Writes `"`, the bytes with those JSON needs escaped, and `"`. Safe bytes are copied as they
    /// are scanned, eight at a time while a whole word needs no escape (most strings in records are
    /// short, so this avoids a `memmove` call per string as well as a second pass). A string of
    /// fewer than eight bytes is read as one word (``shortWord(_:)``) and, needing no escape, stored
    /// as one; a longer one's last bytes short of a word are checked and stored as its last eight
    /// bytes, overlapping bytes stored already, when nothing before them was escaped.
    private mutating func writeEscaped(_ utf8: UnsafeBufferPointer<UInt8>) {
        let n = utf8.count
        // Room for the quotes and every byte as it is, and for a whole word stored for a short
        // string; a word is stored only while eight bytes are left to copy, or at a position
        // whose eight bytes are inside that room, so it never needs more than that.
        reserve(max(n, 8) + 2)
        base[count] = UInt8(ascii: "\"")
        count += 1
        if let source = utf8.baseAddress {
            let raw = UnsafeRawPointer(source)
            if n < 8 {
                let word = Self.shortWord(utf8)
                if !Self.anyNeedsEscape(word) {
                    assert(capacity - count >= 8, "a short string's word is stored inside the room reserved")
                    UnsafeMutableRawPointer(base + count).storeBytes(of: word.littleEndian, as: UInt64.self)
                    count += n
                    base[count] = UInt8(ascii: "\"")
                    count += 1
                    return
                }
            }
            // Where the string's first byte went: while nothing is escaped, byte `i` goes to `start + i`.
            let start = count
            var i = 0
            while i < n {
                if n - i >= 8 {
                    let word = raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                    if !Self.anyNeedsEscape(word) {
                        UnsafeMutableRawPointer(base + count).storeBytes(of: word, as: UInt64.self)
                        count += 8
                        i += 8
                        continue
                    }
                } else if i >= 8 && count - start == i {
                    // The last bytes, short of a word, with nothing escaped before them: the string's
                    // last eight bytes, those before them safe and stored already as they are.
                    let word = raw.loadUnaligned(fromByteOffset: n - 8, as: UInt64.self)
                    if !Self.anyNeedsEscape(word) {
                        assert(start + n < capacity, "a string's last word is stored inside the room reserved")
                        UnsafeMutableRawPointer(base + start + n - 8).storeBytes(of: word, as: UInt64.self)
                        count = start + n
                        break
                    }
                }
                let byte = source[i]
                i += 1
                if byte >= 0x20 && byte != 0x22 && byte != 0x5C {
                    base[count] = byte
                    count += 1
                    continue
                }
                switch byte {
                case 0x22: appendVerbatim(#"\""#)
                case 0x5C: appendVerbatim(#"\\"#)
                case 0x0A: appendVerbatim(#"\n"#)
                case 0x0D: appendVerbatim(#"\r"#)
                case 0x09: appendVerbatim(#"\t"#)
                case 0x08: appendVerbatim(#"\b"#)
                case 0x0C: appendVerbatim(#"\f"#)
                default:
                    appendVerbatim(#"\u00"#)
                    let digits = Self.hexDigits.utf8Start
                    appendByte(digits[Int(byte >> 4)])
                    appendByte(digits[Int(byte & 0xF)])
                }
                // An escape used more than the byte's room: make room again for the rest and the quote.
                reserve(n - i + 1)
            }
        }
        base[count] = UInt8(ascii: "\"")
        count += 1
    }

    /// The bytes of a string shorter than a word as one little-endian word — byte `i` in bits
    /// `8i` — the rest of it spaces (bytes JSON does not escape), read without a byte past the
    /// string: one or two byte loads under four bytes, else two overlapping four-byte loads.
    @inline(__always) static func shortWord(_ bytes: UnsafeBufferPointer<UInt8>) -> UInt64 {
        let n = bytes.count
        guard n > 0, let source = bytes.baseAddress else { return 0x2020_2020_2020_2020 }
        var word: UInt64
        if n >= 4 {
            let raw = UnsafeRawPointer(source)
            let low = UInt64(UInt32(littleEndian: raw.loadUnaligned(as: UInt32.self)))
            let high = UInt64(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: n - 4, as: UInt32.self)))
            // The two overlap when n < 8: an overlapping byte is the same byte in both.
            word = low | high << UInt64(8 * (n - 4))
        } else {
            word = UInt64(source[0]) | UInt64(source[n / 2]) << UInt64(8 * (n / 2)) | UInt64(source[n - 1]) << UInt64(8 * (n - 1))
        }
        return word | (0x2020_2020_2020_2020 & ~0 << UInt64(8 * n))
    }
}
