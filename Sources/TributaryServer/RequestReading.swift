import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import TributaryCore

/// Reads a JSON request body strictly: it must be an object, only the allowed fields may appear,
/// and each typed getter says exactly which field is wrong and why.
struct BodyReader {
    let object: JSONObject

    /// Collects at most `maxBytes` of the body and parses it.
    static func read(_ request: Request, maxBytes: Int, allowed: Set<String>) async throws -> BodyReader {
        let bytes = try await request.body(upTo: maxBytes).readableBytesView
        guard !bytes.isEmpty else { throw APIError.invalidBody("The request body is empty; send a JSON object.") }
        let value: JSONValue
        do {
            value = try JSONParser.parse(bytes)
        } catch {
            throw APIError.invalidBody("The request body is not valid JSON: \(error.message) (byte \(error.offset)).")
        }
        guard case .object(let object) = value else { throw APIError.invalidBody("The request body must be a JSON object.") }
        for key in object.keys where !allowed.contains(key) {
            throw APIError.invalidBody("Unknown field '\(key)'; allowed fields: \(allowed.sorted().joined(separator: ", ")).")
        }
        return BodyReader(object: object)
    }

    func optionalString(_ key: String, maxLength: Int = 255) throws -> String? {
        switch object[key] {
        case nil, .null?: return nil
        case .string(let s)?:
            // Characters (Unicode scalars), as JSON Schema's maxLength counts them.
            guard !s.isEmpty, s.unicodeScalars.count <= maxLength else {
                throw APIError.invalidBody("Field '\(key)' must be a string of 1 to \(maxLength) characters.")
            }
            return s
        default: throw APIError.invalidBody("Field '\(key)' must be a string.")
        }
    }

    func string(_ key: String, maxLength: Int = 255) throws -> String {
        guard let value = try optionalString(key, maxLength: maxLength) else {
            throw APIError.invalidBody("Field '\(key)' is required.")
        }
        return value
    }

    func optionalObject(_ key: String) throws -> JSONObject? {
        switch object[key] {
        case nil, .null?: return nil
        case .object(let o)?: return o
        default: throw APIError.invalidBody("Field '\(key)' must be a JSON object.")
        }
    }

    func optionalBool(_ key: String, in object: JSONObject? = nil) throws -> Bool? {
        switch (object ?? self.object)[key] {
        case nil, .null?: return nil
        case .bool(let b)?: return b
        default: throw APIError.invalidBody("Field '\(key)' must be true or false.")
        }
    }

    /// A string or a list of strings (`connection_id` of the metadata endpoints).
    func stringOrList(_ key: String) throws -> [String] {
        switch object[key] {
        case .string(let s)? where !s.isEmpty: return [s]
        case .array(let values)? where !values.isEmpty:
            return try values.map { value in
                guard let s = value.stringValue, !s.isEmpty else {
                    throw APIError.invalidBody("Field '\(key)' must be a string or a non-empty list of strings.")
                }
                return s
            }
        case nil: throw APIError.invalidBody("Field '\(key)' is required.")
        default: throw APIError.invalidBody("Field '\(key)' must be a string or a non-empty list of strings.")
        }
    }
}

/// Strict query-string reading.
struct QueryReader {
    /// Name and value of each parameter in order; names percent-decoded (`ids%5B%5D` is `ids[]`).
    let pairs: [(key: String, value: String)]

    /// - Parameter allowedPrefixes: families of parameters allowed by their start (`tags[` for Nango's `tags[key]=value`).
    init(_ request: Request, allowed: Set<String>, allowedPrefixes: [String] = []) throws {
        pairs = request.uri.queryParameters.map { (String($0.key).removingPercentEncoding ?? String($0.key), String($0.value)) }
        for (key, _) in pairs where !allowed.contains(key) && !allowedPrefixes.contains(where: { key.hasPrefix($0) }) {
            if allowed.isEmpty { throw APIError.invalidQuery("This endpoint takes no query parameters; got '\(key)'.") }
            throw APIError.invalidQuery("Unknown query parameter '\(key)'; allowed: \(allowed.sorted().joined(separator: ", ")).")
        }
    }

    func optional(_ key: String) throws -> String? {
        let values = all(key)
        guard values.count <= 1 else { throw APIError.invalidQuery("Query parameter '\(key)' is given more than once.") }
        guard let value = values.first else { return nil }
        guard !value.isEmpty else { throw APIError.invalidQuery("Query parameter '\(key)' is empty.") }
        return value
    }

    func required(_ key: String) throws -> String {
        guard let value = try optional(key) else { throw APIError.invalidQuery("Query parameter '\(key)' is required.") }
        return value
    }

    /// A boolean parameter as Nango reads them (`true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`, any case).
    func bool(_ key: String) throws -> Bool? {
        guard let value = try optional(key) else { return nil }
        switch value.lowercased() {
        case "true", "1", "yes", "on": return true
        case "false", "0", "no", "off": return false
        default: throw APIError.invalidQuery("Query parameter '\(key)' must be true or false, not '\(value.prefix(40))'.")
        }
    }

    /// A whole-number parameter within `range`.
    func integer(_ key: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let value = try optional(key) else { return nil }
        guard let number = Int(value), range.contains(number) else {
            throw APIError.invalidQuery("Query parameter '\(key)' must be a whole number from \(range.lowerBound) to \(range.upperBound), not '\(value.prefix(40))'.")
        }
        return number
    }

    func all(_ key: String) -> [String] { pairs.filter { $0.key == key }.map(\.value) }
}

extension Request {
    /// The whole body, at most `maxBytes`.
    ///
    /// A body over the limit is read on and thrown away — up to ``discardLimit(for:)`` bytes, while
    /// it keeps coming for a second — before the 413 goes out with `Connection: close`: a client that
    /// writes its whole body before it reads (Python's urllib and `requests`, many SDKs) would
    /// otherwise block on a full socket and never see the answer.
    /// - Throws: 413 `payload_too_large` when it is larger.
    func body(upTo maxBytes: Int) async throws -> ByteBuffer {
        var collected = ByteBuffer()
        var chunks = body.makeAsyncIterator()
        while let chunk = try await chunks.next() {
            guard collected.readableBytes + chunk.readableBytes <= maxBytes else {
                var discarded = collected.readableBytes + chunk.readableBytes
                let deadline = ContinuousClock.now + .seconds(1)
                while discarded <= Self.discardLimit(for: maxBytes), ContinuousClock.now < deadline, let more = try await chunks.next() {
                    discarded += more.readableBytes
                }
                throw APIError(.contentTooLarge, "payload_too_large", "The request body is larger than \(maxBytes) bytes.")
            }
            collected.writeImmutableBuffer(chunk)
        }
        return collected
    }

    /// How much of an oversized body is read and dropped before answering 413 (past it, or past a
    /// second, the answer goes out anyway and the connection closes).
    static func discardLimit(for maxBytes: Int) -> Int { max(64 << 20, maxBytes) }

    /// A header's value, or nil when absent or empty.
    func header(_ name: String) -> String? {
        guard let field = HTTPField.Name(name), let value = headers[field], !value.isEmpty else { return nil }
        return value
    }
}

extension Parameters {
    /// A path parameter that must be a valid name (`^[a-zA-Z0-9_-]+$`, ≤ 255).
    func requireName(_ key: String, what: String) throws -> String {
        let value = get(key) ?? ""
        guard Identifier.isValidSyncName(value) else {
            throw APIError.invalidURI("The \(what) '\(value.prefix(80))' is invalid: use 1 to 255 characters from a-z, A-Z, 0-9, '_' and '-'.")
        }
        return value
    }
}
