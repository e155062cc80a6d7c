import TributaryCore

/// Provider webhooks accepted by the API, waiting for a worker to run their handler.
public protocol ProviderWebhookStore: Sendable {
    /// Stores a provider webhook for each listed base variant, all or none. Variants that do not exist are skipped.
    func enqueueProviderWebhook(for variants: [VariantRef], type: String?, payload: [UInt8]) async throws -> [ProviderWebhookTask]
    /// Claims the oldest provider webhook task that is at the head of its variant's queue — a
    /// variant's webhooks are handled one at a time, in arrival order — and not claimed (or whose
    /// claim's run is no longer alive), and opens a `running` run of kind `WEBHOOK` with its own lease
    /// for it. A task claimed `maxAttempts` times already is given up: its run is recorded as failed.
    func claimProviderWebhook(leaseSeconds: Int64, maxAttempts: Int) async throws -> ClaimedProviderWebhook?
}
