import CoreMetrics
import Hummingbird
import Logging
import Prometheus
import Synchronization
import TributaryCore
import TributaryEngine
import TributaryStore

/// The process's Prometheus registry: the engine's figures (``TributaryMetrics``, through
/// swift-metrics and swift-prometheus's factory) and, read on each scrape, the store's active runs
/// and webhook backlog and this process's memory and CPU. One per process, handed to the engine's
/// services and to `GET /metrics`; tests make their own, so nothing is global.
public final class MetricsExport: Sendable {
    public let registry: PrometheusCollectorRegistry
    /// What the engine's services report into.
    public let metrics: TributaryMetrics
    private let scrape = Mutex(ScrapeState())

    /// How long one reading of the store serves scrapes: several scrapers (or a client looping on the
    /// endpoint) cost the database one pair of queries per interval.
    let snapshotInterval: Duration

    private func snapshot(_ store: any OperationsStore) async -> OperationsSnapshot? {
        let now = ContinuousClock.now
        if let (at, cached) = scrape.withLock({ $0.lastSnapshot }), now - at < snapshotInterval { return cached }
        guard let fresh = try? await store.operationsSnapshot() else { return nil }
        scrape.withLock { $0.lastSnapshot = (now, fresh) }
        return fresh
    }

    private struct ScrapeState {
        var lastSnapshot: (ContinuousClock.Instant, OperationsSnapshot)? = nil
        /// Label sets of the active-run gauges set so far: a sync whose runs all ended goes back to 0.
        var activeRuns: Set<[String]> = []
        var outboxEnvironments: Set<String> = []
        var cpuSeconds: Double = 0
    }

    /// - Parameter snapshotInterval: how long one reading of the store's active runs and backlog serves
    ///   scrapes (2 s; tests read it fresh each time).
    public init(snapshotInterval: Duration = .seconds(2)) {
        self.snapshotInterval = snapshotInterval
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        let seconds: ([Double]) -> [Duration] = { $0.map { Duration.microseconds(Int64(($0 * 1_000_000).rounded())) } }
        factory.durationHistogramBuckets = [
            TributaryMetrics.Name.runDuration: seconds([0.1, 0.5, 1, 5, 15, 30, 60, 300, 900, 1800, 3600, 10_800]),
            TributaryMetrics.Name.scheduleLag: seconds([0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300]),
            TributaryMetrics.Name.queueWait: seconds([0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800]),
            TributaryMetrics.Name.providerDuration: seconds([0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]),
            TributaryMetrics.Name.storeWrite: seconds([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5]),
        ]
        self.registry = registry
        self.metrics = TributaryMetrics(factory: factory)
        gauge("process_start_time", "seconds", help: "Start time of the process since the Unix epoch, in seconds.")
            .set(to: Timestamp.now().secondsSince1970 - ProcessStats.uptimeSeconds())
    }

    /// The Prometheus text format of every figure, the scrape-time ones read now. A store that cannot
    /// be read sets `tributary_store_up` to 0 and keeps the last figures it gave.
    public func render(store: any OperationsStore) async -> [UInt8] {
        let snapshot = await snapshot(store)
        gauge("tributary_store", "up", help: "1 when the last scrape could read the store, else 0.").set(to: snapshot == nil ? 0 : 1)
        if let snapshot { record(snapshot, now: Timestamp.now()) }
        recordProcess()
        return registry.emitToBuffer()
    }

    func record(_ snapshot: OperationsSnapshot, now: Timestamp) {
        scrape.withLock { state in
            var seen: Set<[String]> = []
            for row in snapshot.runs {
                seen.insert([row.environment, row.integration, row.sync])
                setActiveRuns(row.environment, row.integration, row.sync, queued: row.queued, running: row.running)
            }
            for gone in state.activeRuns.subtracting(seen) { setActiveRuns(gone[0], gone[1], gone[2], queued: 0, running: 0) }
            state.activeRuns.formUnion(seen)
            var environments: Set<String> = []
            for outbox in snapshot.outbox {
                environments.insert(outbox.environment)
                let age = outbox.oldestPendingAt.map { max(0, Double(now.microseconds - $0.microseconds) / 1e6) } ?? 0
                setOutbox(outbox.environment, pending: outbox.pending, oldestSeconds: age)
            }
            for gone in state.outboxEnvironments.subtracting(environments) { setOutbox(gone, pending: 0, oldestSeconds: 0) }
            state.outboxEnvironments.formUnion(environments)
        }
    }

    private func setActiveRuns(_ environment: String, _ integration: String, _ sync: String, queued: Int, running: Int) {
        for (state, count) in [("queued", queued), ("running", running)] {
            gauge(
                "tributary_runs", "active", labels: [("environment", environment), ("integration", integration), ("sync", sync), ("state", state)],
                help: "Runs queued or running now, across every process on the store."
            ).set(to: Double(count))
        }
    }

    private func setOutbox(_ environment: String, pending: Int, oldestSeconds: Double) {
        gauge("tributary_webhook_outbox", "pending", labels: [("environment", environment)], help: "Webhooks to the app not yet delivered or given up.")
            .set(to: Double(pending))
        gauge(
            "tributary_webhook_outbox_oldest", "seconds", labels: [("environment", environment)],
            help: "Age of the oldest pending webhook to the app, in seconds (0 when none waits)."
        ).set(to: oldestSeconds)
    }

    private func recordProcess() {
        gauge("process_resident_memory", "bytes", help: "Resident memory size in bytes.").set(to: ProcessStats.residentBytes())
        gauge("process_open", "fds", help: "Number of open file descriptors.").set(to: Double(ProcessStats.openFileDescriptors()))
        let cpu = ProcessStats.cpuSeconds()
        let delta = scrape.withLock { state -> Double in
            let delta = max(0, cpu - state.cpuSeconds)
            state.cpuSeconds = max(cpu, state.cpuSeconds)
            return delta
        }
        registry.makeCounter(
            descriptor: MetricNameDescriptor(metricName: "process_cpu_seconds", unitName: "total", helpText: "Total user and system CPU time spent in seconds.")
        ).increment(by: delta)
    }

    /// A gauge read on each scrape, with its `# HELP` line.
    private func gauge(_ name: String, _ unit: String, labels: [(String, String)] = [], help: String) -> Prometheus.Gauge {
        registry.makeGauge(descriptor: MetricNameDescriptor(metricName: name, unitName: unit, helpText: help), labels: labels)
    }

    /// `GET /metrics`: behind `metrics.token` (a Bearer token, compared in constant time) when set.
    func respond(_ request: Request, config: MetricsConfig, store: any OperationsStore) async throws -> Response {
        if let token = config.token {
            let presented = request.headers[.authorization].flatMap { header -> String? in
                let parts = header.split(separator: " ", maxSplits: 1)
                return parts.count == 2 && parts[0].lowercased() == "bearer" ? String(parts[1]) : nil
            }
            guard let presented, AuthMiddleware.constantTimeEqual(Array(presented.utf8), Array(token.value.utf8)) else {
                throw APIError(.unauthorized, "unauthorized", "GET /metrics needs 'Authorization: Bearer <metrics.token>'.")
            }
        }
        let body = await render(store: store)
        return Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8", .cacheControl: "no-store"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }
}

/// A listener of its own for `/metrics` (`metrics.port`): for a worker process, which has no API port,
/// or to keep the figures off the public API port.
public func buildMetricsApplication(
    export: MetricsExport, config: TributaryConfig, store: any OperationsStore, logger: Logger, port: Int? = nil,
    onListening: @escaping @Sendable (Int) async -> Void = { _ in }
) -> some ApplicationProtocol {
    let router = Router(context: APIRequestContext.self)
    router.add(middleware: ErrorMiddleware(routes: RouteTable([(.get, "/metrics")])))
    let settings = config.metrics
    router.get("/metrics") { request, _ in try await export.respond(request, config: settings, store: store) }
    return Application(
        router: router,
        configuration: ApplicationConfiguration(address: .hostname(config.server.host, port: port ?? settings.port ?? 9464), serverName: "Tributary"),
        onServerRunning: { channel in await onListening(channel.localAddress?.port ?? 0) },
        logger: logger)
}
