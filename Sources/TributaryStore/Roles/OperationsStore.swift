import TributaryCore

/// What an operator watches across the whole store, read at the moment it is asked (so every process
/// over one database reports the same): active runs per sync and the webhook outbox's backlog. Read
/// by `GET /metrics` on each scrape.
public protocol OperationsStore: Sendable {
    /// Queued and running runs (provider webhook executions included) per environment, integration
    /// and sync, and pending webhook deliveries per environment with the oldest one's creation time.
    func operationsSnapshot() async throws -> OperationsSnapshot
}

/// Counts by bounded labels only: never per connection or variant.
public struct OperationsSnapshot: Sendable, Hashable {
    public struct ActiveRuns: Sendable, Hashable {
        public var environment: String
        public var integration: String
        public var sync: String
        public var queued: Int
        public var running: Int

        public init(environment: String, integration: String, sync: String, queued: Int = 0, running: Int = 0) {
            self.environment = environment
            self.integration = integration
            self.sync = sync
            self.queued = queued
            self.running = running
        }
    }

    public struct Outbox: Sendable, Hashable {
        public var environment: String
        public var pending: Int
        public var oldestPendingAt: Timestamp?

        public init(environment: String, pending: Int, oldestPendingAt: Timestamp?) {
            self.environment = environment
            self.pending = pending
            self.oldestPendingAt = oldestPendingAt
        }
    }

    public var runs: [ActiveRuns]
    public var outbox: [Outbox]

    public init(runs: [ActiveRuns], outbox: [Outbox]) {
        self.runs = runs
        self.outbox = outbox
    }

    /// Builds the per-sync rows from (environment, integration, sync, status, count) rows.
    public static func activeRuns(_ rows: [(environment: String, integration: String, sync: String, status: String, count: Int)]) -> [ActiveRuns] {
        var bySync: [[String]: ActiveRuns] = [:]
        for row in rows {
            let key = [row.environment, row.integration, row.sync]
            var entry = bySync[key] ?? ActiveRuns(environment: row.environment, integration: row.integration, sync: row.sync)
            if row.status == RunStatus.queued.rawValue { entry.queued += row.count } else { entry.running += row.count }
            bySync[key] = entry
        }
        return bySync.values.sorted { ($0.environment, $0.integration, $0.sync) < ($1.environment, $1.integration, $1.sync) }
    }
}
