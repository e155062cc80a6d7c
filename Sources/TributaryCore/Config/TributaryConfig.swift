/// The whole of `tributary.yaml`, validated. See ``ConfigLoader`` for the file format.
public struct TributaryConfig: Sendable {
    /// Where the embedded SQLite database lives.
    public var database: DatabaseConfig
    /// The HTTP server.
    public var server: ServerConfig
    /// Scheduling and run concurrency.
    public var scheduler: SchedulerConfig
    /// How provider calls behave (timeouts, retries, response size).
    public var outbound: OutboundConfig
    /// How webhooks to the app are delivered (timeouts, backoff, giving up).
    public var webhookDelivery: WebhookDeliveryConfig
    /// How long finished history is kept (runs and their logs, webhook deliveries, provider webhook tasks).
    public var retention: RetentionConfig = RetentionConfig()
    /// `GET /metrics` (`metrics:`).
    public var metrics: MetricsConfig = MetricsConfig()
    /// OpenTelemetry tracing (`tracing:`), off by default.
    public var tracing: TracingConfig = TracingConfig()
    /// Environments in file order.
    public var environments: [EnvironmentConfig]
    /// Integrations in file order.
    public var integrations: [IntegrationConfig]

    public init(
        database: DatabaseConfig = DatabaseConfig(), server: ServerConfig = ServerConfig(), scheduler: SchedulerConfig = SchedulerConfig(),
        outbound: OutboundConfig = OutboundConfig(), webhookDelivery: WebhookDeliveryConfig = WebhookDeliveryConfig(), environments: [EnvironmentConfig],
        integrations: [IntegrationConfig]
    ) {
        self.outbound = outbound
        self.webhookDelivery = webhookDelivery
        self.database = database
        self.server = server
        self.scheduler = scheduler
        self.environments = environments
        self.integrations = integrations
    }

    public func environment(named name: String) -> EnvironmentConfig? {
        environments.first { $0.name == name }
    }

    /// The integration `key` as seen from `environment` (nil if it does not exist there).
    public func integration(_ key: String, in environment: String) -> IntegrationConfig? {
        integrations.first { $0.providerConfigKey == key && $0.isAvailable(in: environment) }
    }

    /// Integrations offered in `environment`.
    /// The configured sync a variant belongs to, or nil when its integration or sync left the configuration.
    public func sync(for variant: VariantRef) -> SyncConfig? {
        integration(variant.connection.providerConfigKey, in: variant.connection.environment)?.sync(named: variant.syncName)
    }

    public func integrations(in environment: String) -> [IntegrationConfig] {
        integrations.filter { $0.isAvailable(in: environment) }
    }
}

/// Storage settings: the embedded SQLite file (the default), or a PostgreSQL database shared by
/// several API and worker processes (`url`).
public struct DatabaseConfig: Sendable, Hashable {
    /// Path of the SQLite file (relative paths are relative to the working directory).
    public var path: String
    /// The PostgreSQL database (`database.url`); when set, it is used instead of the SQLite file.
    public var url: PostgresURL?
    /// Connections this process opens to PostgreSQL at most (`database.max_connections`).
    public var maxConnections: Int

    public init(path: String = "tributary.sqlite", url: PostgresURL? = nil, maxConnections: Int = 10) {
        self.path = path
        self.url = url
        self.maxConnections = maxConnections
    }
}

/// HTTP server settings.
public struct ServerConfig: Sendable, Hashable {
    /// Address to listen on.
    public var host: String
    /// Port to listen on (Nango's default is 3003).
    public var port: Int
    /// Variants one sync may have on one connection, `base` included.
    public var maxVariantsPerSync: Int
    /// Largest accepted request body.
    public var maxBodyBytes: Int
    /// Variants one API call may change at once (trigger, reset, pause, start): a call over more is
    /// refused with `too_many_variants`, never split — multi-variant calls are all or nothing.
    public var maxVariantsPerRequest: Int
    /// `server.public_url`: where apps and providers reach this server (`https://sync.example.com`),
    /// for the URLs it hands out — an integration's provider webhook URL — never taken from a
    /// request's `Host` header. Nil: such URLs are not given (null).
    public var publicURL: String? = nil

    public init(
        host: String = "127.0.0.1", port: Int = 3003, maxVariantsPerSync: Int = 100, maxBodyBytes: Int = 1_048_576, maxVariantsPerRequest: Int = 1000
    ) {
        self.maxVariantsPerRequest = maxVariantsPerRequest
        self.host = host
        self.port = port
        self.maxVariantsPerSync = maxVariantsPerSync
        self.maxBodyBytes = maxBodyBytes
    }
}

/// Scheduling and run concurrency.
public struct SchedulerConfig: Sendable, Hashable {
    /// Runs active at once in this (worker) process.
    public var maxConcurrentRuns: Int
    /// Runs active at once for one connection across all workers (its variants queue fairly behind each other).
    public var maxRunsPerConnection: Int
    /// How often the scheduler looks for due variants and expired leases, and a worker for queued runs, in seconds.
    public var tickSeconds: Double
    /// On shutdown, seconds running runs may take to finish before they are cancelled.
    public var drainSeconds: Int
    /// Retries after temporary failures.
    public var retry: RetryPolicy
    /// How long a run's lease lasts without a heartbeat; after a crash the variant resumes once it runs out.
    public var leaseSeconds: Int
    /// Attempts a run gets when its process keeps stopping under it (lease expiry); then it is given
    /// up and its variant runs again after `retry.maxSeconds`.
    public var maxRunAttempts: Int

    public init(
        maxConcurrentRuns: Int = 16, maxRunsPerConnection: Int = 4, tickSeconds: Double = 1, drainSeconds: Int = 30,
        retry: RetryPolicy = RetryPolicy(), leaseSeconds: Int = 120, maxRunAttempts: Int = 5
    ) {
        self.maxRunAttempts = maxRunAttempts
        self.retry = retry
        self.leaseSeconds = leaseSeconds
        self.maxConcurrentRuns = maxConcurrentRuns
        self.maxRunsPerConnection = maxRunsPerConnection
        self.tickSeconds = tickSeconds
        self.drainSeconds = drainSeconds
    }
}

/// OpenTelemetry tracing (`tracing:`): a span per run with child spans for provider calls and store
/// writes, exported over OTLP/HTTP by the `tributary` binary. Off by default. The standard `OTEL_*`
/// environment variables (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_HEADERS`,
/// `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`, …) override these settings.
public struct TracingConfig: Sendable, Hashable {
    /// How spans travel to the collector.
    public enum WireProtocol: String, Sendable, Hashable, CaseIterable {
        case httpProtobuf = "http/protobuf"
        case httpJSON = "http/json"
    }

    /// `tracing.enabled` (default false).
    public var enabled: Bool
    /// The OTLP/HTTP traces endpoint (`tracing.endpoint`); nil: `http://localhost:4318/v1/traces`.
    public var endpoint: String?
    /// `tracing.protocol`, http/protobuf by default.
    public var wireProtocol: WireProtocol
    /// The `service.name` resource attribute (`tracing.service_name`, default `tributary`).
    public var serviceName: String
    /// The share of traces kept, 0 to 1 (`tracing.sample_ratio`, default 1): a run's spans are kept or
    /// dropped together.
    public var sampleRatio: Double

    public init(enabled: Bool = false, endpoint: String? = nil, wireProtocol: WireProtocol = .httpProtobuf, serviceName: String = "tributary", sampleRatio: Double = 1) {
        self.enabled = enabled
        self.endpoint = endpoint
        self.wireProtocol = wireProtocol
        self.serviceName = serviceName
        self.sampleRatio = sampleRatio
    }

    /// Whether a process with this configuration and `environment` exports spans: when
    /// `tracing.enabled` is true, or when `OTEL_TRACES_EXPORTER` is `otlp` (OpenTelemetry's own switch);
    /// never when `OTEL_SDK_DISABLED` is `true` or `OTEL_TRACES_EXPORTER` is `none`.
    public func isOn(environment: [String: String]) -> Bool {
        if environment["OTEL_SDK_DISABLED"]?.lowercased() == "true" { return false }
        switch environment["OTEL_TRACES_EXPORTER"]?.lowercased() {
        case "none": return false
        case "otlp": return true
        default: return enabled
        }
    }
}

/// The Prometheus endpoint, `GET /metrics`.
public struct MetricsConfig: Sendable, Hashable {
    /// Whether the endpoint is served at all (`metrics.enabled`, on by default).
    public var enabled: Bool
    /// A Bearer token scrapers must send (`metrics.token`); nil: the endpoint is open to whoever reaches the port.
    public var token: Secret?
    /// Serve `/metrics` on this port of `server.host` instead of the API port (`metrics.port`) — also
    /// for a `--role worker` process, which has no API port.
    public var port: Int?

    public init(enabled: Bool = true, token: Secret? = nil, port: Int? = nil) {
        self.enabled = enabled
        self.token = token
        self.port = port
    }
}

/// How long finished history is kept before the worker's cleanup removes it (the `retention`
/// section). Active runs, open deliveries and open webhook tasks are never removed, nor the latest
/// run of a variant.
public struct RetentionConfig: Sendable, Hashable {
    /// Finished runs and their log lines.
    public var runsDays: Int
    /// Delivered and failed webhooks to the app.
    public var webhookDeliveriesDays: Int
    /// Handled (or given-up) provider webhook tasks.
    public var webhookTasksDays: Int

    public init(runsDays: Int = 30, webhookDeliveriesDays: Int = 30, webhookTasksDays: Int = 30) {
        self.runsDays = max(1, runsDays)
        self.webhookDeliveriesDays = max(1, webhookDeliveriesDays)
        self.webhookTasksDays = max(1, webhookTasksDays)
    }
}

/// Provider calls (sync functions, declarative syncs and `/proxy`): the `outbound` section.
public struct OutboundConfig: Sendable, Hashable {
    /// One attempt, from sending to the last byte read, in seconds.
    public var timeoutSeconds: Int
    /// Attempts after the first on network errors, 5xx and 429 (calls from syncs; `/proxy` takes
    /// its `Retries` header, default 0, as Nango does).
    public var retries: Int
    /// The longest `Retry-After` waited for within a call; a longer one fails the call as temporary.
    public var maxRetryAfterSeconds: Int
    /// Responses larger than this fail the call.
    public var maxResponseBytes: Int
    /// A page of a paginated listing larger than this fails the run: what one run holds in memory is
    /// a small multiple of it (the page being written, the one fetched ahead, their parsed records).
    public var maxPageBytes: Int

    public init(
        timeoutSeconds: Int = 30, retries: Int = 3, maxRetryAfterSeconds: Int = 60, maxResponseBytes: Int = 50 * 1024 * 1024,
        maxPageBytes: Int = 16 * 1024 * 1024
    ) {
        self.timeoutSeconds = timeoutSeconds
        self.retries = retries
        self.maxRetryAfterSeconds = maxRetryAfterSeconds
        self.maxResponseBytes = maxResponseBytes
        self.maxPageBytes = maxPageBytes
    }
}

/// A secret value (API key, signing key). Its description never shows the value.
public struct Secret: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    public let value: String
    public init(_ value: String) { self.value = value }
    public var description: String { "<secret>" }
    public var debugDescription: String { "<secret>" }
}

/// An isolated space with its own secret keys, connections and records.
public struct EnvironmentConfig: Sendable {
    public var name: String
    /// Keys accepted as `Authorization: Bearer <key>` for this environment (several allow rotation).
    public var secretKeys: [Secret]
    /// Where sync webhooks go and how they are signed.
    public var webhooks: EnvironmentWebhooks
    /// `expose_credentials` (default true): `GET /connections/{id}` returns the connection's
    /// credentials to the secret-key holder, as Nango does (the app calls the provider itself with
    /// `getToken`). Off: it returns `credentials: {}`, and asking it to refresh or include the refresh
    /// token answers 403.
    public var exposesCredentials = true
    /// `variables`: Nango's environment variables, handed to the app by `GET /environment-variables`
    /// (in order; values print as `<secret>`).
    public var variables: [(name: String, value: Secret)] = []
    /// `connect`: where the Connect page ends, and how long its sessions last.
    public var connect = EnvironmentConnect()

    public init(name: String, secretKeys: [Secret], webhooks: EnvironmentWebhooks = EnvironmentWebhooks()) {
        self.name = name
        self.secretKeys = secretKeys
        self.webhooks = webhooks
    }
}

/// How the provider authenticates calls made with a connection's credentials.
public enum AuthScheme: Sendable, Hashable {
    case none
    /// An API key sent in a header (`header`) or a query parameter (`queryParameter`).
    case apiKey(header: String?, queryParameter: String?)
    case bearer
    case basic
    /// OAuth 2 with refresh tokens, refreshed at `tokenURL` as the integration's client.
    case oauth2(tokenURL: String, clientID: String, clientSecret: Secret)
    /// OAuth 2 client-credentials grant at `tokenURL`.
    case oauth2ClientCredentials(tokenURL: String, scopes: [String])

    /// The name used in `tributary.yaml` (`type:`).
    public var typeName: String {
        switch self {
        case .none: "none"
        case .apiKey: "api_key"
        case .bearer: "bearer"
        case .basic: "basic"
        case .oauth2: "oauth2"
        case .oauth2ClientCredentials: "oauth2_client_credentials"
        }
    }

    /// The query parameters that carry credentials (an API key sent as `?api_key=…`): removed from
    /// every URL kept, shown or logged.
    public var credentialQueryNames: Set<String> {
        if case .apiKey(_, let parameter?) = self { [parameter] } else { [] }
    }
}

/// A configured provider, identified by its `provider_config_key`.
public struct IntegrationConfig: Sendable {
    public var providerConfigKey: String
    /// Free-form provider name (e.g. `shopify`); defaults to the key.
    public var provider: String
    public var baseURL: String?
    public var auth: AuthScheme
    /// At most this many provider calls per second for each connection (nil: no limit).
    public var rateLimitPerSecond: Double?
    /// The environments that offer this integration; `nil` means all.
    public var environments: [String]?
    public var syncs: [SyncConfig]
    /// What apps can run through a connection (`POST /action/trigger`).
    public var actions: [ActionConfig] = []
    /// How webhooks from the provider are checked and routed to connections (nil: not accepted).
    public var webhooks: ProviderWebhookConfig?
    /// How end users authorize an `oauth2` integration on the Connect page (nil: its connections are
    /// only imported with tokens the app already holds).
    public var oauthAuthorization: OAuthAuthorization?
    /// The request that checks credentials typed on the Connect page (API key, basic) before they are saved.
    public var verification: ConnectVerification?
    /// `on_events`: the registered ``ConnectionEventFunction``s run for each event, in order.
    public var onEvents: [ConnectionEvent: [String]] = [:]

    /// Whether end users can connect this integration on the Connect page: a form for an API key or a
    /// user name and password, or the OAuth flow when it is configured.
    public var isConnectable: Bool {
        switch auth {
        case .apiKey, .bearer, .basic: true
        case .oauth2: oauthAuthorization != nil
        case .none, .oauth2ClientCredentials: false
        }
    }

    public init(
        providerConfigKey: String, provider: String? = nil, baseURL: String? = nil, auth: AuthScheme = .none,
        environments: [String]? = nil, syncs: [SyncConfig]
    ) {
        self.providerConfigKey = providerConfigKey
        self.provider = provider ?? providerConfigKey
        self.baseURL = baseURL
        self.auth = auth
        self.environments = environments
        self.syncs = syncs
    }

    public func isAvailable(in environment: String) -> Bool {
        environments?.contains(environment) ?? true
    }

    public func sync(named name: String) -> SyncConfig? {
        syncs.first { $0.name == name }
    }

    public func action(named name: String) -> ActionConfig? {
        actions.first { $0.name == name }
    }
}

/// A sync: which function runs, what it writes and how often.
public struct SyncConfig: Sendable, Hashable {
    public var name: String
    /// The registered ``SyncFunction`` name (defaults to the sync name).
    public var function: String
    public var models: [String]
    public var frequency: Frequency
    /// Jitter and what a slot that comes during a run does (`jitter_seconds`, `overlap`).
    public var schedule = SchedulePolicy()
    public var syncType: SyncType
    /// Mark records not saved by a successful full run as deleted.
    public var trackDeletes: Bool
    /// New variants' schedules start `STARTED` (true) or `PAUSED` (false).
    public var autoStart: Bool
    /// Provider webhook types this sync's webhook handler receives (`*`: every type).
    public var webhookSubscriptions: [String]
    /// Handle provider webhooks declaratively (save or delete the payload's records) instead of
    /// with the function's `onWebhook`.
    public var webhookHandler: DeclarativeWebhookHandler?
    public var description: String?

    /// Set for a sync described in the configuration (endpoint, pagination, mapping) instead of a
    /// Swift function.
    public var declarative: DeclarativeSpec?

    /// Whether its runs detect deletions: a full refresh with `track_deletes`.
    public var detectsDeletes: Bool { syncType == .full && trackDeletes }

    /// Whether a provider webhook of `type` goes to this sync's handler (Nango's rule: the type is
    /// one of the subscriptions, or a subscription is `*`).
    public func subscribes(to type: String?) -> Bool {
        webhookSubscriptions.contains { $0 == "*" || $0 == type }
    }

    public init(
        name: String, function: String? = nil, models: [String], frequency: Frequency, syncType: SyncType = .full,
        trackDeletes: Bool = false, autoStart: Bool = true, webhookSubscriptions: [String] = [], description: String? = nil
    ) {
        self.name = name
        self.function = function ?? name
        self.models = models
        self.frequency = frequency
        self.syncType = syncType
        self.trackDeletes = trackDeletes
        self.autoStart = autoStart
        self.webhookSubscriptions = webhookSubscriptions
        self.description = description
    }
}
