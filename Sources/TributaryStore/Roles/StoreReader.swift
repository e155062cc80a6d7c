import TributaryCore

/// Everything a reader needs — the API's and dashboard's pages, the CLI's listings — and nothing
/// that writes. Reads never take the writer (SQLite) or a lock (PostgreSQL).
public protocol StoreReader: Sendable {
    /// One connection, or nil.
    func connection(_ connection: ConnectionRef) async throws -> ConnectionRecord?
    /// Connections matching `filter`, ordered by creation.
    func connections(_ filter: ConnectionFilter) async throws -> [ConnectionRecord]
    /// Whether the connection exists.
    func connectionExists(_ connection: ConnectionRef) async throws -> Bool
    /// The connection's metadata. Throws `unknown_connection` when it does not exist.
    func metadata(of connection: ConnectionRef) async throws -> JSONObject

    /// The variant's state, or nil when it does not exist.
    func variantState(_ variant: VariantRef) async throws -> VariantState?
    /// All variants of a connection, ordered by sync name then variant (`base` first).
    func variants(of connection: ConnectionRef) async throws -> [VariantState]

    /// The variant's queued or running run (provider webhook executions aside), if any.
    func activeRun(of variant: VariantRef) async throws -> RunRecord?
    /// The most recent runs of a variant, newest first; without provider webhook executions
    /// (`WEBHOOK` runs) unless `includingWebhooks`.
    func runs(of variant: VariantRef, limit: Int, includingWebhooks: Bool) async throws -> [RunRecord]
    /// One run.
    func run(_ id: Int64) async throws -> RunRecord?
    /// A run's log lines in order.
    func logs(ofRun id: Int64, limit: Int) async throws -> [RunLogEntry]

    /// Reads the change feed of one dataset.
    func changes(_ query: ChangeQuery) async throws -> ChangePage
    /// Non-deleted record counts per model of one variant.
    func recordCounts(of variant: VariantRef) async throws -> [String: Int]

    /// Deliveries of an environment, newest first.
    func deliveries(_ query: DeliveryQuery) async throws -> [WebhookDelivery]
    /// One delivery of an environment, or nil.
    func delivery(_ id: Int64, environment: String) async throws -> WebhookDelivery?
}

extension StoreReader {
    /// The most recent runs of a variant, newest first, provider webhook executions included.
    public func runs(of variant: VariantRef, limit: Int) async throws -> [RunRecord] {
        try await runs(of: variant, limit: limit, includingWebhooks: true)
    }
}
