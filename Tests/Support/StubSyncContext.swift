import Foundation
import TributaryCore

/// A ``SyncContext`` for tests that drive a sync function or a listing without an engine: the
/// variant `dev/shop/c1`, sync `orders`, variant `base`, model `Order`, no last sync; checkpoints,
/// metadata, writes and logs do nothing. A test's context conforms and implements what it watches
/// (at least `send`); a protocol requirement it implements replaces the default here.
public protocol StubSyncContext: SyncContext {}

extension StubSyncContext {
    public var environment: String { "dev" }
    public var providerConfigKey: String { "shop" }
    public var connectionId: String { "c1" }
    public var syncName: String { "orders" }
    public var variant: String { "base" }
    public var lastSyncDate: Date? { nil }
    public var models: [String] { ["Order"] }
    public func getCheckpoint() async throws -> Checkpoint? { nil }
    public func saveCheckpoint(_ checkpoint: Checkpoint) async throws {}
    public func clearCheckpoint() async throws {}
    public func getMetadata() async throws -> JSONObject { [:] }
    public func setMetadata(_ metadata: JSONObject) async throws {}
    public func updateMetadata(_ metadata: JSONObject) async throws {}
    public func batchSave(_ records: [JSONObject], model: String) async throws {}
    public func batchSave(prepared records: [PreparedRecord], model: String) async throws {}
    public func batchUpdate(_ records: [JSONObject], model: String) async throws {}
    public func batchDelete(_ records: [JSONObject], model: String) async throws {}
    public func log(_ message: String, level: LogLevel) async {}
    public func checkCancellation() throws {}
}
