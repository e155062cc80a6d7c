import Hummingbird
import TributaryCore
import TributaryStore

extension API {
    // MARK: Provider webhooks in

    /// `POST /webhook/{environment}/{providerConfigKey}` — a provider's webhook (no secret key).
    ///
    /// Checks the signature (``ProviderWebhookVerifier``: HMAC of the body, Stripe's or Slack's
    /// timestamped scheme, with the environment's secret) unless the integration says `unsigned: true`, finds the connection(s) the
    /// webhook names (body path or header, matched against the connection id, a metadata or a
    /// `connection_config` value), and stores one task per (connection, subscribed sync) for the
    /// **base** variant before answering — an accepted webhook is never lost; a worker runs the
    /// handlers. A webhook that names no known connection, or that no sync subscribes to, is
    /// acknowledged (200) with nothing stored, so the provider does not retry it forever.
    func receiveProviderWebhook(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let environmentName = context.parameters.get("environment") ?? ""
        let key = context.parameters.get("providerConfigKey") ?? ""
        guard let environment = config.environment(named: environmentName) else {
            throw APIError(.notFound, "unknown_environment", "Environment '\(environmentName.prefix(80))' does not exist.")
        }
        let integration = try integration(key, in: environment)
        guard let settings = integration.webhooks else {
            throw APIError(
                .notFound, "webhooks_not_configured",
                "Integration '\(integration.providerConfigKey)' does not accept webhooks (it has no 'webhooks' section in the configuration).")
        }
        let body = Array(try await request.body(upTo: maxBody).readableBytesView)
        do {
            try ProviderWebhookVerifier.verify(
                settings, environment: environment.name, header: { request.header($0) }, body: body, now: Timestamp.now().microseconds / 1_000_000)
        } catch {
            throw APIError(.unauthorized, error.code, error.message)
        }
        let payload: JSONValue
        do {
            payload = try JSONParser.parse(body)
        } catch {
            throw APIError.invalidBody("The webhook body is not valid JSON: \(error.message) (byte \(error.offset)).")
        }
        guard let identifier = Self.read(settings.connection, payload: payload, request: request) else {
            throw APIError(.badRequest, "missing_connection", "The webhook does not name a connection at \(Self.describe(settings.connection)).")
        }
        let type = settings.type.flatMap { Self.read($0, payload: payload, request: request) }
        let connections = try await webhookConnections(identifier, match: settings.match, integration: integration, environment: environment)
        let syncs = integration.syncs.filter { $0.subscribes(to: type) }
        let variants = connections.flatMap { connection in syncs.map { VariantRef(connection: connection, syncName: $0.name) } }
        let tasks = variants.isEmpty ? [] : try await store.enqueueProviderWebhook(for: variants, type: type, payload: body)
        if !tasks.isEmpty { webhookWorker?.wake() }
        context.logger.info(
            "provider webhook received",
            metadata: ["integration": "\(integration.providerConfigKey)", "type": "\(type ?? "")", "connections": "\(connections.count)", "tasks": "\(tasks.count)"])
        return JSONResponse.make(
            [
                "accepted": true,
                "type": type.map(JSONValue.string) ?? .null,
                // No connection ids: whoever sends a webhook learns nothing about which connections exist.
                "syncs": .array(syncs.map { .string($0.name) }),
                "tasks": .number(JSONNumber(tasks.count)),
            ], status: tasks.isEmpty ? .ok : .accepted)
    }

    /// The connections of `integration` whose matched field equals `identifier`.
    private func webhookConnections(_ identifier: String, match: ProviderWebhookConfig.Match, integration: IntegrationConfig, environment: EnvironmentConfig)
        async throws -> [ConnectionRef]
    {
        var filter = ConnectionFilter(environment: environment.name, providerConfigKeys: [integration.providerConfigKey])
        switch match {
        case .connectionId: filter.connectionId = identifier
        case .metadata(let path): filter.fields = [.init(.metadata, path: path, value: identifier)]
        case .connectionConfig(let path): filter.fields = [.init(.connectionConfig, path: path, value: identifier)]
        }
        return try await store.connections(filter).map(\.ref)
    }

    /// A string or number at a body path, or a header's value.
    static func read(_ source: ProviderWebhookConfig.Source, payload: JSONValue, request: Request) -> String? {
        switch source {
        case .header(let name): return request.header(name)
        case .bodyPath(let path):
            switch payload.value(atPath: path) {
            case .string(let s)? where !s.isEmpty: return s
            case .number(let n)?: return n.text
            default: return nil
            }
        }
    }

    static func describe(_ source: ProviderWebhookConfig.Source) -> String {
        switch source {
        case .header(let name): "header \(name)"
        case .bodyPath(let path): "body path '\(path)'"
        }
    }

    // MARK: Webhooks to the app: deliveries

    /// `GET /webhooks/deliveries?status=&provider_config_key=&connection_id=&limit=&before=` — the
    /// environment's sync webhooks with their delivery state, newest first (a Tributary extension).
    func listDeliveries(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let environment = try context.requireEnvironment()
        let query = try QueryReader(request, allowed: ["status", "provider_config_key", "connection_id", "limit", "before"])
        var filter = DeliveryQuery(environment: environment.name, providerConfigKey: try query.optional("provider_config_key"),
                                   connectionId: try query.optional("connection_id"))
        if let text = try query.optional("status") {
            guard let status = DeliveryStatus(rawValue: text) else {
                throw APIError.invalidQuery("status must be one of \(DeliveryStatus.allCases.map(\.rawValue).joined(separator: ", ")).")
            }
            filter.status = status
        }
        if let text = try query.optional("limit") {
            guard let value = Int(text), (1...1000).contains(value) else { throw APIError.invalidQuery("limit must be a whole number from 1 to 1000.") }
            filter.limit = value
        }
        if let text = try query.optional("before") {
            guard let value = Int64(text), value > 0 else { throw APIError.invalidQuery("before must be a delivery id (a positive whole number).") }
            filter.beforeId = value
        }
        let deliveries = try await store.deliveries(filter)
        let next: JSONValue = deliveries.count == filter.limit ? deliveries.last.map { .number(JSONNumber($0.id)) } ?? .null : .null
        return JSONResponse.make(["deliveries": .array(deliveries.map { deliveryJSON($0, withBody: false) }), "next_before": next])
    }

    /// `GET /webhooks/deliveries/{id}` — one delivery with the body it sends.
    func getDelivery(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let environment = try context.requireEnvironment()
        _ = try QueryReader(request, allowed: [])
        let id = try deliveryId(context)
        guard let delivery = try await store.delivery(id, environment: environment.name) else { throw Self.unknownDelivery(context) }
        return JSONResponse.make(deliveryJSON(delivery, withBody: true))
    }

    /// `POST /webhooks/deliveries/{id}/retry` — sends a delivery again (a failed one, or a delivered
    /// one the app lost); its attempts so far are kept.
    func retryDelivery(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let environment = try context.requireEnvironment()
        _ = try QueryReader(request, allowed: [])
        let id = try deliveryId(context)
        guard let delivery = try await store.retryDelivery(id, environment: environment.name, now: Timestamp.now()) else {
            throw Self.unknownDelivery(context)
        }
        deliveryService?.wake()
        return JSONResponse.make(deliveryJSON(delivery, withBody: false))
    }

    private func deliveryId(_ context: APIRequestContext) throws -> Int64 {
        guard let id = context.parameters.get("id", as: Int64.self), id > 0 else { throw Self.unknownDelivery(context) }
        return id
    }

    private static func unknownDelivery(_ context: APIRequestContext) -> APIError {
        APIError(.notFound, "unknown_delivery", "Webhook delivery '\((context.parameters.get("id") ?? "").prefix(40))' does not exist.")
    }

    func deliveryJSON(_ delivery: WebhookDelivery, withBody: Bool) -> JSONValue {
        func time(_ timestamp: Timestamp?) -> JSONValue { timestamp.map { .string($0.iso8601) } ?? .null }
        var object: JSONObject = [
            "id": .number(JSONNumber(delivery.id)),
            "idempotency_key": .string(delivery.idempotencyKey),
            "url": .string(EnvironmentWebhooks.redacted(delivery.url)),
            "status": .string(delivery.status.rawValue),
            "attempts": .number(JSONNumber(delivery.attempts)),
            "last_error": delivery.lastError.map(JSONValue.string) ?? .null,
            "last_status_code": delivery.lastStatusCode.map { .number(JSONNumber($0)) } ?? .null,
            "created_at": time(delivery.createdAt),
            "next_attempt_at": delivery.status == .pending ? time(delivery.nextAttemptAt) : .null,
            "delivered_at": time(delivery.deliveredAt),
            "run_id": delivery.runId.map { .number(JSONNumber($0)) } ?? .null,
            "connection_id": .string(delivery.connectionId),
            "provider_config_key": .string(delivery.providerConfigKey),
            "sync": .string(delivery.syncName),
            "variant": .string(delivery.variant),
            "model": .string(delivery.model),
            "success": .bool(delivery.success),
        ]
        if withBody { object["body"] = (try? JSONParser.parse(delivery.body)) ?? .string(String(decoding: delivery.body, as: UTF8.self)) }
        return .object(object)
    }
}
