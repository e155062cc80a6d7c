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
                    total: connections.count))
        }
        return templates.page("connections", ConnectionsView(session: SessionView(session), query: search, integrations: integrations))
    }
}
