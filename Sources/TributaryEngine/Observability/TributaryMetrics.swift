import CoreMetrics
import TributaryCore
import TributaryStore

/// The figures the engine reports through the swift-metrics API, created from one factory (the
/// server's Prometheus registry in `serve`; nothing by default). Every label set is bounded by the
/// configuration — environment, integration, sync, a status — never a connection or a variant, so a
/// store with a million variants exports as many series as one with ten.
///
/// The names, their labels and their meaning are listed in the README's operations section.
public final class TributaryMetrics: Sendable {
    let factory: any MetricsFactory

    /// Reports nothing (tests, `dryrun`).
    public static let disabled = TributaryMetrics(factory: NOOPMetricsHandler.instance)

    public init(factory: any MetricsFactory) {
        self.factory = factory
    }

    /// The metric names, for the exporter's bucket choices and for tests.
    public enum Name {
        public static let runsStarted = "tributary_runs_started_total"
        public static let runsFinished = "tributary_runs_finished_total"
        public static let runDuration = "tributary_run_duration_seconds"
        public static let scheduleLag = "tributary_schedule_lag_seconds"
        public static let queueWait = "tributary_run_queue_wait_seconds"
        public static let records = "tributary_records_total"
        public static let providerRequests = "tributary_provider_requests_total"
        public static let providerDuration = "tributary_provider_request_duration_seconds"
        public static let providerRetries = "tributary_provider_retries_total"
        public static let rateLimitWait = "tributary_provider_rate_limit_wait_seconds_total"
        public static let webhookDeliveries = "tributary_webhook_deliveries_total"
        public static let storeWrite = "tributary_store_write_duration_seconds"
    }

    static func labels(_ variant: VariantRef) -> [(String, String)] {
        [("environment", variant.connection.environment), ("integration", variant.connection.providerConfigKey), ("sync", variant.syncName)]
    }

    static func labels(_ connection: ConnectionRef) -> [(String, String)] {
        [("environment", connection.environment), ("integration", connection.providerConfigKey)]
    }

    // MARK: Runs

    /// A run (or a provider webhook execution) began an attempt; `queuedSeconds` is how long its first
    /// attempt waited in the queue (nil for later attempts and runs started directly).
    func runStarted(_ variant: VariantRef, kind: RunKind, queuedSeconds: Double?) {
        var labels = Self.labels(variant)
        labels.append(("kind", kind == .webhook ? "webhook" : "sync"))
        Counter(label: Name.runsStarted, dimensions: labels, factory: factory).increment()
        if let queuedSeconds {
            Timer(label: Name.queueWait, dimensions: Self.labels(variant), factory: factory).recordSeconds(max(0, queuedSeconds))
        }
    }

    /// A run ended: its status, how long this attempt took, and the records it changed.
    func runFinished(_ run: RunRecord, kind: RunKind, seconds: Double) {
        var labels = Self.labels(run.variant)
        labels.append(("kind", kind == .webhook ? "webhook" : "sync"))
        labels.append(("status", run.status.rawValue))
        Counter(label: Name.runsFinished, dimensions: labels, factory: factory).increment()
        Timer(label: Name.runDuration, dimensions: labels, factory: factory).recordSeconds(max(0, seconds))
        let total = run.results.values.reduce(ModelResult(), +)
        for (change, count) in [("added", total.added), ("updated", total.updated), ("deleted", total.deleted)] where count > 0 {
            Counter(label: Name.records, dimensions: Self.labels(run.variant) + [("change", change)], factory: factory).increment(by: count)
        }
    }

    /// The scheduler queued a variant `seconds` after its slot.
    func scheduled(_ variant: VariantRef, lagSeconds seconds: Double) {
        Timer(label: Name.scheduleLag, dimensions: Self.labels(variant), factory: factory).recordSeconds(max(0, seconds))
    }

    // MARK: Providers

    /// One request to a provider: its status class (`2xx`…`5xx`, or `error` when no answer came).
    func providerRequest(_ connection: ConnectionRef, status: Int?, seconds: Double) {
        let statusClass = status.map { (100...599).contains($0) ? "\($0 / 100)xx" : "other" } ?? "error"
        Counter(label: Name.providerRequests, dimensions: Self.labels(connection) + [("status_class", statusClass)], factory: factory).increment()
        Timer(label: Name.providerDuration, dimensions: Self.labels(connection), factory: factory).recordSeconds(max(0, seconds))
    }

    /// A provider call is tried again: `rate_limited` (429), `server_error` (5xx) or `network`.
    func providerRetry(_ connection: ConnectionRef, reason: String) {
        Counter(label: Name.providerRetries, dimensions: Self.labels(connection) + [("reason", reason)], factory: factory).increment()
    }

    /// Time spent waiting on a rate limit: the provider's (a 429's `Retry-After` or backoff) or the
    /// integration's own `rate_limit_per_second`.
    func rateLimitWait(_ connection: ConnectionRef, source: String, seconds: Double) {
        guard seconds > 0, seconds.isFinite else { return }
        FloatingPointCounter(label: Name.rateLimitWait, dimensions: Self.labels(connection) + [("source", source)], factory: factory).increment(by: seconds)
    }

    // MARK: Webhooks and the store

    /// One delivery attempt to the app: `delivered`, `retrying` or `failed` (given up).
    func webhookDelivery(environment: String, outcome: String) {
        Counter(label: Name.webhookDeliveries, dimensions: [("environment", environment), ("outcome", outcome)], factory: factory).increment()
    }

    /// One of the run's store transactions: `save_records`, `update_records`, `delete_records`,
    /// `checkpoint` or `complete_run`.
    func storeWrite(_ operation: String, seconds: Double) {
        Timer(label: Name.storeWrite, dimensions: [("operation", operation)], factory: factory).recordSeconds(max(0, seconds))
    }

    /// Times `body` as a store write of `operation`.
    func timingStoreWrite<T>(_ operation: String, _ body: () async throws -> T) async rethrows -> T {
        let start = ContinuousClock.now
        defer { storeWrite(operation, seconds: Self.seconds(since: start)) }
        return try await body()
    }

    static func seconds(since start: ContinuousClock.Instant) -> Double {
        seconds(ContinuousClock.now - start)
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}

extension CoreMetrics.Timer {
    func recordSeconds(_ seconds: Double) {
        // Bounded so the conversion cannot trap: a year is longer than any duration measured here.
        let bounded = seconds.isFinite ? min(max(0, seconds), 86_400 * 365) : 0
        recordNanoseconds(Int64(bounded * 1e9))
    }
}
