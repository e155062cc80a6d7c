import Logging
import ServiceLifecycle
import TributaryCore
import TributaryEngine
import TributaryServer
import TributaryStore

/// The long-lived parts of a Tributary process for one role, built the same way by `serve` and
/// `demo`: one outbound HTTP client and provider access (sync functions and `/proxy` call
/// providers through it), and for role `worker`/`all` a worker, the provider webhook worker, the
/// webhook delivery service and the scheduler, for role `api`/`all` the HTTP API.
struct ProcessServices {
    /// In start order; the service group stops them in reverse.
    var services: [any Service]
    var queue: RunQueue

    init(role: ServeCommand.Role, config: TributaryConfig, store: any Store, cipher: CredentialCipher, functions: SyncFunctionRegistry, logger: Logger) throws {
        let scheduling = config.scheduler
        let http = OutboundHTTP()
        let providers = ProviderAccess(config: config, store: store, cipher: cipher, http: http, logger: logger)
        services = [http]
        var worker: RunCoordinator? = nil
        var webhookWorker: ProviderWebhookWorker? = nil
        var deliveryService: WebhookDeliveryService? = nil
        if role != .api {
            let executor = SyncExecutor(
                store: store, functions: functions, providers: providers, webhooks: SyncWebhookPlanner(config: config), logger: logger,
                leaseSeconds: Int64(scheduling.leaseSeconds))
            let coordinator = RunCoordinator(
                executor: executor, config: config,
                limits: RunCoordinator.Limits(
                    maxConcurrentRuns: scheduling.maxConcurrentRuns, maxRunsPerConnection: scheduling.maxRunsPerConnection,
                    drain: .seconds(scheduling.drainSeconds), retry: scheduling.retry, poll: .milliseconds(Int(scheduling.tickSeconds * 1000))),
                logger: logger)
            worker = coordinator
            webhookWorker = ProviderWebhookWorker(
                executor: executor, config: config, maxConcurrent: max(1, scheduling.maxConcurrentRuns / 4),
                poll: .milliseconds(Int(scheduling.tickSeconds * 1000)), logger: logger)
            deliveryService = WebhookDeliveryService(store: store, config: config, http: http, logger: logger)
            services.append(coordinator)
            services.append(webhookWorker!)
            services.append(deliveryService!)
        }
        queue = RunQueue(store: store, worker: worker, cancelTimeout: .seconds(scheduling.cancelTimeoutSeconds))
        if role != .api { services.append(Scheduler(config: config, queue: queue, logger: logger)) }
        if role != .worker {
            let api = API(
                config: config, runs: queue, cipher: cipher, providers: providers, webhookWorker: webhookWorker, deliveryService: deliveryService)
            services.append(try buildApplication(api: api, logger: logger))
        }
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
