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
}

/// A sync function made from a closure — handy for small functions and tests.
public struct ClosureSyncFunction: SyncFunction {
    public let name: String
    let body: @Sendable (any SyncContext) async throws -> Void

    public init(name: String, _ body: @escaping @Sendable (any SyncContext) async throws -> Void) {
        self.name = name
        self.body = body
    }

    public func exec(_ context: any SyncContext) async throws { try await body(context) }
}
