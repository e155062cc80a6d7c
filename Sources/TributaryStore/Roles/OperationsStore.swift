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

/// The runs an activity page lists: one environment's, newest first, narrowed by the filters.
public struct ActivityQuery: Sendable, Hashable {
    public static let maximumLimit = 200

    public var environment: String
    public var status: RunStatus?
    public var integration: String?
    public var sync: String?
    public var connectionId: String?
    /// Runs queued at or after this time.
    public var since: Timestamp?
    /// Runs queued before this time.
    public var until: Timestamp?
    /// Paging: runs older than this run id.
    public var beforeId: Int64?
    public var limit: Int

    public init(
        environment: String, status: RunStatus? = nil, integration: String? = nil, sync: String? = nil, connectionId: String? = nil,
        since: Timestamp? = nil, until: Timestamp? = nil, beforeId: Int64? = nil, limit: Int = 50
    ) {
        self.environment = environment
        self.status = status
        self.integration = integration
        self.sync = sync
        self.connectionId = connectionId
        self.since = since
        self.until = until
        self.beforeId = beforeId
        self.limit = min(max(1, limit), Self.maximumLimit)
    }
}

/// Runs that ended in one hour (by their end), and how many of them failed.
public struct HourlyRuns: Sendable, Hashable {
    /// Hours since 1970-01-01T00:00Z.
    public var hour: Int64
    public var finished: Int
    public var failed: Int

    public init(hour: Int64, finished: Int, failed: Int) {
        self.hour = hour
        self.finished = finished
        self.failed = failed
    }
}

/// What the webhook outbox's backlog over time is computed from: the deliveries pending now, and
/// how many were created and how many ended (delivered or given up) in each hour since a time.
public struct OutboxFlow: Sendable, Hashable {
    public var pendingNow: Int
    /// Hours since the epoch → deliveries created in that hour.
    public var createdPerHour: [Int64: Int]
    /// Hours since the epoch → deliveries that ended in that hour.
    public var endedPerHour: [Int64: Int]

    public init(pendingNow: Int, createdPerHour: [Int64: Int], endedPerHour: [Int64: Int]) {
        self.pendingNow = pendingNow
        self.createdPerHour = createdPerHour
        self.endedPerHour = endedPerHour
    }

    /// The backlog at the end of each of `hours` (ascending), counted back from now: pending at the end
    /// of hour h = pending now − created after h + ended after h. A delivery retried by hand counts as
    /// pending since it was created.
    public func backlog(atEndOf hours: [Int64]) -> [Int] {
        hours.map { hour in
            let createdAfter = createdPerHour.filter { $0.key > hour }.values.reduce(0, +)
            let endedAfter = endedPerHour.filter { $0.key > hour }.values.reduce(0, +)
            return max(0, pendingNow - createdAfter + endedAfter)
        }
    }
}

/// What the dashboard's activity page reads across an environment.
public protocol ActivityStore: Sendable {
    /// Runs (provider webhook executions included) newest first.
    func activity(_ query: ActivityQuery) async throws -> [RunRecord]
    /// Runs that finished since `since`, per hour (only hours with runs).
    func runsPerHour(environment: String, since: Timestamp) async throws -> [HourlyRuns]
    /// The outbox's flow since `since`, for its backlog chart.
    func outboxFlow(environment: String, since: Timestamp) async throws -> OutboxFlow
}
