/// Serialises ``JSONValue``s to compact UTF-8 JSON.
///
/// The *canonical* form sorts object members by the UTF-8 bytes of their keys at every level and
/// has no insignificant whitespace. Two records with the same content have the same canonical
/// bytes, whatever order their provider sent the keys in: it is what Tributary hashes and stores.
public struct JSONWriter {
    /// The bytes written so far.
    public private(set) var bytes: [UInt8]
    let canonical: Bool

    public init(canonical: Bool = true, reservingCapacity capacity: Int = 256) {
        self.canonical = canonical
        bytes = []
        bytes.reserveCapacity(capacity)
    }

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
        case .null: bytes.append(contentsOf: [0x6E, 0x75, 0x6C, 0x6C])
        case .bool(true): bytes.append(contentsOf: [0x74, 0x72, 0x75, 0x65])
        case .bool(false): bytes.append(contentsOf: [0x66, 0x61, 0x6C, 0x73, 0x65])
        case .number(let n): bytes.append(contentsOf: n.text.utf8)
        case .string(let s): writeString(s)
        case .array(let elements):
            bytes.append(UInt8(ascii: "["))
            var first = true
            for element in elements {
                if !first { bytes.append(UInt8(ascii: ",")) }
                first = false
                write(element)
            }
            bytes.append(UInt8(ascii: "]"))
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

    /// Writes members, in key order when canonical. The order is a sort of member indices in a
    /// stack buffer (an insertion sort for small objects): sorting the members themselves would
    /// copy (retain and release) every key and value.
    private mutating func writeMembers(_ members: [(key: String, value: JSONValue)], skipping: String?, id: String?) {
        bytes.append(UInt8(ascii: "{"))
        let count = members.count
        withUnsafeTemporaryAllocation(of: Int.self, capacity: max(count, 1)) { order in
            var kept = 0
            for index in 0..<count {
                if let skipping, members[index].key == skipping { continue }
                order[kept] = index
                kept += 1
            }
            if canonical && kept > 32 {
                // A large object (keys are unique in a JSONObject): a library sort, not the insertion
                // sort's size squared.
                var sorted = UnsafeMutableBufferPointer(rebasing: order[0..<kept])
                sorted.sort { Self.keyPrecedes(members[$0].key, members[$1].key) }
            } else if canonical && kept > 1 {
                for i in 1..<kept {
                    let moving = order[i]
                    var j = i
                    while j > 0 && Self.keyPrecedes(members[moving].key, members[order[j - 1]].key) {
                        order[j] = order[j - 1]
                        j -= 1
                    }
                    order[j] = moving
                }
            }
            for position in 0..<kept {
                if position > 0 { bytes.append(UInt8(ascii: ",")) }
                let member = members[order[position]]
                writeString(member.key)
                bytes.append(UInt8(ascii: ":"))
                if let id, member.key == "id" {
                    writeString(id)
                } else {
                    write(member.value)
                }
            }
        }
        bytes.append(UInt8(ascii: "}"))
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

    /// Appends one byte as it is (``DirectRecordReader`` copying canonical input).
    @inline(__always) mutating func appendByte(_ byte: UInt8) {
        bytes.append(byte)
    }

    /// Appends bytes as they are (``DirectRecordReader`` copying canonical input).
    @inline(__always) mutating func appendVerbatim(_ raw: UnsafeBufferPointer<UInt8>) {
        bytes.append(contentsOf: raw)
    }

    @inline(__always) mutating func appendVerbatim(_ raw: StaticString) {
        bytes.append(contentsOf: UnsafeBufferPointer(start: raw.utf8Start, count: raw.utf8CodeUnitCount))
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    public mutating func writeString(_ string: String) {
        bytes.append(UInt8(ascii: "\""))
        var string = string
        string.withUTF8 { utf8 in
            var runStart = 0
            var i = 0
            while i < utf8.count {
                let byte = utf8[i]
                if byte >= 0x20 && byte != 0x22 && byte != 0x5C {
                    i += 1
                    continue
                }
                if runStart < i { bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<i])) }
                switch byte {
                case 0x22: bytes.append(contentsOf: [0x5C, 0x22])
                case 0x5C: bytes.append(contentsOf: [0x5C, 0x5C])
                case 0x0A: bytes.append(contentsOf: [0x5C, 0x6E])
                case 0x0D: bytes.append(contentsOf: [0x5C, 0x72])
                case 0x09: bytes.append(contentsOf: [0x5C, 0x74])
                case 0x08: bytes.append(contentsOf: [0x5C, 0x62])
                case 0x0C: bytes.append(contentsOf: [0x5C, 0x66])
                default:
                    bytes.append(contentsOf: [0x5C, 0x75, 0x30, 0x30])
                    bytes.append(Self.hexDigits[Int(byte >> 4)])
                    bytes.append(Self.hexDigits[Int(byte & 0xF)])
                }
                i += 1
                runStart = i
            }
            if runStart < utf8.count { bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<utf8.count])) }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}
