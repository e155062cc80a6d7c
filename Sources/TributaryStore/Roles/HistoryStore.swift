import TributaryCore

/// Finished history past its retention: finished runs (with their log lines), delivered or failed
/// webhooks to the app, handled provider webhook tasks. Removed in small batches by the worker's
/// cleanup (`HistoryCleaner`), so the tables stop growing and no transaction holds the writer long.
public protocol HistoryStore: Sendable {
    /// Removes up to `limit` rows of each kind of finished history older than the cutoffs. Never
    /// removes an active run, the latest run of a variant (provider webhook executions aside), a run an open webhook task or delivery still
    /// points at, an open delivery or an open task.
    /// - Returns: the rows removed (runs, deliveries and tasks; log lines go with their runs).
    func pruneHistory(_ cutoffs: HistoryCutoffs, limit: Int) async throws -> Int
}

/// What ``HistoryStore/pruneHistory(_:limit:)`` removes: rows that ended (finished, delivered,
/// handled) before these times.
public struct HistoryCutoffs: Sendable, Hashable {
    public var runs: Timestamp
    public var deliveries: Timestamp
    public var webhookTasks: Timestamp

    public init(runs: Timestamp, deliveries: Timestamp, webhookTasks: Timestamp) {
        self.runs = runs
        self.deliveries = deliveries
        self.webhookTasks = webhookTasks
    }

    /// The cutoffs of a retention policy at `now`.
    public init(_ retention: RetentionConfig, now: Timestamp) {
        func daysAgo(_ days: Int) -> Timestamp { Timestamp(microseconds: now.microseconds - Int64(days) * 86_400_000_000) }
        self.init(runs: daysAgo(retention.runsDays), deliveries: daysAgo(retention.webhookDeliveriesDays), webhookTasks: daysAgo(retention.webhookTasksDays))
    }
}
