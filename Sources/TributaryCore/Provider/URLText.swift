import Foundation

/// Percent-encoding for the parts of a provider URL that outside data reaches (metadata values,
/// record ids, a provider's own links), per RFC 3986: whatever the input, the result is valid for
/// its place, so building a URL from it never traps, and a value can never add a `/`, `?`, `#` or a
/// dot segment to the place it is put in.
public enum URLText {
    /// RFC 3986 `unreserved`: the only bytes a path segment value keeps as they are.
    @inline(__always) static func isUnreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    /// RFC 3986 `sub-delims`, `:` and `@`: with `unreserved`, what a path segment (`pchar`) may hold.
    @inline(__always) static func isPathDelimiter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "!"), UInt8(ascii: "$"), UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "("), UInt8(ascii: ")"),
            UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: ","), UInt8(ascii: ";"), UInt8(ascii: "="), UInt8(ascii: ":"), UInt8(ascii: "@"):
            return true
        default:
            return false
        }
    }

    @inline(__always) static func isHexDigit(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "A")...UInt8(ascii: "F"), UInt8(ascii: "a")...UInt8(ascii: "f"): true
        default: false
        }
    }

    static let hexDigits = Array("0123456789ABCDEF".utf8)

    @inline(__always) static func appendEscaped(_ byte: UInt8, to output: inout [UInt8]) {
        output.append(UInt8(ascii: "%"))
        output.append(hexDigits[Int(byte >> 4)])
        output.append(hexDigits[Int(byte & 0x0F)])
    }

    /// A value put into one path segment: everything but `unreserved` is escaped (`/`, `?`, `#`, `%`
    /// included), so the value stays one segment. A value with a `.` or `..` part (between slashes or
    /// backslashes) is refused.
    /// - Throws: `invalid_metadata` for a dot segment (`what` names the value's source).
    public static func pathSegment(_ value: String, what: String) throws -> String {
        // Also `../x` and `..\x`: escaped they stay one segment here, but a server or proxy that decodes
        // `%2F` or `%5C` before resolving dot segments would step out of the path.
        if value.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "/" || $0 == "\\" }).contains(where: { $0 == "." || $0 == ".." }) {
            throw TributaryError(
                .invalidMetadata, "\(what) is '\(value.prefix(80))', which holds a '.' or '..' segment and could move the request to another path.")
        }
        var output: [UInt8] = []
        output.reserveCapacity(value.utf8.count)
        for byte in value.utf8 {
            if isUnreserved(byte) { output.append(byte) } else { appendEscaped(byte, to: &output) }
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// A path that may already hold escapes (an endpoint a function wrote, a provider's link): valid
    /// `pchar`s, `/` and well-formed `%XX` escapes stay; every other byte (a space, a raw `%`, a
    /// non-ASCII letter) is escaped. The result is always valid as a percent-encoded path.
    public static func path(_ text: Substring) -> String { escaping(text) { isUnreserved($0) || isPathDelimiter($0) || $0 == UInt8(ascii: "/") } }

    /// A query that may already hold escapes: like ``path(_:)`` with `?` allowed too; `#` is escaped.
    public static func query(_ text: Substring) -> String {
        escaping(text) { isUnreserved($0) || isPathDelimiter($0) || $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?") }
    }

    private static func escaping(_ text: Substring, keeps: (UInt8) -> Bool) -> String {
        let bytes = Array(text.utf8)
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "%"), index + 2 < bytes.count, isHexDigit(bytes[index + 1]), isHexDigit(bytes[index + 2]) {
                output.append(contentsOf: bytes[index...(index + 2)])
                index += 3
                continue
            }
            if keeps(byte) { output.append(byte) } else { appendEscaped(byte, to: &output) }
            index += 1
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// `url` without the query parameters named in `names` (compared after decoding): a provider's
    /// next link that echoes a credential sent as a query parameter (`?api_key=…`) is stored,
    /// shown and logged without it — provider access adds it again when it calls.
    public static func removingQueryItems(named names: Set<String>, from url: String) -> String {
        guard !names.isEmpty, let question = url.firstIndex(of: "?") else { return url }
        let afterQuestion = url.index(after: question)
        let fragmentStart = url[afterQuestion...].firstIndex(of: "#") ?? url.endIndex
        let kept = url[afterQuestion..<fragmentStart].split(separator: "&", omittingEmptySubsequences: false).filter { pair in
            let name = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            let decoded = (name.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? name)
            return !names.contains(decoded)
        }
        let base = String(url[..<question])
        let fragment = String(url[fragmentStart...])
        return kept.isEmpty ? base + fragment : base + "?" + kept.joined(separator: "&") + fragment
    }

    /// `url` without a `user:password@` part: a provider's link that carries one is stored, shown
    /// and logged without it (and never sent: credentials come from the connection, not from a link).
    /// Only an authority is looked at — after `scheme://` or a leading `//` (scheme-relative) — so an
    /// `@` in a path, a query or a value that is not a URL stays as it is.
    public static func removingUserInfo(from url: String) -> String {
        // URL parsers drop leading and trailing C0 controls and spaces (WHATWG URL): so does this,
        // or ` https://user:pw@host` would keep its password.
        let url = trimmingC0ControlOrSpace(url)
        let authorityStart: String.Index
        if url.hasPrefix("//") {
            authorityStart = url.index(url.startIndex, offsetBy: 2)
        } else if let separator = url.range(of: "://"), isScheme(url[..<separator.lowerBound]) {
            authorityStart = separator.upperBound
        } else {
            return url
        }
        let authorityEnd = url[authorityStart...].firstIndex { $0 == "/" || $0 == "?" || $0 == "#" || $0 == "\\" } ?? url.endIndex
        guard let at = url[authorityStart..<authorityEnd].lastIndex(of: "@") else { return url }
        return String(url[..<authorityStart]) + String(url[url.index(after: at)...])
    }

    /// `url` without any credential it may carry: the query parameters named in `names` and a
    /// `user:password@` — what every link kept, shown or logged goes through.
    public static func removingCredentials(named names: Set<String>, from url: String) -> String {
        removingUserInfo(from: removingQueryItems(named: names, from: url))
    }

    /// `text` without leading and trailing C0 controls (U+0000–U+001F) and spaces, as the WHATWG
    /// URL parser drops them before reading a URL.
    public static func trimmingC0ControlOrSpace(_ text: String) -> String {
        let scalars = text.unicodeScalars
        let isTrimmed: (Unicode.Scalar) -> Bool = { $0.value <= 0x20 }
        guard let first = scalars.firstIndex(where: { !isTrimmed($0) }), let last = scalars.lastIndex(where: { !isTrimmed($0) }) else { return "" }
        return String(scalars[first...last])
    }

    /// RFC 3986 `scheme`: a letter, then letters, digits, `+`, `-` or `.`.
    private static func isScheme(_ text: Substring) -> Bool {
        guard let first = text.unicodeScalars.first, first.isASCII, first.properties.isAlphabetic else { return false }
        return text.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "+-.".unicodeScalars.contains($0)) }
    }

    /// Whether a percent-encoded path holds a `.` or `..` segment, in any spelling (`%2e`, `.%2E`, …).
    /// Encoded slashes (`%2F`) and backslashes (`\`, `%5C`) count as separators too: some servers
    /// decode them before resolving dot segments.
    public static func hasDotSegment(_ path: String) -> Bool {
        let separated = path.replacingOccurrences(of: "%2f", with: "/", options: .caseInsensitive)
            .replacingOccurrences(of: "%5c", with: "/", options: .caseInsensitive).replacingOccurrences(of: "\\", with: "/")
        return separated.split(separator: "/", omittingEmptySubsequences: false).contains { segment in
            let decoded = segment.replacingOccurrences(of: "%2e", with: ".", options: .caseInsensitive)
            return decoded == "." || decoded == ".."
        }
    }
}
