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
            guard !s.isEmpty, s.utf8.count <= maxLength else {
                throw APIError.invalidBody("Field '\(key)' must be a string of 1 to \(maxLength) bytes.")
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
    let parameters: Parameters

    init(_ request: Request, allowed: Set<String>) throws {
        parameters = request.uri.queryParameters
        for (key, _) in parameters where !allowed.contains(String(key)) {
            if allowed.isEmpty { throw APIError.invalidQuery("This endpoint takes no query parameters; got '\(key)'.") }
            throw APIError.invalidQuery("Unknown query parameter '\(key)'; allowed: \(allowed.sorted().joined(separator: ", ")).")
        }
    }

    func optional(_ key: String) throws -> String? {
        let values = parameters.getAll(key)
        guard values.count <= 1 else { throw APIError.invalidQuery("Query parameter '\(key)' is given more than once.") }
        guard let value = values.first else { return nil }
        guard !value.isEmpty else { throw APIError.invalidQuery("Query parameter '\(key)' is empty.") }
        return value
    }

    func required(_ key: String) throws -> String {
        guard let value = try optional(key) else { throw APIError.invalidQuery("Query parameter '\(key)' is required.") }
        return value
    }

    func all(_ key: String) -> [String] { parameters.getAll(key) }
}

extension Request {
    /// The whole body, at most `maxBytes`.
    /// - Throws: 413 `payload_too_large` when it is larger.
    func body(upTo maxBytes: Int) async throws -> ByteBuffer {
        var request = self
        do {
            return try await request.collectBody(upTo: maxBytes)
        } catch {
            throw APIError(.contentTooLarge, "payload_too_large", "The request body is larger than \(maxBytes) bytes.")
        }
    }

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
