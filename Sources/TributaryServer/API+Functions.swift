import Hummingbird
import TributaryCore
import TributaryEngine

/// What Nango's SDK asks to discover a deployment: the configured syncs with their models
/// (`GET /scripts/config`, `GET /integrations/{key}/functions`), the auth schemes as providers
/// (`GET /providers[/{provider}]`), and the environment's variables (`GET /environment-variables`).
extension API {
    /// `GET /scripts/config?format=nango`: per integration of the environment, its syncs and actions
    /// in Nango's format (Tributary has no on-event scripts yet: that list is empty).
    func scriptsConfig(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let environment = try context.requireEnvironment()
        let query = try QueryReader(request, allowed: ["format"])
        if let format = try query.optional("format"), format != "nango" {
            throw APIError.invalidQuery("format must be nango ('\(format.prefix(40))' is not served: Tributary has no function-calling export).")
        }
        let items: [JSONValue] = config.integrations(in: environment.name).map { integration in
            [
                "providerConfigKey": .string(integration.providerConfigKey),
                "provider": .string(integration.provider),
                "syncs": .array(integration.syncs.map { functionJSON($0) }),
                "actions": .array(integration.actions.map { actionJSON($0) }),
                "on-events": [],
            ]
        }
        return JSONResponse.make(.array(items))
    }

    /// `GET /integrations/{key}/functions?type=&search=&page=&limit=`: the integration's syncs, paged.
    func integrationFunctions(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let environment = try context.requireEnvironment()
        let query = try QueryReader(request, allowed: ["type", "search", "page", "limit"])
        let integration = try integration(try context.parameters.require("uniqueKey"), in: environment)
        let type = try query.optional("type")
        if let type, type != "sync", type != "action" {
            throw APIError.invalidQuery("type must be sync or action, not '\(type.prefix(40))'.")
        }
        let search = try query.optional("search")?.lowercased()
        let page = try query.integer("page", in: 0...1_000_000) ?? 0
        let limit = try query.integer("limit", in: 1...100) ?? 20
        func matches(_ name: String) -> Bool { search.map { name.lowercased().contains($0) } ?? true }
        var functions: [JSONValue] = []
        if type != "action" { functions += integration.syncs.filter { matches($0.name) }.map { functionJSON($0) } }
        if type != "sync" { functions += integration.actions.filter { matches($0.name) }.map { actionJSON($0) } }
        let shown = functions.dropFirst(min(functions.count, page * limit)).prefix(limit)
        return JSONResponse.make([
            "data": .array(Array(shown)),
            "pagination": ["total": .number(JSONNumber(functions.count)), "page": .number(JSONNumber(page)), "limit": .number(JSONNumber(limit))],
        ])
    }

    /// Models in Nango's script-config format: `{name, fields: [{name, value, optional?}]}`.
    func modelsJSON(_ models: [String], fields: [String: [ModelField]]) -> [JSONValue] {
        models.map { model in
            [
                "name": .string(model),
                "fields": .array(
                    (fields[model] ?? []).map { field in
                        var object: JSONObject = ["name": .string(field.name), "value": .string(field.type)]
                        if field.optional { object["optional"] = true }
                        return .object(object)
                    }),
            ]
        }
    }

    /// One action in Nango's script-config format; its models are what its Swift function declares
    /// (``ActionFunction/modelFields``).
    func actionJSON(_ action: ActionConfig) -> JSONValue {
        let fields = action.declarative == nil ? functions?.action(named: action.function)?.modelFields ?? [:] : [:]
        return [
            "name": .string(action.name),
            "type": "action",
            "runs": .null,
            "attributes": [:],
            "description": .string(action.description ?? ""),
            "scopes": [],
            "input": .null,
            "returns": .array(fields.keys.sorted().map { .string($0) }),
            "endpoints": [],
            "enabled": true,
            "json_schema": .null,
            "sdk_version": .null,
            "version": "1",
            "models": .array(modelsJSON(fields.keys.sorted(), fields: fields)),
            "features": [],
        ]
    }

    /// One sync in Nango's script-config format.
    func functionJSON(_ sync: SyncConfig) -> JSONValue {
        let models = modelsJSON(sync.models, fields: modelFields(of: sync))
        return [
            "name": .string(sync.name),
            "type": "sync",
            "runs": .string(sync.frequency.text),
            "auto_start": .bool(sync.autoStart),
            "attributes": [:],
            "description": "",
            "scopes": [],
            "track_deletes": .bool(sync.trackDeletes),
            "returns": .array(sync.models.map { .string($0) }),
            "endpoints": .array(sync.models.map { ["method": "GET", "path": .string("/records?model=\($0)")] }),
            "sync_type": .string(sync.syncType.rawValue),
            "webhookSubscriptions": .array(sync.webhookSubscriptions.map { .string($0) }),
            "enabled": true,
            "json_schema": .null,
            "sdk_version": .null,
            "version": "1",
            "models": .array(models),
            "features": [],
            "variants_allowed": .number(JSONNumber(config.server.maxVariantsPerSync)),
        ]
    }

    /// A sync's model fields: a declarative sync's `fields` (renamed as it renames them, `id` first),
    /// or what its Swift function declares (``SyncFunction/modelFields``); none otherwise.
    func modelFields(of sync: SyncConfig) -> [String: [ModelField]] {
        if let spec = sync.declarative, let model = sync.models.first {
            guard let selected = spec.fields else { return [:] }
            var names = ["id"]
            for path in selected {
                let name = spec.rename.first { $0.name == path }?.value ?? path
                if !names.contains(name) { names.append(name) }
            }
            return [model: names.map { ModelField($0, $0 == "id" ? "string" : "any", optional: $0 != "id") }]
        }
        guard let function = functions?.function(named: sync.function) else { return [:] }
        return function.modelFields
    }

    /// `GET /providers?search=`: the auth schemes Tributary supports, as Nango-shaped provider
    /// entries, and every provider named in the environment's integrations.
    func listProviders(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let environment = try context.requireEnvironment()
        let query = try QueryReader(request, allowed: ["search"])
        let search = try query.optional("search")?.lowercased()
        let providers = providerEntries(in: environment).filter { entry in
            guard let search else { return true }
            return entry.name.lowercased().contains(search) || entry.displayName.lowercased().contains(search)
        }
        return JSONResponse.make(["data": .array(providers.map(\.json))])
    }

    /// `GET /providers/{provider}`
    func getProvider(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let environment = try context.requireEnvironment()
        _ = try QueryReader(request, allowed: [])
        let name = try context.parameters.require("provider")
        guard let entry = providerEntries(in: environment).first(where: { $0.name == name }) else {
            throw APIError(.notFound, "not_found", "Provider '\(name.prefix(255))' is not known here (see GET /providers).")
        }
        return JSONResponse.make(["data": entry.json])
    }

    /// The generic providers (one per auth scheme) and the configured ones, configured first.
    func providerEntries(in environment: EnvironmentConfig) -> [ProviderEntry] {
        var entries: [ProviderEntry] = []
        for integration in config.integrations(in: environment.name) where !entries.contains(where: { $0.name == integration.provider }) {
            entries.append(ProviderEntry(name: integration.provider, auth: integration.auth, baseURL: integration.baseURL))
        }
        for generic in ProviderEntry.generic where !entries.contains(where: { $0.name == generic.name }) {
            entries.append(generic)
        }
        return entries
    }

    /// `GET /environment-variables`: the environment's `variables`, as `[{name, value}]`.
    func environmentVariables(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let environment = try context.requireEnvironment()
        _ = try QueryReader(request, allowed: [])
        return JSONResponse.make(.array(environment.variables.map { ["name": .string($0.name), "value": .string($0.value.value)] }))
    }
}

/// A provider as Nango's `GET /providers` lists it.
struct ProviderEntry: Sendable {
    let name: String
    let displayName: String
    let authMode: String
    let baseURL: String?

    init(name: String, auth: AuthScheme, baseURL: String?) {
        self.name = name
        displayName = name
        authMode = Self.nangoAuthMode(auth)
        self.baseURL = baseURL
    }

    private init(generic name: String, displayName: String, authMode: String) {
        self.name = name
        self.displayName = displayName
        self.authMode = authMode
        baseURL = nil
    }

    /// One entry per auth scheme, for integrations of providers Tributary has no entry for.
    static let generic = [
        ProviderEntry(generic: "unauthenticated", displayName: "Unauthenticated", authMode: "NONE"),
        ProviderEntry(generic: "api-key", displayName: "API key", authMode: "API_KEY"),
        ProviderEntry(generic: "basic", displayName: "Basic auth", authMode: "BASIC"),
        ProviderEntry(generic: "oauth2", displayName: "OAuth 2", authMode: "OAUTH2"),
        ProviderEntry(generic: "oauth2-cc", displayName: "OAuth 2 client credentials", authMode: "OAUTH2_CC"),
    ]

    /// Nango's `auth_mode` for a scheme (a bearer key is an API key there too).
    static func nangoAuthMode(_ auth: AuthScheme) -> String {
        switch auth {
        case .none: "NONE"
        case .apiKey, .bearer: "API_KEY"
        case .basic: "BASIC"
        case .oauth2: "OAUTH2"
        case .oauth2ClientCredentials: "OAUTH2_CC"
        }
    }

    var json: JSONValue {
        var object: JSONObject = [
            "name": .string(name), "display_name": .string(displayName), "auth_mode": .string(authMode),
            "docs": "", "categories": [],
        ]
        // Scheme, host and path only: a query in base_url (a key, say) is not shown.
        if let baseURL { object["proxy"] = ["base_url": .string(String(baseURL.prefix { $0 != "?" && $0 != "#" }))] }
        return .object(object)
    }
}
