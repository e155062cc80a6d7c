/// Writes JSON exactly as JavaScript's `JSON.stringify` writes the value `JSON.parse` reads from it,
/// so `JSON.stringify(JSON.parse(bytes))` gives back the same bytes.
///
/// Nango's SDK verifies the older `X-Nango-Signature` over `JSON.stringify` of the parsed body, not
/// over the bytes received: a body only verifies when re-stringifying it is the identity. Tributary
/// writes webhook bodies with this writer, whatever they carry (a checkpoint's keys and numbers come
/// from a sync function). What JavaScript changes, and this writer therefore does up front:
///
/// - Numbers are IEEE doubles written in ECMAScript's `Number::toString` form: `1.0` → `1`,
///   `1E5` → `100000`, `1e21` → `1e+21`, `0.0000001` → `1e-7`; an integer past 2^53 loses its low
///   digits as in JavaScript; a number too large for a double (`1e400`) is `null`, as JavaScript
///   writes `Infinity`.
/// - Object members whose key is an array index (`"0"` … `"4294967294"`, canonical form) come first,
///   in numeric order; the rest follow in UTF-8 byte order (the canonical order of ``JSONWriter``).
/// - Strings are escaped as ``JSONWriter`` escapes them, which is JavaScript's escaping.
public enum JavaScriptJSON {
    /// The bytes of `value` in JavaScript's form (see the type's description).
    public static func bytes(_ value: JSONValue) -> [UInt8] {
        var writer = JSONWriter(canonical: false)
        writer.write(normalized(value))
        return writer.bytes
    }

    /// `value` with numbers in JavaScript's text and object members in the order JavaScript keeps
    /// them — written by a non-canonical ``JSONWriter``, it is what ``bytes(_:)`` returns.
    public static func normalized(_ value: JSONValue) -> JSONValue {
        switch value {
        case .null, .bool, .string: return value
        case .number(let number):
            guard let text = numberText(number) else { return .null }
            return .number(JSONNumber(validatedText: text))
        case .array(let elements):
            return .array(elements.map(normalized))
        case .object(let object):
            let members = object.map { (key: $0.key, value: normalized($0.value), index: arrayIndex($0.key)) }
            let ordered = members.sorted { a, b in
                switch (a.index, b.index) {
                case (let x?, let y?): return x < y
                case (.some, .none): return true
                case (.none, .some): return false
                case (.none, .none): return JSONWriter.keyPrecedes(a.key, b.key)
                }
            }
            return .object(JSONObject(uniqueMembers: ordered.map { (key: $0.key, value: $0.value) }))
        }
    }

    /// The key as an array index (JavaScript puts such members first, in numeric order): the
    /// canonical decimal form of an integer 0 … 2^32 − 2.
    static func arrayIndex(_ key: String) -> UInt32? {
        let utf8 = key.utf8
        guard let first = utf8.first, utf8.count <= 10, first != UInt8(ascii: "0") || utf8.count == 1 else { return nil }
        var value: UInt64 = 0
        for byte in utf8 {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + UInt64(byte - UInt8(ascii: "0"))
        }
        guard value < UInt64(UInt32.max) else { return nil }
        return UInt32(value)
    }

    /// ECMAScript's `Number::toString` of the double nearest to `number`; `nil` when there is none
    /// (out of the double range — JavaScript writes `null` for the `Infinity` it reads).
    public static func numberText(_ number: JSONNumber) -> String? {
        if let integer = Int64(number.text), integer.magnitude < (1 << 53) { return String(integer) }
        guard let double = Double(number.text), double.isFinite else { return nil }
        return numberText(double)
    }

    /// ECMAScript's `Number::toString(x)` for a finite double.
    static func numberText(_ x: Double) -> String {
        if x == 0 { return "0" }
        let (digits, n) = shortestDigits(x.magnitude)
        let k = digits.count
        var text = x < 0 ? "-" : ""
        if k <= n && n <= 21 {
            text += digits + String(repeating: "0", count: n - k)
        } else if 0 < n && n <= 21 {
            text += digits.prefix(n) + "." + digits.dropFirst(n)
        } else if -6 < n && n <= 0 {
            text += "0." + String(repeating: "0", count: -n) + digits
        } else {
            let exponent = n - 1
            let mantissa = k == 1 ? digits : digits.prefix(1) + "." + digits.dropFirst()
            text += mantissa + "e" + (exponent < 0 ? "-" : "+") + String(exponent.magnitude)
        }
        return text
    }

    /// The shortest digits `s` (no leading or trailing zeros) and exponent `n` with
    /// `x = 0.s × 10^n` that read back as `x` — taken from Swift's own shortest round-trip
    /// description (`1.5e-07`, `123.25`, `1e+16`), which picks the same digits as JavaScript.
    static func shortestDigits(_ x: Double) -> (digits: String, exponent: Int) {
        let text = x.description
        let parts = text.split(separator: "e", maxSplits: 1)
        let mantissa = parts[0]
        let power = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
        var integerPart = Substring(mantissa)
        var fraction = Substring("")
        if let dot = mantissa.firstIndex(of: ".") {
            integerPart = mantissa[..<dot]
            fraction = mantissa[mantissa.index(after: dot)...]
        }
        var digits = String(integerPart) + fraction
        var exponent = integerPart.count + power
        while digits.hasPrefix("0") && digits.count > 1 {
            digits.removeFirst()
            exponent -= 1
        }
        while digits.hasSuffix("0") && digits.count > 1 { digits.removeLast() }
        return (digits, exponent)
    }
}
