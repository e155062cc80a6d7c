import Hummingbird
import TributaryCore
import TributaryStore

extension Dashboard {
    struct ConnectionsView {
        let session: SessionView
        let query: String?
        let integrations: [IntegrationView]
    }

    struct IntegrationView {
        let key: String
        let syncNames: String
        let hasConnections: Bool
        let connections: [ConnectionRowView]
        let truncated: Bool
        let shown: Int
        let total: Int
        /// How end users connect it on the Connect page (nil: only imported through the API).
        let connect: String?
        /// The redirect URI its OAuth client must register.
        let callbackURL: String?
    }

    struct ConnectionRowView {
        let id: String
        let href: String
        let credentials: String
        let created: TimeView
        let metadataKeys: Int
    }

    /// `GET /dashboard?q=`: the environment's connections, grouped by integration; `q` keeps those
    /// whose id contains it.
    func connectionsPage(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let (session, environment) = try session(context)
        let query = DashboardForm.query(request)["q"]?.trimmingCharacters(in: .whitespaces)
        let search = query?.isEmpty == false ? query : nil
        if let search, search.utf8.count > 255 { throw APIError(.badRequest, "invalid_query_params", "The search text is longer than 255 bytes.") }
        var integrations: [IntegrationView] = []
        for integration in api.config.integrations(in: environment.name) {
            let connections = try await api.store.connections(
                ConnectionFilter(environment: environment.name, providerConfigKeys: [integration.providerConfigKey], search: search))
            let shown = connections.prefix(Self.connectionsPerIntegration).map { connection in
                ConnectionRowView(
                    id: connection.ref.connectionId, href: Self.connectionHref(connection.ref), credentials: connection.credentialsType,
                    created: TimeView(connection.createdAt), metadataKeys: connection.metadata.count)
            }
            integrations.append(
                IntegrationView(
                    key: integration.providerConfigKey, syncNames: integration.syncs.map(\.name).joined(separator: ", "),
                    hasConnections: !shown.isEmpty, connections: shown, truncated: connections.count > shown.count, shown: shown.count,
                    total: connections.count, connect: Self.connectSummary(integration),
                    callbackURL: integration.oauthAuthorization == nil ? nil : api.config.server.publicURL.map { ConnectCallback.url(publicURL: $0) }))
        }
        return templates.page("connections", ConnectionsView(session: SessionView(session), query: search, integrations: integrations))
    }

    /// How end users connect `integration` on the Connect page, in words.
    static func connectSummary(_ integration: IntegrationConfig) -> String? {
        guard integration.isConnectable else { return nil }
        switch integration.auth {
        case .oauth2: return "end users sign in with OAuth 2 on the Connect page"
        case .basic: return "end users enter a user name and password on the Connect page"
        default: return "end users enter an API key on the Connect page" + (integration.verification.map { " (checked with \($0.method) \($0.path))" } ?? "")
        }
    }
}
