import TributaryCore

/// The outbox of webhooks to the app, as the delivery service works it.
public protocol WebhookOutboxStore: Sendable {
    /// Claims due deliveries, at most one per receiver URL — the oldest pending one of each, so a
    /// receiver gets its webhooks in order — and locks each for `leaseSeconds`.
    func claimDeliveries(now: Timestamp, limit: Int, leaseSeconds: Double) async throws -> [WebhookDelivery]
    /// Records an attempt's outcome and releases the claim.
    func recordDeliveryAttempt(_ id: Int64, _ result: DeliveryAttemptResult) async throws
    /// Sends a delivery again: it becomes `pending`, due now (its attempts are kept). Nil when it
    /// does not exist in the environment.
    func retryDelivery(_ id: Int64, environment: String, now: Timestamp) async throws -> WebhookDelivery?
}
