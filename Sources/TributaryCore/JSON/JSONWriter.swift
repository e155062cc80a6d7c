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
        bytes.append(UInt8(ascii: "{"))
        var first = true
        if canonical && !Self.isSorted(object.storage) {
            let sorted = object.storage.sorted { Self.keyPrecedes($0.key, $1.key) }
            for member in sorted {
                if !first { bytes.append(UInt8(ascii: ",")) }
                first = false
                writeString(member.key)
                bytes.append(UInt8(ascii: ":"))
                write(member.value)
            }
        } else {
            for member in object.storage {
                if !first { bytes.append(UInt8(ascii: ",")) }
                first = false
                writeString(member.key)
                bytes.append(UInt8(ascii: ":"))
                write(member.value)
            }
        }
        bytes.append(UInt8(ascii: "}"))
    }

    static func isSorted(_ members: [(key: String, value: JSONValue)]) -> Bool {
        var i = 1
        while i < members.count {
            if !keyPrecedes(members[i - 1].key, members[i].key) { return false }
            i += 1
        }
        return true
    }

    /// Byte-wise UTF-8 order of two keys (the canonical member order).
    @inline(__always) static func keyPrecedes(_ a: String, _ b: String) -> Bool {
        var a = a
        var b = b
        return a.withUTF8 { pa in
            b.withUTF8 { pb in
                let count = min(pa.count, pb.count)
                var i = 0
                while i < count {
                    if pa[i] != pb[i] { return pa[i] < pb[i] }
                    i += 1
                }
                return pa.count < pb.count
            }
        }
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
