import Foundation
import HTTPTypes
import Hummingbird
import TributaryCore
import TributaryStore

extension API {
    /// `POST /connect/sessions`: a short-lived session with which one end user connects their own
    /// account on the Connect page (`connect_link`). Nango's body: `end_user {id, email?,
    /// display_name?, tags?}`, `organization {id, display_name?}`, `tags`, `allowed_integrations`,
    /// `integrations_config_defaults {KEY: {connection_config}}`. Answers 201 `{data: {token,
    /// expires_at, connect_link}}`; the token is kept only as its hash.
    func createConnectSession(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let environment = try context.requireEnvironment()
        _ = try QueryReader(request, allowed: [])
        let body = try await BodyReader.read(
            request, maxBytes: maxBody, allowed: ["end_user", "organization", "tags", "allowed_integrations", "integrations_config_defaults"])
        let (endUser, tags) = try connectEndUser(body)
        var allowed: [String]?
        // An empty list means every integration, as in Nango.
        if let keys = body.object["allowed_integrations"], !keys.isNull, keys.arrayValue?.isEmpty != true {
            guard let list = keys.arrayValue, list.count <= 256 else {
                throw APIError.invalidBody("allowed_integrations must be a list of at most 256 integration keys.")
            }
            allowed = []
            for value in list {
                guard let key = value.stringValue else { throw APIError.invalidBody("allowed_integrations must be a list of integration keys.") }
                let integration = try integration(key, in: environment)
                guard integration.isConnectable else { throw Self.notConnectable(integration) }
                if !(allowed?.contains(key) ?? false) { allowed?.append(key) }
            }
        }
        let defaults = try configDefaults(body, environment: environment)
        let session = try await issueConnectSession(
            environment: environment, endUser: endUser, tags: tags, allowed: allowed, defaults: defaults, reconnect: nil, context: context)
        return session
    }

    /// `POST /connect/sessions/reconnect`: a session that replaces the credentials of an existing
    /// connection (`connection_id`, `integration_id`), keeping its records, variants and metadata.
    func reconnectSession(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let environment = try context.requireEnvironment()
        _ = try QueryReader(request, allowed: [])
        let body = try await BodyReader.read(
            request, maxBytes: maxBody, allowed: ["connection_id", "integration_id", "end_user", "organization", "tags", "integrations_config_defaults"])
        let integration = try integration(try body.string("integration_id"), in: environment)
        guard integration.isConnectable else { throw Self.notConnectable(integration) }
        let record = try await existingConnection(
            ConnectionRef(environment: environment.name, providerConfigKey: integration.providerConfigKey, connectionId: try body.string("connection_id")))
        let (endUser, tags) = try connectEndUser(body)
        return try await issueConnectSession(
            environment: environment, endUser: endUser, tags: tags, allowed: [integration.providerConfigKey],
            defaults: try configDefaults(body, environment: environment), reconnect: record.ref, context: context)
    }

    /// `GET /connect/session` with the session token as `Authorization: Bearer`: what the session
    /// allows (Nango's `{data: {end_user, organization, allowed_integrations, integrations_config_defaults, …}}`).
    func getConnectSession(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        _ = try QueryReader(request, allowed: [])
        let session = try await bearerSession(request)
        var data: JSONObject = [:]
        if var endUser = session.endUser {
            if let organization = endUser.removeValue(forKey: "organization") { data["organization"] = organization }
            data["end_user"] = .object(endUser)
        }
        if let allowed = session.allowedIntegrations { data["allowed_integrations"] = .array(allowed.map { .string($0) }) }
        data["integrations_config_defaults"] = .object(session.integrationsConfigDefaults)
        if let tags = session.tags { data["tags"] = .object(tags) }
        data["isReconnecting"] = .bool(session.reconnect != nil)
        if let reconnect = session.reconnect { data["connectionId"] = .string(reconnect.connectionId) }
        data["expires_at"] = .string(session.expiresAt.iso8601)
        return JSONResponse.make(["data": .object(data)])
    }

    /// `DELETE /connect/session` with the session token as `Authorization: Bearer`: ends the session
    /// at once (204).
    func deleteConnectSession(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        _ = try QueryReader(request, allowed: [])
        let session = try await bearerSession(request, acceptSpent: true)
        try await store.deleteConnectSession(tokenHash: session.tokenHash, environment: session.environment)
        return Response(status: .noContent)
    }

    // MARK: Helpers

    private func issueConnectSession(
        environment: EnvironmentConfig, endUser: JSONObject?, tags: JSONObject?, allowed: [String]?, defaults: JSONObject, reconnect: ConnectionRef?,
        context: APIRequestContext
    ) async throws -> Response {
        guard let publicURL = config.server.publicURL else {
            throw APIError(
                .badRequest, "connect_not_configured",
                "Connect needs server.public_url in tributary.yaml: the Connect link and the OAuth redirect_uri are built from it.")
        }
        if allowed == nil, !config.integrations(in: environment.name).contains(where: \.isConnectable) {
            throw APIError(
                .badRequest, "no_connectable_integrations",
                "Environment '\(environment.name)' has no integration an end user can connect (api_key, bearer, basic, or oauth2 with an authorization_url).")
        }
        let token = ConnectToken.newSessionToken()
        let now = Timestamp.now()
        let expires = Timestamp(microseconds: now.microseconds + Int64(environment.connect.sessionSeconds) * 1_000_000)
        try await store.createConnectSession(
            ConnectSession(
                tokenHash: ConnectToken.hash(token), environment: environment.name, endUser: endUser, tags: tags, allowedIntegrations: allowed,
                integrationsConfigDefaults: defaults, reconnect: reconnect, createdAt: now, expiresAt: expires))
        context.logger.info("connect session created", metadata: ["reconnect": "\(reconnect?.connectionId ?? "-")"])
        let link = ConnectPage.link(publicURL: publicURL, token: token)
        return JSONResponse.make(
            ["data": ["token": .string(token), "expires_at": .string(expires.iso8601), "connect_link": .string(link)]], status: .created)
    }

    /// `end_user` with `organization` folded in (as connections keep it), and the tags: the body's
    /// `tags`, the end user's own, and the ones derived from the end user.
    private func connectEndUser(_ body: BodyReader) throws -> (JSONObject?, JSONObject?) {
        var endUser = try body.optionalObject("end_user").map { try EndUserFields.endUser($0) }
        if let organization = try body.optionalObject("organization") {
            guard endUser != nil else { throw APIError.invalidBody("organization needs an end_user.") }
            // Checked by the end user's rules (`organization.id` required, strings of 255 at most).
            endUser?["organization"] = try EndUserFields.endUser(["id": "-", "organization": .object(organization)], field: "end_user")["organization"]
        }
        var tags = try body.optionalObject("tags").map { try EndUserFields.tags($0) }
        if let endUser {
            if let own = endUser["tags"]?.objectValue { tags = own.shallowMerging(tags ?? [:]) }  // the body's tags win
            tags = EndUserFields.tags(tags ?? [:], derivingFrom: endUser)
        }
        return (endUser, tags)
    }

    /// `integrations_config_defaults`: `{KEY: {connection_config: {…}}}` for integrations of the environment.
    private func configDefaults(_ body: BodyReader, environment: EnvironmentConfig) throws -> JSONObject {
        guard let defaults = try body.optionalObject("integrations_config_defaults") else { return [:] }
        for (key, value) in defaults {
            _ = try integration(key, in: environment)
            // Nango's `user_scopes` and `authorization_params` are accepted (and kept with the session) so
            // its clients' bodies pass; the connection gets `connection_config`.
            guard let entry = value.objectValue, entry.keys.allSatisfy({ ["connection_config", "user_scopes", "authorization_params"].contains($0) }) else {
                throw APIError.invalidBody(
                    "integrations_config_defaults.\(key.prefix(80)) must be an object with a 'connection_config' object (and optionally Nango's user_scopes, authorization_params).")
            }
            if let scopes = entry["user_scopes"], scopes.stringValue == nil {
                throw APIError.invalidBody("integrations_config_defaults.\(key.prefix(80)).user_scopes must be a string.")
            }
            if let parameters = entry["authorization_params"], !(parameters.objectValue?.allSatisfy { $0.value.stringValue != nil } ?? false) {
                throw APIError.invalidBody("integrations_config_defaults.\(key.prefix(80)).authorization_params must be an object of strings.")
            }
            if let connectionConfig = entry["connection_config"] {
                guard let object = connectionConfig.objectValue else {
                    throw APIError.invalidBody("integrations_config_defaults.\(key.prefix(80)).connection_config must be an object.")
                }
                try checkWebhookOverride(object, environment: environment)
            }
        }
        return defaults
    }

    /// The session the request's `Authorization: Bearer <session token>` names, if it can still be used
    /// (with `acceptSpent`, also a spent or expired one: it can still be deleted).
    private func bearerSession(_ request: Request, acceptSpent: Bool = false) async throws -> ConnectSession {
        guard let header = request.headers[.authorization] else {
            throw APIError(.unauthorized, "missing_auth_header", "Missing Authorization header: send 'Authorization: Bearer <connect session token>'.")
        }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer", ConnectToken.looksLikeSessionToken(String(parts[1])) else {
            throw APIError(.unauthorized, "malformed_auth_header", "The Authorization header must be 'Bearer <connect session token>' (nango_connect_session_…).")
        }
        let session = try await store.connectSession(tokenHash: ConnectToken.hash(String(parts[1])))
        let verdict = ConnectSessionRule.verdict(session, now: .now())
        if let session, verdict == .usable || (acceptSpent && verdict != .unknown) { return session }
        let error = ConnectSessionRule.error(for: verdict) ?? TributaryError(.unknownConnectSession, "The Connect session does not exist.")
        throw APIError(.unauthorized, error.code.rawValue, error.message)
    }

    static func notConnectable(_ integration: IntegrationConfig) -> APIError {
        APIError(
            .badRequest, "integration_not_connectable",
            "Integration '\(integration.providerConfigKey)' cannot be connected by an end user: it uses auth \(integration.auth.typeName)\(integration.auth.typeName == "oauth2" ? " without an authorization_url" : "").")
    }
}
