import TributaryCore
import TributaryStore

/// Decides which `auth` webhooks an event on a connection queues (``AuthWebhookBody``): to the
/// environment's receivers, or the connection's `connection_config.webhook_url` override, when the
/// environment has a signing key and sends this kind (`on_auth_creation`, `on_auth_refresh_error`).
public struct AuthWebhookPlanner: Sendable {
    let config: TributaryConfig

    public init(config: TributaryConfig) {
        self.config = config
    }

    /// The webhooks for `operation` on `connection` (empty when none are sent). A failure names its
    /// `error` (Nango's `{type, description}`).
    public func messages(
        _ operation: AuthWebhookBody.Operation, connection: ConnectionImport, error: (type: String, description: String)? = nil
    ) -> [OutboxMessage] {
        let ref = connection.ref
        guard let environment = config.environment(named: ref.environment), environment.webhooks.signingKey != nil,
            let integration = config.integration(ref.providerConfigKey, in: ref.environment)
        else { return [] }
        let wanted = operation == .refresh ? environment.webhooks.sendOnAuthRefreshError : environment.webhooks.sendOnAuthCreation
        guard wanted else { return [] }
        let body = AuthWebhookBody.body(
            operation: operation, connection: ref, provider: integration.provider, authMode: connection.credentialsType, endUser: connection.endUser,
            tags: connection.tags, error: error)
        return environment.webhooks.urls(for: connection.connectionConfig).map {
            OutboxMessage(url: $0, body: body, model: "", success: error == nil)
        }
    }

    /// The webhooks for a refused token refresh of a stored connection.
    public func refreshFailure(_ record: ConnectionRecord, _ error: TributaryError) -> [OutboxMessage] {
        let connection = ConnectionImport(
            ref: record.ref, metadata: record.metadata, connectionConfig: record.connectionConfig, credentialsType: record.credentialsType,
            sealedCredentials: nil, endUser: record.endUser, tags: record.tags)
        return messages(.refresh, connection: connection, error: (type: "refresh_token_external_error", description: error.message))
    }
}
