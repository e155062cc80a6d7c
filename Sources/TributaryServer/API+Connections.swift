import Foundation
import Hummingbird
import TributaryCore
import TributaryStore

extension API {
    /// `POST /connections`: imports a connection with its credentials, and creates the `base`
    /// variant of each of the integration's syncs.
    func importConnection(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let environment = try context.requireEnvironment()
        _ = try QueryReader(request, allowed: [])
        let body = try await BodyReader.read(
            request, maxBytes: maxBody, allowed: ["provider_config_key", "connection_id", "credentials", "metadata", "connection_config"])
        let integration = try integration(try body.string("provider_config_key"), in: environment)
        let connectionId = try body.optionalString("connection_id") ?? UUID().uuidString.lowercased()
        guard !connectionId.utf8.contains(0) else { throw APIError.invalidBody("connection_id must not contain NUL characters.") }
        guard let credentials = try body.optionalObject("credentials") else {
            throw APIError.invalidBody("Field 'credentials' is required: an object with a 'type' (NONE, API_KEY, BASIC, OAUTH2, OAUTH2_CC).")
        }
        let connectionConfig = try body.optionalObject("connection_config") ?? [:]
        try checkWebhookOverride(connectionConfig, environment: environment)
        let (type, sealed) = try sealCredentials(credentials, for: integration)
        let ref = ConnectionRef(environment: environment.name, providerConfigKey: integration.providerConfigKey, connectionId: connectionId)
        let (record, created) = try await store.importConnection(
            ConnectionImport(
                ref: ref, metadata: try body.optionalObject("metadata") ?? [:], connectionConfig: connectionConfig,
                credentialsType: type, sealedCredentials: sealed),
            baseVariantsOf: integration.syncs.map(\.name))
        context.logger.info("connection imported", metadata: ["connection": "\(ref)", "created": "\(created)"])
        return JSONResponse.make(connectionJSON(record, integration: integration, full: true), status: created ? .created : .ok)
    }

    /// `connection_config.webhook_url` / `webhook_url_secondary` (the connection's own receivers) must
    /// be http(s) URLs, and the environment must have a signing key to sign what goes there.
    func checkWebhookOverride(_ connectionConfig: JSONObject, environment: EnvironmentConfig) throws {
        for key in EnvironmentWebhooks.connectionOverrideKeys {
            guard let value = connectionConfig[key], !value.isNull else { continue }
            guard let url = value.stringValue, EnvironmentWebhooks.isValidURL(url) else {
                throw APIError.invalidBody("connection_config.\(key) must be an http:// or https:// URL.")
            }
            guard environment.webhooks.signingKey != nil else {
                throw APIError.invalidBody(
                    "connection_config.\(key) is set, but environment '\(environment.name)' has no webhooks.signing_key to sign its webhooks with.")
            }
        }
    }

    /// Validates credentials against the integration's auth scheme and seals them.
    func sealCredentials(_ credentials: JSONObject, for integration: IntegrationConfig) throws -> (String, [UInt8]?) {
        do {
            return try ConnectionCredentials.seal(credentials, for: integration.auth, integration: integration.providerConfigKey, cipher: cipher)
        } catch let error as TributaryError where error.code == .invalidCredentials {
            throw APIError.invalidBody(error.message)
        }
    }

    /// `GET /connections`
    func listConnections(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let environment = try context.requireEnvironment()
        let query = try QueryReader(request, allowed: ["connectionId", "search", "integrationId"])
        let integrations = try query.optional("integrationId").map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
        let visible = Set(config.integrations(in: environment.name).map(\.providerConfigKey))
        let keys = (integrations ?? Array(visible)).filter { visible.contains($0) }
        let records = try await store.connections(
            ConnectionFilter(environment: environment.name, providerConfigKeys: keys, connectionId: try query.optional("connectionId"),
                             search: try query.optional("search")))
        let items = records.compactMap { record -> JSONValue? in
            guard let integration = config.integration(record.ref.providerConfigKey, in: environment.name) else { return nil }
            return connectionJSON(record, integration: integration, full: false)
        }
        return JSONResponse.make(["connections": .array(items)])
    }

    /// The connection a `/connections/{connectionId}?provider_config_key=` path names.
    private func pathConnection(_ request: Request, _ context: APIRequestContext) async throws -> (IntegrationConfig, ConnectionRecord) {
        let environment = try context.requireEnvironment()
        let query = try QueryReader(request, allowed: ["provider_config_key"])
        let integration = try integration(try query.required("provider_config_key"), in: environment)
        let connectionId = try context.parameters.require("connectionId")
        let record = try await existingConnection(
            ConnectionRef(environment: environment.name, providerConfigKey: integration.providerConfigKey, connectionId: connectionId))
        return (integration, record)
    }

    /// `GET /connections/{connectionId}?provider_config_key=`
    func getConnection(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let (integration, record) = try await pathConnection(request, context)
        return JSONResponse.make(connectionJSON(record, integration: integration, full: true))
    }

    /// `DELETE /connections/{connectionId}?provider_config_key=`: in one transaction ends its runs and
    /// removes it with all its variants; its records become invisible at once (purged in chunks afterwards).
    func deleteConnection(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let (_, record) = try await pathConnection(request, context)
        try await runs.deleteConnection(record.ref)
        return JSONResponse.success
    }

    /// `POST /connections/metadata` (overwrite, 201), `PATCH /connections/metadata` (shallow merge, 200),
    /// and the legacy `POST /connection/metadata`. All listed connections change, or none.
    func changeMetadata(_ request: Request, _ context: APIRequestContext, merge: Bool) async throws -> Response {
        let environment = try context.requireEnvironment()
        _ = try QueryReader(request, allowed: [])
        let body = try await BodyReader.read(request, maxBytes: maxBody, allowed: ["connection_id", "provider_config_key", "metadata"])
        let ids = try body.stringOrList("connection_id")
        let integration = try integration(try body.string("provider_config_key"), in: environment)
        guard let metadata = try body.optionalObject("metadata") else { throw APIError.invalidBody("Field 'metadata' is required (a JSON object).") }
        let refs = ids.map { ConnectionRef(environment: environment.name, providerConfigKey: integration.providerConfigKey, connectionId: $0) }
        if merge {
            try await store.updateMetadata(metadata, of: refs)
        } else {
            try await store.setMetadata(metadata, of: refs)
        }
        return JSONResponse.make(.object(body.object), status: merge ? .ok : .created)
    }

    func connectionJSON(_ record: ConnectionRecord, integration: IntegrationConfig, full: Bool) -> JSONValue {
        var object: JSONObject = [
            "id": .number(JSONNumber(record.id)),
            "connection_id": .string(record.ref.connectionId),
            "provider_config_key": .string(record.ref.providerConfigKey),
            "provider": .string(integration.provider),
            "errors": [],
            "end_user": .null,
            "tags": [:],
            "metadata": .object(record.metadata),
        ]
        if full {
            object["connection_config"] = .object(record.connectionConfig)
            object["webhook_url_override"] = .null
            object["created_at"] = .string(record.createdAt.iso8601)
            object["updated_at"] = .string(record.updatedAt.iso8601)
            object["last_fetched_at"] = .null
            // The kind of credentials only: secrets never leave the server.
            object["credentials"] = ["type": .string(record.credentialsType)]
        } else {
            object["created"] = .string(record.createdAt.iso8601)
        }
        return .object(object)
    }
}
