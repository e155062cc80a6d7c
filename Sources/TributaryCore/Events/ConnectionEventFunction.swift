/// When an on-event function runs (Nango's `on-events`), named as in `tributary.yaml`.
public enum ConnectionEvent: String, Sendable, Hashable, CaseIterable {
    /// After a connection was created (imported, or connected on the Connect page). A failure is
    /// recorded; the connection stays.
    case postConnectionCreation = "post-connection-creation"
    /// Before a connection is saved, with its new credentials: a failure refuses it
    /// (`POST /connections` answers 400 `connection_validation_failed`; the Connect page shows the message).
    case validateConnection = "validate-connection"
    /// Before a connection is deleted, while its credentials still work (revoke a token, unregister a
    /// webhook). A failure is recorded; the deletion goes ahead.
    case preConnectionDeletion = "pre-connection-deletion"
}

/// A function that runs when something happens to a connection (``ConnectionEvent``), registered by
/// name and listed per integration under `on_events` in `tributary.yaml`:
///
/// ```swift
/// struct CheckScopes: ConnectionEventFunction {
///     let name = "check-scopes"
///     func run(_ nango: any ConnectionEventContext) async throws {
///         let me = try await nango.get("/user")
///         guard me.isSuccess else { throw ConnectionEventError("The account cannot read its profile (HTTP \(me.status)).") }
///     }
/// }
/// // main.swift: await TributaryCLI.main(functions: [...], events: [CheckScopes()])
/// ```
///
/// Its runs and log lines are kept in the environment's history (`GET /connection-events`) and
/// outlive the connection.
public protocol ConnectionEventFunction: Sendable {
    var name: String { get }
    func run(_ nango: any ConnectionEventContext) async throws
}

/// What an on-event function works with: provider calls with the connection's credentials (for
/// `validate-connection`, the credentials being saved), its metadata, and logging.
public protocol ConnectionEventContext: ProviderCaller {
    var environment: String { get }
    var providerConfigKey: String { get }
    var connectionId: String { get }
    var event: ConnectionEvent { get }
    /// The connection's metadata (for `validate-connection`, what is about to be saved).
    func getMetadata() async throws -> JSONObject
    /// Shallow-merges into the connection's metadata (not during `validate-connection`: the
    /// connection does not exist yet).
    func updateMetadata(_ metadata: JSONObject) async throws
    func log(_ message: String, level: LogLevel) async
    func checkCancellation() throws
}

extension ConnectionEventContext {
    public func log(_ message: String) async { await log(message, level: .info) }
}

/// A failure with words for the end user: a `validate-connection` function throws it to refuse a
/// connection, and its message is what the Connect page and `POST /connections` show.
public struct ConnectionEventError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// An on-event function from a closure.
public struct ClosureConnectionEventFunction: ConnectionEventFunction {
    public let name: String
    let body: @Sendable (any ConnectionEventContext) async throws -> Void

    public init(name: String, _ body: @escaping @Sendable (any ConnectionEventContext) async throws -> Void) {
        self.name = name
        self.body = body
    }

    public func run(_ nango: any ConnectionEventContext) async throws { try await body(nango) }
}
