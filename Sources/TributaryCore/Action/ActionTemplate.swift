/// Fills a declarative action's request from its input, the connection's metadata and the
/// execution: `{input.PATH}`, `{input}`, `{metadata.KEY}`, `{connection_id}`, `{idempotency_key}`.
///
/// One pass, like ``DeclarativeSpec/fill(_:variant:metadata:for:)``: what a value inserts is never
/// scanned again; a `{` that starts no known token stays text.
public struct ActionTemplate: Sendable {
    public var input: JSONValue
    public var metadata: JSONObject
    public var connectionId: String
    public var idempotencyKey: String

    public init(input: JSONValue, metadata: JSONObject, connectionId: String, idempotencyKey: String) {
        self.input = input
        self.metadata = metadata
        self.connectionId = connectionId
        self.idempotencyKey = idempotencyKey
    }

    /// The provider request `action` describes, filled.
    /// - Throws: `invalid_action_input` or `invalid_metadata` naming the value that is missing, too
    ///   long, of the wrong kind, or a dot segment of the path.
    public func request(_ action: DeclarativeAction) throws(TributaryError) -> ProviderRequest {
        let endpoint = try fill(action.endpoint, for: .path)
        var query: [(name: String, value: String)] = []
        for parameter in action.query { query.append((parameter.name, try fill(parameter.value, for: .queryValue))) }
        var headers: [(name: String, value: String)] = []
        for header in action.headers {
            let value = try fill(header.value, for: .queryValue)
            guard !value.utf8.contains(where: { $0 == 0x0A || $0 == 0x0D || $0 == 0 }) else {
                throw TributaryError(.invalidActionInput, "Header '\(header.name)' of the action's request would contain a line break.")
            }
            headers.append((header.name, value))
        }
        guard let template = action.body else { return ProviderRequest(action.method, endpoint, query: query, headers: headers) }
        let filled = try body(template)
        if !headers.contains(where: { $0.name.lowercased() == "content-type" }) { headers.append(("Content-Type", "application/json")) }
        return ProviderRequest(action.method, endpoint, query: query, headers: headers, body: JSONWriter.bytes(filled, canonical: false))
    }

    /// The body template filled: a string that is exactly one token becomes that value as JSON.
    public func body(_ template: JSONValue) throws(TributaryError) -> JSONValue {
        switch template {
        case .string(let text):
            let inner = text.dropFirst().dropLast()
            if text.first == "{", text.last == "}", !inner.contains("{"), !inner.contains("}"), let token = Self.token(in: inner) {
                return try value(of: token)
            }
            return .string(try fill(text, for: .queryValue))
        case .array(let elements):
            var filled: [JSONValue] = []
            for element in elements { filled.append(try body(element)) }
            return .array(filled)
        case .object(let object):
            var filled = JSONObject()
            for (key, value) in object { filled[key] = try body(value) }
            return .object(filled)
        case .null, .bool, .number:
            return template
        }
    }

    /// `template` with every token filled as text, encoded for `placement`.
    public func fill(_ template: String, for placement: DeclarativeSpec.Placement) throws(TributaryError) -> String {
        var output = ""
        var rest = Substring(template)
        while let open = rest.firstIndex(of: "{") {
            output += rest[..<open]
            let afterOpen = rest.index(after: open)
            guard let close = rest[afterOpen...].firstIndex(of: "}"), let token = Self.token(in: rest[afterOpen..<close]) else {
                output.append("{")
                rest = rest[afterOpen...]
                continue
            }
            let text = try Self.text(of: try value(of: token), token: token)
            guard text.utf8.count <= DeclarativeSpec.maximumValueBytes else {
                throw TributaryError(
                    token.isInput ? .invalidActionInput : .invalidMetadata,
                    "\(token.what) is \(text.utf8.count) bytes long; a value filled into a request may have \(DeclarativeSpec.maximumValueBytes) at most.")
            }
            switch placement {
            case .path:
                do {
                    output += try URLText.pathSegment(text, what: token.what)
                } catch let error as TributaryError {
                    throw TributaryError(token.isInput ? .invalidActionInput : error.code, error.message)
                } catch {
                    throw TributaryError(.invalidActionInput, "\(token.what) cannot be one segment of the endpoint's path.")
                }
            case .queryValue: output += text
            }
            guard output.utf8.count <= DeclarativeSpec.maximumFilledBytes else {
                // Not the template itself: configured values (`${VAR}`) may be in it.
                throw TributaryError(.invalidActionInput, "A filled value of the action's request is longer than \(DeclarativeSpec.maximumFilledBytes) bytes.")
            }
            rest = rest[rest.index(after: close)...]
        }
        return output + rest
    }

    enum Token {
        case input(path: String?)
        case metadata(key: String)
        case connectionId
        case idempotencyKey

        var isInput: Bool {
            if case .input = self { return true }
            return false
        }

        var what: String {
            switch self {
            case .input(let path?): "Input '\(path)'"
            case .input(nil): "The input"
            case .metadata(let key): "Connection metadata '\(key)'"
            case .connectionId: "The connection id"
            case .idempotencyKey: "The idempotency key"
            }
        }
    }

    /// The token between braces, when it is one.
    static func token(in text: Substring) -> Token? {
        switch text {
        case "input": return .input(path: nil)
        case "connection_id": return .connectionId
        case "idempotency_key": return .idempotencyKey
        default:
            if text.hasPrefix("input."), text.count > 6 { return .input(path: String(text.dropFirst(6))) }
            if text.hasPrefix("metadata."), text.count > 9 { return .metadata(key: String(text.dropFirst(9))) }
            return nil
        }
    }

    func value(of token: Token) throws(TributaryError) -> JSONValue {
        switch token {
        case .input(nil): return input
        case .input(let path?):
            guard let value = input.value(atPath: path) else {
                throw TributaryError(.invalidActionInput, "The action needs input '\(path)', which is missing.")
            }
            return value
        case .metadata(let key):
            guard let value = metadata[key] ?? JSONValue.object(metadata).value(atPath: key) else {
                throw TributaryError(.invalidMetadata, "The action needs connection metadata '\(key)', which is not set.")
            }
            return value
        case .connectionId: return .string(connectionId)
        case .idempotencyKey: return .string(idempotencyKey)
        }
    }

    static func text(of value: JSONValue, token: Token) throws(TributaryError) -> String {
        switch value {
        case .string(let s): return s
        case .number(let n): return n.text
        case .bool(let b): return b ? "true" : "false"
        case .null, .array, .object:
            throw TributaryError(
                token.isInput ? .invalidActionInput : .invalidMetadata, "\(token.what) must be a string, number or boolean to go into the request.")
        }
    }
}
