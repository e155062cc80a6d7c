/// A JSON value as Tributary stores and moves it.
///
/// Numbers keep their exact textual form (``JSONNumber``), so 64-bit ids and decimal amounts
/// survive a round trip untouched. Objects keep their members in the order they were built or
/// parsed; the canonical form used for hashing and storage sorts them (see ``JSONWriter``).
public enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case number(JSONNumber)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    /// The string, if this is a string.
    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// The number as `Int64`, if this is an integral number that fits.
    public var int64Value: Int64? {
        if case .number(let n) = self { return n.int64Value }
        return nil
    }

    /// The number as `Double`, if this is a number.
    public var doubleValue: Double? {
        if case .number(let n) = self { return n.doubleValue }
        return nil
    }

    /// The boolean, if this is a boolean.
    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    /// The object, if this is an object.
    public var objectValue: JSONObject? {
        if case .object(let o) = self { return o }
        return nil
    }

    /// The elements, if this is an array.
    public var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// `true` for `null`.
    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    /// Member lookup for objects; `nil` for other values or a missing key.
    public subscript(key: String) -> JSONValue? {
        objectValue?[key]
    }

    /// Element lookup for arrays; `nil` for other values or an index out of range.
    public subscript(index: Int) -> JSONValue? {
        guard case .array(let elements) = self, elements.indices.contains(index) else { return nil }
        return elements[index]
    }
}

/// A JSON number kept as its validated literal text (e.g. `"12"`, `"-0.5"`, `"1e9"`).
public struct JSONNumber: Sendable, Hashable, CustomStringConvertible {
    /// The literal as it appears in JSON.
    public let text: String

    /// Wraps a literal that is already known to be valid JSON number syntax.
    init(validatedText: String) { self.text = validatedText }

    public init(_ value: Int) { self.text = String(value) }
    public init(_ value: Int64) { self.text = String(value) }
    /// Non-finite doubles have no JSON form and become `0`.
    public init(_ value: Double) {
        if value.isFinite {
            if value == value.rounded(.towardZero), abs(value) < 1e15 {
                self.text = String(Int64(value))
            } else {
                self.text = "\(value)"
            }
        } else {
            self.text = "0"
        }
    }

    public var int64Value: Int64? { Int64(text) }
    public var doubleValue: Double? { Double(text) }
    public var description: String { text }
}

/// A JSON object: members in insertion order, keys unique.
///
/// Keys are told apart by their UTF-8 bytes (``ExactString``), as JavaScript and PostgreSQL's
/// `jsonb` tell them apart: `"é"` and `"e\u{301}"` are two keys, though one `String`. A provider
/// record with both keeps both, so no member is lost and the record is what Nango would store.
/// Lookup is linear, which is the fastest choice for the small objects records are made of.
public struct JSONObject: Sendable, Hashable, Sequence {
    public typealias Element = (key: String, value: JSONValue)

    @usableFromInline var storage: [(key: String, value: JSONValue)]

    public init() { storage = [] }

    /// Builds an object; a later duplicate key replaces the earlier value.
    public init<S: Sequence>(_ members: S) where S.Element == (String, JSONValue) {
        var built = ObjectMembers()  // an index past a few members: a hostile sequence costs its size
        for (k, v) in members { built.set(k, v) }
        storage = built.members
    }

    init(uniqueMembers: [(key: String, value: JSONValue)]) { storage = uniqueMembers }

    public var count: Int { storage.count }
    public var isEmpty: Bool { storage.isEmpty }
    public var keys: [String] { storage.map(\.key) }

    public subscript(key: String) -> JSONValue? {
        get {
            for member in storage where ExactString.same(member.key, key) { return member.value }
            return nil
        }
        set {
            if let index = storage.firstIndex(where: { ExactString.same($0.key, key) }) {
                if let newValue { storage[index].value = newValue } else { storage.remove(at: index) }
            } else if let newValue {
                storage.append((key, newValue))
            }
        }
    }

    @discardableResult
    public mutating func removeValue(forKey key: String) -> JSONValue? {
        guard let index = storage.firstIndex(where: { ExactString.same($0.key, key) }) else { return nil }
        return storage.remove(at: index).value
    }

    public func makeIterator() -> IndexingIterator<[(key: String, value: JSONValue)]> {
        storage.makeIterator()
    }

    /// Objects are equal when they have the same members, whatever their order.
    public static func == (lhs: JSONObject, rhs: JSONObject) -> Bool {
        guard lhs.storage.count == rhs.storage.count else { return false }
        if lhs.storage.count <= 16 {
            for (k, v) in lhs.storage where rhs[k] != v { return false }
            return true
        }
        // A large object: through an index, not a search per member (its size squared).
        var values = [ExactString: JSONValue](minimumCapacity: rhs.storage.count)
        for (k, v) in rhs.storage { values[ExactString(k)] = v }
        for (k, v) in lhs.storage where values[ExactString(k)] != v { return false }
        return true
    }

    public func hash(into hasher: inout Hasher) {
        // Order-independent: combine member hashes commutatively.
        var combined = 0
        for (k, v) in storage {
            var h = Hasher()
            h.combine(k)
            h.combine(v)
            combined ^= h.finalize()
        }
        hasher.combine(storage.count)
        hasher.combine(combined)
    }
}

extension JSONObject: ExpressibleByDictionaryLiteral {
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self.init(elements)
    }
}

extension JSONValue: ExpressibleByNilLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByStringLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(nilLiteral: ()) { self = .null }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int) { self = .number(JSONNumber(value)) }
    public init(floatLiteral value: Double) { self = .number(JSONNumber(value)) }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) { self = .object(JSONObject(elements)) }
}

extension JSONValue: CustomStringConvertible {
    /// Compact JSON text (members in their stored order).
    public var description: String { JSONWriter.string(self, canonical: false) }
}

extension JSONObject: CustomStringConvertible {
    public var description: String { JSONWriter.string(.object(self), canonical: false) }
}
