import Foundation
import HTTPTypes
import Hummingbird
import Logging
import TributaryCore
import TributaryEngine
import TributaryStore

/// What the API handlers work with.
public struct API: Sendable {
    public let config: TributaryConfig
    public let store: any Store
    /// Where triggers and cancels go: the store's run queue, served by the workers.
    public let runs: RunQueue
    public let cipher: CredentialCipher
    /// Calls providers for `/proxy`; nil in a process that has none (the proxy then answers 503).
    public let providers: ProviderAccess?
    /// This process's provider webhook worker, woken when a webhook is stored (nil: another process
    /// runs the handlers; it finds the task on its next poll).
    public let webhookWorker: ProviderWebhookWorker?
    /// This process's webhook delivery service, woken when a delivery is retried.
    public let deliveryService: WebhookDeliveryService?
    /// When the configuration was loaded (integrations' `created_at`).
    let startedAt = Timestamp.now()
    /// The Swift sync functions built in (for their model descriptions in `GET /scripts/config`).
    public let functions: SyncFunctionRegistry?
    /// Runs actions (`POST /action/trigger`); nil: this process runs none (the API answers 503).
    public let actions: ActionExecutor?
    /// This process's async action worker, woken when an async action is queued (nil: another
    /// process's worker finds it on its next poll).
    public let actionWorker: ActionWorker?
    /// The process's Prometheus registry, served at `GET /metrics` on this port unless `metrics.port`
    /// moves it (nil: no `/metrics` here).
    public let metricsExport: MetricsExport?

    public init(
        config: TributaryConfig, runs: RunQueue, cipher: CredentialCipher, providers: ProviderAccess? = nil, webhookWorker: ProviderWebhookWorker? = nil,
        deliveryService: WebhookDeliveryService? = nil, functions: SyncFunctionRegistry? = nil, actions: ActionExecutor? = nil,
        actionWorker: ActionWorker? = nil, metricsExport: MetricsExport? = nil
    ) {
        self.metricsExport = metricsExport
        self.actions = actions
        self.actionWorker = actionWorker
        self.functions = functions
        self.webhookWorker = webhookWorker
        self.deliveryService = deliveryService
        self.config = config
        self.store = runs.store
        self.runs = runs
        self.cipher = cipher
        self.providers = providers
    }

    var maxBody: Int { config.server.maxBodyBytes }

    // MARK: Lookups that answer with the API's errors

    func integration(_ key: String, in environment: EnvironmentConfig) throws -> IntegrationConfig {
        guard let integration = config.integration(key, in: environment.name) else {
            throw APIError(.notFound, "unknown_provider_config", "Integration '\(key.prefix(255))' does not exist in environment '\(environment.name)'.")
        }
        return integration
    }

    func sync(_ name: String, of integration: IntegrationConfig) throws -> SyncConfig {
        guard let sync = integration.sync(named: name) else {
            let known = integration.syncs.map(\.name).joined(separator: ", ")
            throw APIError(.notFound, "unknown_sync", "Integration '\(integration.providerConfigKey)' has no sync '\(name.prefix(255))' (syncs: \(known)).")
        }
        return sync
    }

    func existingConnection(_ ref: ConnectionRef) async throws -> ConnectionRecord {
        guard let connection = try await store.connection(ref) else {
            throw APIError(.notFound, "unknown_connection", "Connection '\(ref.connectionId.prefix(255))' of integration '\(ref.providerConfigKey)' does not exist.")
        }
        return connection
    }

    /// The variant's state; `unknown_sync_variant` (404) when it does not exist.
    @discardableResult
    func existingVariant(_ ref: VariantRef) async throws -> VariantState {
        guard let state = try await store.variantState(ref) else {
            throw APIError(
                .notFound, "unknown_sync_variant",
                "Sync '\(ref.syncName)' has no variant '\(ref.variant.prefix(255))' on connection '\(ref.connection.connectionId)'.")
        }
        return state
    }

    /// The run with id `text` when it belongs to `environment`; `unknown_run` (404) otherwise.
    func existingRun(_ text: String?, in environment: EnvironmentConfig) async throws -> RunRecord {
        guard let text, let id = Int64(text), let run = try await store.run(id), run.variant.connection.environment == environment.name else {
            throw APIError(.notFound, "unknown_run", "Run '\((text ?? "").prefix(40))' does not exist.")
        }
        return run
    }

    /// Checks that some sync of the integration writes `model` (`unknown_model`, 400).
    func requireModel(_ model: String, of integration: IntegrationConfig) throws {
        guard integration.syncs.contains(where: { $0.models.contains(model) }) else {
            throw APIError(.badRequest, "unknown_model", "No sync of integration '\(integration.providerConfigKey)' writes model '\(model.prefix(255))'.")
        }
    }

    /// `provider_config_key` from the body, or the `Provider-Config-Key` header.
    func providerConfigKey(_ body: BodyReader, _ request: Request) throws -> String {
        if let key = try body.optionalString("provider_config_key") { return key }
        if let key = request.header("Provider-Config-Key") { return key }
        throw APIError(.badRequest, "missing_provider_config_key", "provider_config_key is required (in the body or the Provider-Config-Key header).")
    }

    /// The `Connection-Id` and `Provider-Config-Key` headers a call on one connection needs
    /// (records, prune, proxy, actions).
    func connectionHeaders(_ request: Request) throws -> (connectionId: String, providerConfigKey: String) {
        guard let connectionId = request.header("Connection-Id") else { throw APIError.missingHeader("Connection-Id", code: "missing_connection_id") }
        guard let key = request.header("Provider-Config-Key") else {
            throw APIError.missingHeader("Provider-Config-Key", code: "missing_provider_config_key")
        }
        return (connectionId, key)
    }

    /// `connection_id` from the body, or the `Connection-Id` header (optional).
    func connectionId(_ body: BodyReader, _ request: Request) throws -> String? {
        try body.optionalString("connection_id") ?? request.header("Connection-Id")
    }

    /// Resolves `syncs` selections to existing variants of the given connections. An empty selection
    /// means every variant of every sync. Unknown syncs or variants are errors (nothing is changed).
    func resolve(_ selections: [SyncSelection], integration: IntegrationConfig, connections: [ConnectionRef]) async throws
        -> [(VariantState, SyncConfig)]
    {
        for selection in selections { _ = try sync(selection.name, of: integration) }
        var targets: [(VariantState, SyncConfig)] = []
        for connection in connections {
            let variants = try await store.variants(of: connection)
            if selections.isEmpty {
                for state in variants {
                    if let config = integration.sync(named: state.ref.syncName) { targets.append((state, config)) }
                }
                continue
            }
            for selection in selections {
                let found = variants.first { $0.ref.syncName == selection.name && $0.ref.variant == selection.variant }
                if let found {
                    targets.append((found, try sync(selection.name, of: integration)))
                } else if connections.count == 1 {
                    throw APIError(
                        .notFound, "unknown_sync_variant",
                        "Sync '\(selection.name)' has no variant '\(selection.variant)' on connection '\(connection.connectionId)'.")
                }
            }
        }
        if targets.isEmpty, !selections.isEmpty {
            throw APIError(.notFound, "no_syncs_found", "No connection of integration '\(integration.providerConfigKey)' has the requested syncs.")
        }
        return targets
    }

    /// The connections a request targets: the one named, or all of the integration's.
    func targetConnections(_ connectionId: String?, integration: IntegrationConfig, environment: EnvironmentConfig) async throws -> [ConnectionRef] {
        if let connectionId {
            let ref = ConnectionRef(environment: environment.name, providerConfigKey: integration.providerConfigKey, connectionId: connectionId)
            return [try await existingConnection(ref).ref]
        }
        return try await store.connections(ConnectionFilter(environment: environment.name, providerConfigKeys: [integration.providerConfigKey]))
            .map(\.ref)
    }
}

/// One entry of `syncs`: `"name"` (the base variant), `"name::variant"` or `{name, variant}`.
struct SyncSelection: Sendable, Hashable {
    var name: String
    var variant: String

    init(name: String, variant: String) {
        self.name = name
        self.variant = variant
    }

    /// Parses `"name"` or `"name::variant"`.
    init(_ text: some StringProtocol) throws {
        let text = String(text).trimmingCharacters(in: .whitespaces)
        if let range = text.range(of: "::") {
            self.init(name: String(text[..<range.lowerBound]), variant: String(text[range.upperBound...]))
        } else {
            self.init(name: text, variant: Variant.base)
        }
        try validate()
    }

    init(_ value: JSONValue) throws {
        switch value {
        case .string(let s):
            try self.init(s)
        case .object(let o):
            guard o.keys.allSatisfy({ $0 == "name" || $0 == "variant" }), let name = o["name"]?.stringValue,
                let variant = o["variant"]?.stringValue
            else { throw APIError.invalidBody("syncs must be either strings or { name: string, variant: string } objects.") }
            self.init(name: name, variant: variant)
            try validate()
        default:
            throw APIError.invalidBody("syncs must be either strings or { name: string, variant: string } objects.")
        }
    }

    func validate() throws {
        guard Identifier.isValidSyncName(name) else { throw APIError.invalidBody("Sync name '\(name.prefix(80))' is invalid.") }
        guard Identifier.isValidSyncName(variant) else { throw APIError.invalidBody("Variant name '\(variant.prefix(80))' is invalid.") }
    }

    /// The `syncs` field of a body: a list of selections (at most 256).
    static func list(_ body: BodyReader, required: Bool) throws -> [SyncSelection] {
        switch body.object["syncs"] {
        case nil:
            if required { throw APIError.invalidBody("Field 'syncs' is required.") }
            return []
        case .array(let values)?:
            guard values.count <= 256 else { throw APIError.invalidBody("syncs accepts at most 256 entries.") }
            return try values.map { try SyncSelection($0) }
        default:
            throw APIError.invalidBody("Field 'syncs' must be a list.")
        }
    }
}

/// One route of the API, in OpenAPI path syntax (`/sync/{name}/variant/{variant}`).
public struct APIRoute: Sendable {
    public let method: HTTPRequest.Method
    public let path: String
    public let authenticated: Bool
    let handler: @Sendable (Request, APIRequestContext) async throws -> Response
}

extension API {
    /// Every route the server serves. The OpenAPI document is checked against this list.
    public var routes: [APIRoute] {
        func route(_ method: HTTPRequest.Method, _ path: String, auth: Bool = true,
                   _ handler: @escaping @Sendable (Request, APIRequestContext) async throws -> Response) -> APIRoute {
            APIRoute(method: method, path: path, authenticated: auth, handler: handler)
        }
        return [
            route(.get, "/health", auth: false) { _, _ in JSONResponse.make(["result": "ok"]) },
            route(.get, "/openapi.yaml", auth: false) { _, _ in try OpenAPIDocument.response() },
            route(.get, "/integrations") { try await self.listIntegrations($0, $1) },
            route(.get, "/integrations/{uniqueKey}") { try await self.getIntegration($0, $1) },
            route(.get, "/integrations/{uniqueKey}/functions") { try await self.integrationFunctions($0, $1) },
            route(.get, "/scripts/config") { try await self.scriptsConfig($0, $1) },
            route(.get, "/providers") { try await self.listProviders($0, $1) },
            route(.get, "/providers/{provider}") { try await self.getProvider($0, $1) },
            route(.get, "/environment-variables") { try await self.environmentVariables($0, $1) },
            route(.post, "/connections") { try await self.importConnection($0, $1) },
            route(.get, "/connections") { try await self.listConnections($0, $1) },
            route(.get, "/connections/{connectionId}") { try await self.getConnection($0, $1) },
            route(.patch, "/connections/{connectionId}") { try await self.patchConnection($0, $1) },
            route(.delete, "/connections/{connectionId}") { try await self.deleteConnection($0, $1) },
            route(.post, "/connections/metadata") { try await self.changeMetadata($0, $1, merge: false) },
            route(.patch, "/connections/metadata") { try await self.changeMetadata($0, $1, merge: true) },
            route(.post, "/connection/metadata") { try await self.changeMetadata($0, $1, merge: false) },
            route(.post, "/sync/{name}/variant/{variant}") { try await self.createVariant($0, $1) },
            route(.delete, "/sync/{name}/variant/{variant}") { try await self.deleteVariant($0, $1) },
            route(.post, "/sync/trigger") { try await self.trigger($0, $1) },
            route(.post, "/sync/pause") { try await self.setPaused($0, $1, paused: true) },
            route(.post, "/sync/start") { try await self.setPaused($0, $1, paused: false) },
            route(.get, "/sync/status") { try await self.status($0, $1) },
            route(.put, "/sync/update-connection-frequency") { try await self.updateFrequency($0, $1) },
            route(.get, "/sync/runs") { try await self.listRuns($0, $1) },
            route(.get, "/sync/runs/{runId}") { try await self.getRun($0, $1) },
            route(.get, "/records") { try await self.records($0, $1) },
            route(.get, "/connection-events") { try await self.listConnectionEvents($0, $1) },
            route(.post, "/connect/sessions") { try await self.createConnectSession($0, $1) },
            route(.post, "/connect/sessions/reconnect") { try await self.reconnectSession($0, $1) },
            route(.get, "/connect/session", auth: false) { try await self.getConnectSession($0, $1) },
            route(.delete, "/connect/session", auth: false) { try await self.deleteConnectSession($0, $1) },
            route(.post, "/action/trigger") { try await self.triggerAction($0, $1) },
            route(.get, "/action/{id}") { try await self.actionResult($0, $1) },
            route(.patch, "/records/prune") { try await self.pruneRecords($0, $1) },
            route(.post, "/webhook/{environment}/{providerConfigKey}", auth: false) { try await self.receiveProviderWebhook($0, $1) },
            route(.get, "/webhooks/deliveries") { try await self.listDeliveries($0, $1) },
            route(.get, "/webhooks/deliveries/{id}") { try await self.getDelivery($0, $1) },
            route(.post, "/webhooks/deliveries/{id}/retry") { try await self.retryDelivery($0, $1) },
        ] + ProviderRequest.Method.allCases.map { method in
            route(HTTPRequest.Method(rawValue: method.rawValue)!, "/proxy/{anyPath}") { try await self.proxy($0, $1, method: method) }
        }
    }
}
