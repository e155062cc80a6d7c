import Foundation
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
    /// `GET /integrations/{key}?include=webhook|credentials` (repeatable or comma-separated, as
    /// Nango's SDK and API send it): `webhook_url` is where the provider sends its webhooks (from
    /// `server.public_url`; null without it), `credentials` the integration's OAuth client (null for
    /// other auth; 403 when the environment does not expose credentials).
    func getIntegration(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let environment = try context.requireEnvironment()
        let query = try QueryReader(request, allowed: ["include"])
        let include = Set(query.all("include").flatMap { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } })
        for item in include where item != "webhook" && item != "credentials" {
            throw APIError.invalidQuery("include may name webhook and credentials, not '\(item.prefix(40))'.")
        }
        let key = try context.parameters.require("uniqueKey")
        let integration = try integration(key, in: environment)
        guard case .object(var data) = integrationJSON(integration) else { throw APIError(.internalServerError, "server_error", "The integration could not be shown.") }
        if include.contains("webhook") {
            func segment(_ text: String) -> String { (try? URLText.pathSegment(text, what: text)) ?? text }
            data["webhook_url"] = config.server.publicURL.map {
                .string("\($0)/webhook/\(segment(environment.name))/\(segment(integration.providerConfigKey))")
            } ?? .null
        }
        if include.contains("credentials") {
            guard environment.exposesCredentials else {
                throw APIError(.forbidden, "forbidden", "Environment '\(environment.name)' does not expose credentials (expose_credentials: false).")
            }
            if case .oauth2(_, let clientID, let clientSecret) = integration.auth {
                data["credentials"] = [
                    "type": "OAUTH2", "client_id": .string(clientID), "client_secret": .string(clientSecret.value), "scopes": "",
                    "webhook_secret": .null,
                ]
            } else {
                data["credentials"] = .null
            }
        }
        return JSONResponse.make(["data": .object(data)])
    }

    /// A logo for an integration: an SVG with the provider's initial, as a `data:` URL (Nango's field
    /// is a string URL; Tributary hosts no logo catalogue).
    static func logo(for provider: String) -> String {
        let initial = provider.first.map { String($0).uppercased() }.flatMap { $0.allSatisfy { $0.isLetter || $0.isNumber } ? $0 : nil } ?? "?"
        let svg = ##"<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64"><rect width="64" height="64" rx="12" fill="#3b5bdb"/><text x="32" y="42" font-family="sans-serif" font-size="30" text-anchor="middle" fill="#fff">\##(initial)</text></svg>"##
        return "data:image/svg+xml;base64," + Data(svg.utf8).base64EncodedString()
    }

    func integrationJSON(_ integration: IntegrationConfig) -> JSONValue {
        [
            "unique_key": .string(integration.providerConfigKey),
            "provider": .string(integration.provider),
            "display_name": .string(integration.provider),
            "logo": .string(Self.logo(for: integration.provider)),
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
