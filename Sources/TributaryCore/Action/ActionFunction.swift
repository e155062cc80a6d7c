/// An action: Swift code an app runs on demand through a connection — create an issue, send a
/// message — with `POST /action/trigger` (Nango's `triggerAction`). Input and output are JSON.
///
/// ```swift
/// struct CreateIssue: ActionFunction {
///     let name = "create-issue"
///     func run(_ nango: any ActionContext, input: JSONValue) async throws -> JSONValue {
///         guard let title = input["title"]?.stringValue else { throw ActionError(message: "title is required") }
///         let response = try await nango.post("/issues", json: ["title": .string(title)])
///         guard response.status == 201 else { throw ActionError(["status": .number(JSONNumber(response.status))]) }
///         return try response.json()
///     }
/// }
/// ```
///
/// An async action (`X-Async: true`) may run more than once — after a crash, or again on a
/// ``RetryableError`` — so pass ``ActionContext/idempotencyKey`` to providers that take one.
public protocol ActionFunction: Sendable {
    /// The name `tributary.yaml` uses in an action's `function:` key.
    var name: String { get }

    /// Runs the action once for the connection described by `context`.
    ///
    /// - Returns: the output the app receives (at most the action's `max_output_bytes` as JSON).
    /// - Throws: ``ActionError`` to answer the app with your payload (500
    ///   `action_script_runtime_error`, as Nango does); a ``RetryableError`` makes an async action
    ///   try again (up to its `X-Max-Retries`); any other error fails the action with its description.
    func run(_ context: any ActionContext, input: JSONValue) async throws -> JSONValue

    /// The fields of the models the action reads and returns, by model name — for `GET /scripts/config`.
    /// Optional: the default describes none.
    var modelFields: [String: [ModelField]] { get }
}

extension ActionFunction {
    public var modelFields: [String: [ModelField]] { [:] }
}

/// An action made from a closure — handy for small actions and tests.
public struct ClosureActionFunction: ActionFunction {
    public let name: String
    public let modelFields: [String: [ModelField]]
    let body: @Sendable (any ActionContext, JSONValue) async throws -> JSONValue

    public init(
        name: String, modelFields: [String: [ModelField]] = [:], _ body: @escaping @Sendable (any ActionContext, JSONValue) async throws -> JSONValue
    ) {
        self.name = name
        self.modelFields = modelFields
        self.body = body
    }

    public func run(_ context: any ActionContext, input: JSONValue) async throws -> JSONValue { try await body(context, input) }
}

/// An error an action throws to answer the app with a payload of its own: the app gets 500
/// `{"error": {"code": "action_script_runtime_error", "message": …, "payload": …}}` (Nango's shape).
public struct ActionError: Error, Sendable, CustomStringConvertible {
    /// What the app receives in `error.payload`: an object (anything else is wrapped as `{"message": …}`).
    public var payload: JSONObject

    public init(_ payload: JSONObject) { self.payload = payload }

    /// A payload of one message: `{"message": message}`.
    public init(message: String) { self.payload = ["message": .string(message)] }

    public var description: String { "ActionError(\(JSONWriter.string(.object(payload))))" }
}
