import TributaryCore
import TributaryStore

/// Decides which sync webhooks a finishing run queues: the environment's receivers (or the
/// connection's `connection_config.webhook_url` / `webhook_url_secondary` override) and the
/// environment's zero-change and failure settings.
public struct SyncWebhookPlanner: Sendable {
    let config: TributaryConfig

    public init(config: TributaryConfig) {
        self.config = config
    }

    /// The plan for a run of `ref`'s `sync`; nil when the environment sends no webhooks to this
    /// connection (no receivers, or no signing key to sign them with).
    public func plan(for ref: VariantRef, sync: SyncConfig, connectionConfig: JSONObject) -> SyncWebhookPlan? {
        guard let settings = config.environment(named: ref.connection.environment)?.webhooks, settings.signingKey != nil else { return nil }
        let urls = settings.urls(for: connectionConfig)
        guard !urls.isEmpty else { return nil }
        return SyncWebhookPlan(
            urls: urls, sendOnZeroChanges: settings.sendOnZeroChanges, sendOnFailure: settings.sendOnFailure, models: sync.models,
            linkCredentials: config.integration(ref.connection.providerConfigKey, in: ref.connection.environment)?.auth.credentialQueryNames ?? [])
    }

    /// The plan for a run of `ref`, reading the connection's override from `store`. A failure to read
    /// it falls back to the environment's receivers: a webhook is never dropped for want of the override.
    func plan(for ref: VariantRef, sync: SyncConfig, store: any StoreReader) async -> SyncWebhookPlan? {
        // Without a signing key nothing can be sent (a connection override requires one): skip the read.
        guard config.environment(named: ref.connection.environment)?.webhooks.signingKey != nil else { return nil }
        let connectionConfig = (try? await store.connection(ref.connection))?.connectionConfig ?? [:]
        return plan(for: ref, sync: sync, connectionConfig: connectionConfig)
    }
}
