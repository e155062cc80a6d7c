import TributaryCore

/// The history of on-event function runs (``ConnectionEventRun``), by environment.
public protocol ConnectionEventStore: Sendable {
    /// Records a finished run.
    func recordConnectionEventRun(_ run: ConnectionEventRun) async throws
    /// The environment's runs, newest first, optionally of one integration and connection id.
    func connectionEventRuns(environment: String, providerConfigKey: String?, connectionId: String?, limit: Int) async throws -> [ConnectionEventRun]
}
