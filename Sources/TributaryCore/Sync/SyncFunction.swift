/// A sync function: Swift code that moves data from a provider into the records cache.
///
/// Declare one per sync, give it the name your `tributary.yaml` refers to (`function:`), and
/// register it with the engine. The engine calls ``exec(_:)`` once per run of a variant:
///
/// ```swift
/// struct OrdersSync: SyncFunction {
///     let name = "orders"
///     func exec(_ nango: any SyncContext) async throws {
///         let since = nango.lastSyncDate
///         for page in pages(since: since) {            // your provider calls
///             try await nango.batchSave(page, model: "Order")   // persisted before it returns
///         }
///     }
/// }
/// ```
///
/// A full-refresh sync with `track_deletes` saves every record it still sees; records it did not
/// save in a successful run are marked deleted when the run ends. A run that throws changes
/// nothing else: no deletions, and `lastSyncDate` stays where it was.
public protocol SyncFunction: Sendable {
    /// The name `tributary.yaml` uses in a sync's `function:` key.
    var name: String { get }

    /// Runs the sync once for the variant described by `context`.
    ///
    /// - Throws: any error fails the run; its description becomes the run's error message.
    ///   `CancellationError` (thrown by the context once the run is cancelled) ends it as cancelled.
    func exec(_ context: any SyncContext) async throws

    /// Handles a provider webhook routed to this sync (its `webhook_subscriptions` matched the
    /// webhook's type). Always called for the connection's **base** variant, like Nango; records it
    /// saves count as seen by a full refresh in progress, so they are never deleted by it.
    ///
    /// The default implementation fails: a sync that subscribes to webhooks needs this method or a
    /// declarative `webhook:` handler in `tributary.yaml`.
    ///
    /// - Parameters:
    ///   - payload: the webhook's JSON body, as the provider sent it.
    func onWebhook(_ context: any SyncContext, payload: JSONValue) async throws

    /// The fields of the models this function writes, by model name — what `GET /scripts/config`
    /// shows an app (Nango's model descriptions). Optional: the default describes none, and models
    /// are then listed without fields.
    var modelFields: [String: [ModelField]] { get }
}

extension SyncFunction {
    public var modelFields: [String: [ModelField]] { [:] }

    public func onWebhook(_ context: any SyncContext, payload: JSONValue) async throws {
        throw TributaryError(
            .unknownFunction,
            "Sync function '\(name)' has no onWebhook handler; implement onWebhook(_:payload:) or declare a 'webhook:' handler for sync '\(context.syncName)'.")
    }
}

/// A sync function made from a closure — handy for small functions and tests.
public struct ClosureSyncFunction: SyncFunction {
    public let name: String
    let body: @Sendable (any SyncContext) async throws -> Void
    let webhook: (@Sendable (any SyncContext, JSONValue) async throws -> Void)?
    public let modelFields: [String: [ModelField]]

    /// - Parameters:
    ///   - modelFields: the fields of the models it writes (``SyncFunction/modelFields``).
    ///   - body: the run (``exec(_:)``).
    ///   - onWebhook: the provider webhook handler (``onWebhook(_:payload:)``); nil: none.
    public init(
        name: String, modelFields: [String: [ModelField]] = [:], onWebhook: (@Sendable (any SyncContext, JSONValue) async throws -> Void)? = nil,
        _ body: @escaping @Sendable (any SyncContext) async throws -> Void
    ) {
        self.modelFields = modelFields
        self.name = name
        self.body = body
        self.webhook = onWebhook
    }

    public func exec(_ context: any SyncContext) async throws { try await body(context) }

    public func onWebhook(_ context: any SyncContext, payload: JSONValue) async throws {
        guard let webhook else {
            throw TributaryError(.unknownFunction, "Sync function '\(name)' has no onWebhook handler.")
        }
        try await webhook(context, payload)
    }
}
