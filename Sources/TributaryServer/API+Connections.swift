import Foundation
import HTTPTypes
import Hummingbird
import TributaryCore
import TributaryEngine
import TributaryStore

extension API {
    /// `POST /connections`: imports a connection with its credentials, and creates the `base`
    /// variant of each of the integration's syncs.
    func importConnection(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let environment = try context.requireEnvironment()
        _ = try QueryReader(request, allowed: [])
        let body = try await BodyReader.read(
            request, maxBytes: maxBody,
            allowed: ["provider_config_key", "connection_id", "credentials", "metadata", "connection_config", "end_user", "tags"])
        let integration = try integration(try body.string("provider_config_key"), in: environment)
        let connectionId = try body.optionalString("connection_id") ?? UUID().uuidString.lowercased()
        guard !connectionId.utf8.contains(0) else { throw APIError.invalidBody("connection_id must not contain NUL characters.") }
        guard let credentials = try body.optionalObject("credentials") else {
            throw APIError.invalidBody("Field 'credentials' is required: an object with a 'type' (NONE, API_KEY, BASIC, OAUTH2, OAUTH2_CC).")
        }
        let connectionConfig = try body.optionalObject("connection_config") ?? [:]
        try checkWebhookOverride(connectionConfig, environment: environment)
        let (type, sealed) = try sealCredentials(credentials, for: integration)
        let endUser = try body.optionalObject("end_user").map { try EndUserFields.endUser($0) }
        var tags = try body.optionalObject("tags").map { try EndUserFields.tags($0) }
        if let endUser { tags = EndUserFields.tags(tags ?? [:], derivingFrom: endUser) }
        let ref = ConnectionRef(environment: environment.name, providerConfigKey: integration.providerConfigKey, connectionId: connectionId)
        var connection = ConnectionImport(
            ref: ref, metadata: try body.optionalObject("metadata") ?? [:], connectionConfig: connectionConfig,
            credentialsType: type, sealedCredentials: sealed, endUser: endUser, tags: tags)
        connection.pausedSyncs = Set(integration.syncs.filter { !$0.autoStart }.map(\.name))
        let events = connectionEvents(context)
        if events.has(.validateConnection, for: ref) {
            let candidate = ConnectionEventRunner.Candidate(credentials: try ConnectionCredentials.normalized(credentials), metadata: connection.metadata)
            if let failure = await events.run(.validateConnection, connection: ref, candidate: candidate) {
                throw Self.validationFailed(failure)
            }
        }
        let (record, created) = try await store.importConnection(connection, baseVariantsOf: integration.syncs.map(\.name))
        if created { runs.variantsBecameDue() }
        await providers?.forgetCredentials(of: ref)
        context.logger.info("connection imported", metadata: ["connection": "\(ref)", "created": "\(created)"])
        if created { await events.run(.postConnectionCreation, connection: ref) }
        return JSONResponse.make(.object(connectionJSON(record, integration: integration, full: true)), status: created ? .created : .ok)
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

    /// The most connections one `GET /connections` answers, also without `limit`.
    static let maximumConnectionsPerPage = 10_000
    static let defaultConnectionsPerPage = 10_000

    /// `GET /connections?connectionId=&search=&integrationId=&endUserId=&endUserOrganizationId=&tags[key]=&limit=&page=`:
    /// the environment's connections in id order, filtered (every filter must match) and paged as Nango does.
    func listConnections(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let environment = try context.requireEnvironment()
        let query = try QueryReader(
            request, allowed: ["connectionId", "search", "integrationId", "endUserId", "endUserOrganizationId", "limit", "page"], allowedPrefixes: ["tags["])
        let integrations = try query.optional("integrationId").map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
        let visible = Set(config.integrations(in: environment.name).map(\.providerConfigKey))
        let keys = (integrations ?? Array(visible)).filter { visible.contains($0) }
        var filter = ConnectionFilter(
            environment: environment.name, providerConfigKeys: keys, connectionId: try query.optional("connectionId"), search: try query.optional("search"))
        if let id = try query.optional("endUserId") { filter.fields.append(.init(.endUser, path: "id", value: id)) }
        if let id = try query.optional("endUserOrganizationId") { filter.fields.append(.init(.endUser, path: "organization.id", value: id)) }
        let tagFilters = query.pairs.filter { $0.key.hasPrefix("tags[") }
        guard tagFilters.count <= EndUserFields.maximumTags else {
            throw APIError.invalidQuery("At most \(EndUserFields.maximumTags) tags[KEY] filters; got \(tagFilters.count).")
        }
        for (name, value) in tagFilters {
            let key = String(name.dropFirst("tags[".count))
            guard key.hasSuffix("]"), EndUserFields.isTagKey(String(key.dropLast())) else {
                throw APIError.invalidQuery("Query parameter '\(name.prefix(80))' must be tags[KEY] with a tag key (a letter, then letters, digits, '_', '.', '/', ':' or '-').")
            }
            filter.fields.append(.init(.tags, key: key.dropLast().lowercased(), value: value))
        }
        let limit = try query.integer("limit", in: 1...Self.maximumConnectionsPerPage) ?? Self.defaultConnectionsPerPage
        let page = try query.integer("page", in: 0...1_000_000) ?? 0
        filter.limit = limit
        filter.offset = page * limit
        let records = try await store.connections(filter)
        let items = records.compactMap { record -> JSONValue? in
            guard let integration = config.integration(record.ref.providerConfigKey, in: environment.name) else { return nil }
            return .object(connectionJSON(record, integration: integration, full: false))
        }
        return JSONResponse.make(["connections": .array(items)])
    }

    /// The connection a `/connections/{connectionId}?provider_config_key=` path names.
    private func pathConnection(_ request: Request, _ context: APIRequestContext, query: QueryReader? = nil) async throws
        -> (IntegrationConfig, ConnectionRecord)
    {
        let environment = try context.requireEnvironment()
        let query = try query ?? QueryReader(request, allowed: ["provider_config_key"])
        let integration = try integration(try query.required("provider_config_key"), in: environment)
        let connectionId = try context.parameters.require("connectionId")
        let record = try await existingConnection(
            ConnectionRef(environment: environment.name, providerConfigKey: integration.providerConfigKey, connectionId: connectionId))
        return (integration, record)
    }

    /// `GET /connections/{connectionId}?provider_config_key=&force_refresh=&refresh_token=&refresh_github_app_jwt_token=`:
    /// the connection with its credentials in Nango's shape (what the SDK's `getConnection`,
    /// `getToken`, `getRawTokenResponse` and `getMetadata` read) — an OAuth token about to expire,
    /// or any with `force_refresh=true`, is refreshed first; the refresh token only with
    /// `refresh_token=true`. With the environment's `expose_credentials: false`, `credentials` is `{}`
    /// and the two flags answer 403.
    func getConnection(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let environment = try context.requireEnvironment()
        let query = try QueryReader(request, allowed: ["provider_config_key", "force_refresh", "refresh_token", "refresh_github_app_jwt_token"])
        let forceRefresh = try query.bool("force_refresh") ?? false
        let includeRefreshToken = try query.bool("refresh_token") ?? false
        _ = try query.bool("refresh_github_app_jwt_token")  // accepted: no GitHub App auth here, nothing to refresh
        let (integration, record) = try await pathConnection(request, context, query: query)
        var json = connectionJSON(record, integration: integration, full: true)
        guard environment.exposesCredentials else {
            if forceRefresh || includeRefreshToken {
                throw APIError(
                    .forbidden, "forbidden",
                    "Environment '\(environment.name)' does not expose connection credentials (expose_credentials: false), so force_refresh and refresh_token cannot be used.")
            }
            json["credentials"] = [:]
            return JSONResponse.make(.object(json))
        }
        let opened: JSONObject
        do {
            opened = try await openCredentials(record, forceRefresh: forceRefresh)
        } catch let error as TributaryError where error.code == .invalidCredentials {
            throw APIError(HTTPResponse.Status(code: 424, reasonPhrase: "Failed Dependency"), "invalid_credentials", error.message)
        } catch let error as ProviderUnavailable {
            // Temporary: the credentials may be fine; the token endpoint is down or rate-limited.
            throw APIError(.serviceUnavailable, "provider_unavailable", "The connection's token could not be refreshed now: \(error.description)")
        }
        json["credentials"] = .object(ConnectionCredentials.nangoShape(opened, type: record.credentialsType, includeRefreshToken: includeRefreshToken))
        context.logger.info("connection credentials read", metadata: ["connection": "\(record.ref)", "refreshed": "\(forceRefresh)"])
        var response = JSONResponse.make(.object(json))
        response.headers[.cacheControl] = "no-store"  // credentials: never kept by a cache on the way
        return response
    }

    /// The connection's credentials opened: through provider access (which refreshes OAuth tokens)
    /// when this process has one, else straight from the store.
    private func openCredentials(_ record: ConnectionRecord, forceRefresh: Bool) async throws -> JSONObject {
        if record.credentialsType == "NONE" { return [:] }
        if let providers { return try await providers.credentials(for: record.ref, forceRefresh: forceRefresh) }
        guard let sealed = record.sealedCredentials else { return [:] }
        return try JSONParser.parse(try cipher.open(sealed)).objectValue ?? [:]
    }

    /// `PATCH /connections/{connectionId}?provider_config_key=` with `{end_user?, tags?}`: replaces what is given.
    func patchConnection(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let (_, record) = try await pathConnection(request, context)
        let body = try await BodyReader.read(request, maxBytes: maxBody, allowed: ["end_user", "tags"])
        var patch = ConnectionPatch(
            endUser: try body.optionalObject("end_user").map { try EndUserFields.endUser($0) },
            tags: try body.optionalObject("tags").map { try EndUserFields.tags($0) })
        // The tags Nango derives from the end user follow it (or stay, when only the tags change).
        if let endUser = patch.endUser ?? record.endUser, patch.endUser != nil || patch.tags != nil {
            patch.tags = EndUserFields.tags(patch.tags ?? record.tags, derivingFrom: endUser)
        }
        _ = try await store.patchConnection(record.ref, patch)
        return JSONResponse.success
    }

    /// `DELETE /connections/{connectionId}?provider_config_key=`: in one transaction ends its runs and
    /// removes it with all its variants; its records become invisible at once (purged in chunks afterwards).
    func deleteConnection(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let (_, record) = try await pathConnection(request, context)
        // While its credentials still work (revoke a token); a failure is recorded, the deletion goes ahead.
        await connectionEvents(context).run(.preConnectionDeletion, connection: record.ref)
        try await runs.deleteConnection(record.ref)
        await providers?.forgetCredentials(of: record.ref)
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

    func connectionJSON(_ record: ConnectionRecord, integration: IntegrationConfig, full: Bool) -> JSONObject {
        var object: JSONObject = [
            "id": .number(JSONNumber(record.id)),
            "connection_id": .string(record.ref.connectionId),
            "provider_config_key": .string(record.ref.providerConfigKey),
            "provider": .string(integration.provider),
            "errors": [],
            "end_user": record.endUser.map { .object($0) } ?? .null,
            "tags": .object(record.tags),
            "metadata": .object(record.metadata),
        ]
        if full {
            object["connection_config"] = .object(record.connectionConfig)
            object["webhook_url_override"] = .null
            object["created_at"] = .string(record.createdAt.iso8601)
            object["updated_at"] = .string(record.updatedAt.iso8601)
            object["last_fetched_at"] = .null
            // The kind of credentials only (GET /connections/{id} replaces it with the credentials).
            object["credentials"] = ["type": .string(record.credentialsType)]
        } else {
            object["created"] = .string(record.createdAt.iso8601)
        }
        return object
    }
}
