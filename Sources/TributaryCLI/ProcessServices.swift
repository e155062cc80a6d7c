import Logging
import ServiceLifecycle
import TributaryCore
import TributaryEngine
import TributaryServer
import TributaryStore

/// The long-lived parts of a Tributary process for one role, built the same way by `serve` and
/// `demo`: one outbound HTTP client and provider access (sync functions and `/proxy` call
/// providers through it), for role `api`/`all` the HTTP API, and for role `worker`/`all` the
/// webhook delivery service, the record purger, the scheduler, the provider webhook worker, the async
/// action worker and the worker. Synchronous actions run in the API process.
///
/// The group stops services in reverse order, one after the other, so the order is chosen for the
/// shutdown: the worker is last — it is the first to stop, and drains and re-queues its runs within
/// `drain_seconds` while everything it needs (the store, outbound HTTP) still runs; then the provider
/// webhook worker, the scheduler, the purger, deliveries, the queue signal listener (PostgreSQL), the
/// API, outbound HTTP.
struct ProcessServices {
    /// In start order; the service group stops them in reverse.
    var services: [any Service]
    var queue: RunQueue
    /// The longest a graceful shutdown may take before every service is cancelled: the worker's drain,
    /// the webhook worker's (at most 5 s) and a margin.
    var shutdownBudget: Duration

    init(role: ServeCommand.Role, config: TributaryConfig, store: any Store, cipher: CredentialCipher, functions: SyncFunctionRegistry,
        tracer: TributaryTracer = .disabled, logger: Logger
    ) throws {
        let scheduling = config.scheduler
        let http = OutboundHTTP()
        let export = MetricsExport()
        let metrics = export.metrics
        let providers = ProviderAccess(config: config, store: store, cipher: cipher, http: http, metrics: metrics, tracer: tracer, logger: logger)
        services = [http]
        var worker: RunCoordinator? = nil
        var webhookWorker: ProviderWebhookWorker? = nil
        var deliveryService: WebhookDeliveryService? = nil
        var purger: RecordPurger? = nil
        var scheduler: Scheduler? = nil
        var workerServices: [any Service] = []
        let actions = ActionExecutor(store: store, config: config, functions: functions, providers: providers, logger: logger)
        var actionWorker: ActionWorker? = nil
        if role != .api {
            let executor = SyncExecutor(
                store: store, functions: functions, providers: providers, webhooks: SyncWebhookPlanner(config: config), logger: logger,
                leaseSeconds: Int64(scheduling.leaseSeconds), metrics: metrics, tracer: tracer)
            let coordinator = RunCoordinator(
                executor: executor, config: config,
                limits: RunCoordinator.Limits(
                    maxConcurrentRuns: scheduling.maxConcurrentRuns, maxRunsPerConnection: scheduling.maxRunsPerConnection,
                    drain: .seconds(scheduling.drainSeconds), retry: scheduling.retry, poll: .milliseconds(Int(scheduling.tickSeconds * 1000))),
                logger: logger)
            worker = coordinator
            let webhooks = ProviderWebhookWorker(
                executor: executor, config: config, maxConcurrent: max(1, scheduling.maxConcurrentRuns / 4),
                poll: .milliseconds(Int(scheduling.tickSeconds * 1000)), drain: .seconds(min(5, scheduling.drainSeconds)), logger: logger)
            let deliveries = WebhookDeliveryService(store: store, config: config, http: http, logger: logger, metrics: metrics)
            let purge = RecordPurger(store: store, logger: logger)
            webhookWorker = webhooks
            deliveryService = deliveries
            purger = purge
            let history = HistoryCleaner(store: store, retention: config.retention, logger: logger)
            let asyncActions = ActionWorker(
                executor: actions, maxConcurrent: max(1, scheduling.maxConcurrentRuns / 4), maxExpiries: scheduling.maxRunAttempts,
                poll: .milliseconds(Int(scheduling.tickSeconds * 1000)), drain: .seconds(min(5, scheduling.drainSeconds)), logger: logger)
            actionWorker = asyncActions
            let planner = Scheduler(config: config, store: store, worker: coordinator, metrics: metrics, logger: logger)
            scheduler = planner
            workerServices = [history, deliveries, purge, planner, webhooks, asyncActions, coordinator]
            if let signals = store as? any QueueSignals {
                // Triggers and new variants made through other (API) processes wake this one at once.
                // First, so it stops last: a listener reconnecting to a database that does not answer
                // never holds up the worker's drain.
                workerServices.insert(QueueSignalListener(signals: signals, worker: coordinator, scheduler: planner, logger: logger), at: 0)
            }
        }
        queue = RunQueue(
            store: store, worker: worker, scheduler: scheduler, purger: purger, maxVariantsPerCall: config.server.maxVariantsPerRequest)
        if role != .worker {
            let api = API(
                config: config, runs: queue, cipher: cipher, providers: providers, webhookWorker: webhookWorker, deliveryService: deliveryService,
                functions: functions, actions: actions, actionWorker: actionWorker, metricsExport: export)
            services.append(try buildApplication(api: api, logger: logger))
        }
        if config.metrics.enabled, config.metrics.port != nil {
            services.append(buildMetricsApplication(export: export, config: config, store: store, logger: logger))
        }
        services += workerServices
        shutdownBudget = .seconds(scheduling.drainSeconds + 10)
    }
}

extension ServiceGroup {
    /// Runs the group; a port already taken becomes an error that says which option moves it.
    func runExplainingPorts(_ ports: [(port: Int, option: String)]) async throws {
        do {
            try await run()
        } catch let error where "\(error)".contains("Address already in use") {
            let list = ports.map { "\($0.port) (\($0.option))" }.joined(separator: " or ")
            throw CLIError("Cannot listen: port \(list) is already in use — stop the other process or choose another port.")
        }
    }
}
