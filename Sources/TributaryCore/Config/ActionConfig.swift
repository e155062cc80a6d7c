/// An action an app can trigger through a connection (`POST /action/trigger`): a Swift
/// ``ActionFunction``, or one templated provider request described in the configuration.
public struct ActionConfig: Sendable, Hashable {
    /// Nango's default time limit: 15 minutes.
    public static let defaultTimeoutSeconds = 900
    /// Nango's output limit: 2 MiB of JSON.
    public static let defaultMaxOutputBytes = 2 * 1024 * 1024

    public var name: String
    /// The registered ``ActionFunction`` name (defaults to the action's name); unused when declarative.
    public var function: String
    public var description: String?
    /// How long one attempt may run before it fails.
    public var timeoutSeconds: Int
    /// The largest output (as JSON) the app is answered with; a larger one fails the action.
    public var maxOutputBytes: Int
    /// Set for an action described in the configuration instead of a Swift function.
    public var declarative: DeclarativeAction?

    public init(
        name: String, function: String? = nil, description: String? = nil, timeoutSeconds: Int = Self.defaultTimeoutSeconds,
        maxOutputBytes: Int = Self.defaultMaxOutputBytes, declarative: DeclarativeAction? = nil
    ) {
        self.name = name
        self.function = function ?? name
        self.description = description
        self.timeoutSeconds = timeoutSeconds
        self.maxOutputBytes = maxOutputBytes
        self.declarative = declarative
    }
}

/// A declarative action: one provider request filled from the action's input, and its output — the
/// response's JSON, or the value at `output` in it.
///
/// Templates take `{input.PATH}` (a value of the input, by dotted path), `{metadata.KEY}`,
/// `{connection_id}` and `{idempotency_key}`. In the endpoint each value is one encoded path segment;
/// in query and header values it goes in as text. In the body, a string that is exactly one token
/// becomes that JSON value (`"{input.quantity}"` stays a number); tokens inside longer strings are
/// filled as text.
public struct DeclarativeAction: Sendable, Hashable {
    public var method: ProviderRequest.Method
    public var endpoint: String
    public var query: [DeclarativeSpec.Parameter]
    public var headers: [DeclarativeSpec.Parameter]
    /// The JSON body template (none: no body).
    public var body: JSONValue?
    /// The path of the output in the response's JSON (none: the whole response).
    public var output: String?

    public init(
        method: ProviderRequest.Method, endpoint: String, query: [DeclarativeSpec.Parameter] = [], headers: [DeclarativeSpec.Parameter] = [],
        body: JSONValue? = nil, output: String? = nil
    ) {
        self.method = method
        self.endpoint = endpoint
        self.query = query
        self.headers = headers
        self.body = body
        self.output = output
    }
}
