import Hummingbird
import TributaryCore

extension API {
    /// `GET /integrations`
    func listIntegrations(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let environment = try context.requireEnvironment()
        _ = try QueryReader(request, allowed: [])
        let data = config.integrations(in: environment.name).map { integrationJSON($0) }
        return JSONResponse.make(["data": .array(data)])
    }

    /// `GET /integrations/{uniqueKey}`
    func getIntegration(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let environment = try context.requireEnvironment()
        _ = try QueryReader(request, allowed: [])
        let key = try context.parameters.require("uniqueKey")
        return JSONResponse.make(["data": integrationJSON(try integration(key, in: environment))])
    }

    func integrationJSON(_ integration: IntegrationConfig) -> JSONValue {
        [
            "unique_key": .string(integration.providerConfigKey),
            "provider": .string(integration.provider),
            "display_name": .string(integration.provider),
            "logo": .null,
            "auth_mode": .string(integration.auth.typeName),
            "forward_webhooks": true,
            "missing_fields": [],
            "created_at": .string(startedAt.iso8601),
            "updated_at": .string(startedAt.iso8601),
            "syncs": .array(
                integration.syncs.map { sync in
                    [
                        "name": .string(sync.name),
                        "models": .array(sync.models.map { .string($0) }),
                        "frequency": .string(sync.frequency.text),
                        "sync_type": .string(sync.syncType.rawValue),
                        "track_deletes": .bool(sync.trackDeletes),
                        "auto_start": .bool(sync.autoStart),
                        "webhook_subscriptions": .array(sync.webhookSubscriptions.map { .string($0) }),
                    ]
                }),
        ]
    }
}
