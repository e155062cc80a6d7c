/// A string compared and hashed by its UTF-8 bytes — as the databases compare record ids, and as
/// JSON parsers elsewhere (JavaScript's, PostgreSQL's `jsonb`) tell object keys apart. A Swift
/// `String` compares by Unicode canonical equivalence: `"é"` and `"e\u{301}"`, or `"K"` and the
/// Kelvin sign `"\u{212A}"`, are one `String` but two ids and two keys. Key any dictionary or set
/// of record ids or object keys by it.
public struct ExactString: Hashable, Sendable {
    public let text: String

    public init(_ text: String) { self.text = text }

    public static func == (a: ExactString, b: ExactString) -> Bool { same(a.text, b.text) }

    public func hash(into hasher: inout Hasher) {
        var text = text
        text.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
    }

    /// Whether `a` and `b` are the same UTF-8 bytes. The lengths go first (most keys differ in
    /// length from `id` and `_nango_metadata`, which the writer looks for in every member), then
    /// `==`: strings that are not canonically equivalent are never the same bytes, and it rejects
    /// unequal keys fastest (two small ASCII strings compare as two machine words); only equal ones
    /// are compared byte by byte — comparing the bytes of every pair took ~50% longer in a search.
    @inlinable public static func same(_ a: String, _ b: String) -> Bool {
        guard a.utf8.count == b.utf8.count, a == b else { return false }
        let contiguous = a.utf8.withContiguousStorageIfAvailable { x in b.utf8.withContiguousStorageIfAvailable { y in x.elementsEqual(y) } }
        if let equal = contiguous ?? nil { return equal }
        return a.utf8.elementsEqual(b.utf8)
    }
}
