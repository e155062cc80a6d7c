import Yams

/// The actions of an integration in `tributary.yaml`:
///
/// ```yaml
/// integrations:
///   my-shop:
///     actions:
///       refund-order:                   # a Swift ActionFunction registered as 'refund-order'
///         description: Refund an order
///         # function: refunds           # its registered name, when it differs
///       create-note:                    # declarative: one provider request
///         method: POST
///         endpoint: /orders/{input.order_id}/notes
///         query: { store: "{metadata.store}" }
///         headers: { Idempotency-Key: "{idempotency_key}" }
///         body: { text: "{input.text}", pinned: "{input.pinned}" }
///         output: note                  # the path of the output in the response (default: all of it)
///         timeout_seconds: 900          # per attempt (default 900)
///         max_output_bytes: 2097152     # (default 2 MiB)
/// ```
extension ConfigLoader.Parser {
    static let declarativeActionKeys: Set<String> = ["method", "query", "headers", "body", "output"]

    mutating func parseActions(_ node: Node, _ owner: String) -> [ActionConfig] {
        guard let entries = mapping(node, "\(owner).actions", allowed: []) else { return [] }
        var result: [ActionConfig] = []
        for entry in entries {
            guard Identifier.isValidSyncName(entry.key) else {
                issue(entry.keyNode, "action name '\(entry.key)' is invalid: use letters, digits, '-' or '_'")
                continue
            }
            if let action = parseAction(entry.key, entry.value, owner) { result.append(action) }
        }
        return result
    }

    mutating func parseAction(_ name: String, _ node: Node, _ owner: String) -> ActionConfig? {
        let what = "action '\(name)' of \(owner)"
        let allowed = ["function", "description", "timeout_seconds", "max_output_bytes", "endpoint"] + Self.declarativeActionKeys.sorted()
        // An action with no settings at all (`refund-order:`) is a Swift function of that name.
        if case .scalar(let scalar) = node, scalar.string.isEmpty || scalar.string == "~" || scalar.string == "null" {
            return ActionConfig(name: name)
        }
        guard let entries = mapping(node, what, allowed: allowed) else { return nil }
        var action = ActionConfig(name: name)
        var valid = true
        for entry in entries {
            switch entry.key {
            case "function":
                if let function = nonEmptyString(entry.value, "\(what).function") { action.function = function } else { valid = false }
            case "description":
                action.description = string(entry.value, "\(what).description")
            case "timeout_seconds":
                if let seconds = integer(entry.value, "\(what).timeout_seconds", in: 1...86_400) { action.timeoutSeconds = seconds } else { valid = false }
            case "max_output_bytes":
                if let bytes = integer(entry.value, "\(what).max_output_bytes", in: 1...(64 * 1024 * 1024)) { action.maxOutputBytes = bytes } else { valid = false }
            default:
                break
            }
        }
        if let endpointEntry = entries.first(where: { $0.key == "endpoint" }) {
            if let node = entries.first(where: { $0.key == "function" })?.keyNode {
                issue(node, "\(what) has both a 'function' and an 'endpoint'; a declarative action has no function")
                valid = false
            }
            action.declarative = parseDeclarativeAction(entries, endpointEntry, what)
            if action.declarative == nil { valid = false }
        } else {
            for entry in entries where Self.declarativeActionKeys.contains(entry.key) {
                issue(entry.keyNode, "\(what): '\(entry.key)' belongs to a declarative action, which needs an 'endpoint'")
                valid = false
            }
        }
        return valid ? action : nil
    }

    mutating func parseDeclarativeAction(_ entries: [ConfigLoader.Entry], _ endpointEntry: ConfigLoader.Entry, _ what: String) -> DeclarativeAction? {
        guard let endpoint = nonEmptyString(endpointEntry.value, "\(what).endpoint") else { return nil }
        guard endpoint.hasPrefix("/") else {
            issue(endpointEntry.value, "\(what).endpoint must be a path below the integration's base_url, starting with '/', not '\(endpoint)'")
            return nil
        }
        var action = DeclarativeAction(method: .POST, endpoint: endpoint)
        var valid = true
        for entry in entries {
            switch entry.key {
            case "method":
                if let method = method(entry.value, "\(what).method") { action.method = method } else { valid = false }
            case "query", "headers":
                guard let list = parameters(entry.value, "\(what).\(entry.key)") else {
                    valid = false
                    continue
                }
                if entry.key == "query" { action.query = list } else { action.headers = list }
            case "body":
                if let body = json(entry.value, "\(what).body") { action.body = body } else { valid = false }
            case "output":
                if let path = nonEmptyString(entry.value, "\(what).output") { action.output = path } else { valid = false }
            default:
                break
            }
        }
        if action.body != nil, action.method == .GET {
            issue(endpointEntry.keyNode, "\(what): a GET request has no body; use 'query' or another method")
            valid = false
        }
        return valid ? action : nil
    }

    /// A YAML value as JSON: mappings are objects, sequences arrays; an unquoted `true`/`false`,
    /// `null`/`~` or JSON number is that value, anything else a string (with `${VAR}` filled).
    mutating func json(_ node: Node, _ what: String) -> JSONValue? {
        switch node {
        case .mapping(let mapping):
            var object = JSONObject()
            for (keyNode, value) in mapping {
                guard case .scalar(let key) = keyNode else {
                    issue(keyNode, "keys in \(what) must be plain strings")
                    return nil
                }
                guard let converted = json(value, "\(what).\(key.string)") else { return nil }
                object[key.string] = converted
            }
            return .object(object)
        case .sequence(let sequence):
            var elements: [JSONValue] = []
            for element in sequence {
                guard let converted = json(element, "each entry of \(what)") else { return nil }
                elements.append(converted)
            }
            return .array(elements)
        case .scalar(let scalar):
            if scalar.style == .plain {
                switch scalar.string {
                case "true": return .bool(true)
                case "false": return .bool(false)
                case "null", "~", "": return .null
                default:
                    if case .number(let number)? = try? JSONParser.parse(scalar.string) { return .number(number) }
                }
            }
            return interpolate(scalar.string, node, what).map(JSONValue.string)
        case .alias:
            issue(node, "\(what) must not use YAML anchors or aliases")
            return nil
        }
    }
}
