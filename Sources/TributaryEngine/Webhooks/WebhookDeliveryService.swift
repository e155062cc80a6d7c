import Logging
import ServiceLifecycle
import Synchronization
import TributaryCore
import TributaryStore

/// Sends the outbox's webhooks to the app: signed (`X-Nango-Hmac-Sha256` over the exact stored
/// bytes, with the environment's current signing key), with an `Idempotency-Key` that stays the same
/// across attempts, each attempt bounded by a timeout.
///
/// - 2xx: delivered.
/// - Network error, timeout, 408, 429 or 5xx: tried again after an exponential backoff with jitter
///   (429's `Retry-After` is honoured), until `give_up_after_hours` have passed since it was queued.
/// - Any other answer (3xx, 4xx): the receiver refused it; given up at once.
///
/// Each receiver URL gets its webhooks one at a time, oldest first, so they arrive in run order;
/// different receivers are served in parallel (`concurrency`). A claim holds a delivery for the
/// attempt's timeout plus a margin, so with several processes a delivery is sent by one at a time,
/// and one whose process died is sent again by another (at least once; receivers drop repeats by
/// `Idempotency-Key`).
///
/// A `Service`: on graceful shutdown it claims nothing more and lets attempts in flight finish.
public final class WebhookDeliveryService: Service, Sendable {
    private let store: any WebhookOutboxStore
    private let config: TributaryConfig
    private let http: OutboundHTTP
    private let logger: Logger
    private let clock: @Sendable () -> Timestamp
    private let jitter: @Sendable () -> Double
    private let wakeups: AsyncStream<Void>
    private let wakeContinuation: AsyncStream<Void>.Continuation
    private let inFlight = Mutex((count: 0, accepting: true))

    /// Where delivery outcomes are counted.
    let metrics: TributaryMetrics

    /// - Parameters:
    ///   - jitter: the factor applied to each backoff (0.8…1.2 by default; tests fix it).
    ///   - metrics: where delivery outcomes are counted.
    public init(
        store: any WebhookOutboxStore, config: TributaryConfig, http: OutboundHTTP, logger: Logger, clock: @escaping @Sendable () -> Timestamp = { Timestamp.now() },
        jitter: @escaping @Sendable () -> Double = { Double.random(in: 0.8...1.2) }, metrics: TributaryMetrics = .disabled
    ) {
        self.metrics = metrics
        self.store = store
        self.config = config
        self.http = http
        self.logger = logger
        self.clock = clock
        self.jitter = jitter
        (wakeups, wakeContinuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    private var settings: WebhookDeliveryConfig { config.webhookDelivery }

    public func run() async throws {
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.pollUntilShutdown() }
                for await _ in wakeups {
                    for delivery in await claimDue() {
                        group.addTask {
                            await self.deliver(delivery)
                            self.inFlight.withLock { $0.count -= 1 }
                            self.wake()
                        }
                    }
                }
            }
        } onGracefulShutdown: {
            self.inFlight.withLock { $0.accepting = false }
            self.wakeContinuation.finish()
        }
    }

    /// Looks for due deliveries now (after this process queued some).
    public func wake() {
        wakeContinuation.yield()
    }

    private func pollUntilShutdown() async {
        while inFlight.withLock({ $0.accepting }), !Task.isCancelled {
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(Int64(self.settings.pollSeconds * 1000))) }
            wakeContinuation.yield()
        }
    }

    private func claimDue() async -> [WebhookDelivery] {
        let free = inFlight.withLock { state -> Int in
            guard state.accepting else { return 0 }
            return settings.concurrency - state.count
        }
        guard free > 0 else { return [] }
        do {
            // A shutdown does not wait for the database (it may be unreachable).
            let claimed = try await cancelWhenGracefulShutdown { [store, clock, settings] in
                try await store.claimDeliveries(now: clock(), limit: free, leaseSeconds: settings.timeoutSeconds + 30)
            }
            inFlight.withLock { $0.count += claimed.count }
            return claimed
        } catch is CancellationError {
            return []
        } catch {
            logger.error("could not claim webhook deliveries", metadata: ["error": "\(error)"])
            return []
        }
    }

    /// Makes one attempt and records its outcome.
    func deliver(_ delivery: WebhookDelivery) async {
        let result = await attempt(delivery)
        var metadata: Logger.Metadata = ["delivery": "\(delivery.id)", "url": "\(EnvironmentWebhooks.redacted(delivery.url))", "attempt": "\(delivery.attempts + 1)"]
        switch result {
        case .delivered: metrics.webhookDelivery(environment: delivery.environment, outcome: "delivered")
        case .retry: metrics.webhookDelivery(environment: delivery.environment, outcome: "retrying")
        case .gaveUp: metrics.webhookDelivery(environment: delivery.environment, outcome: "failed")
        }
        switch result {
        case .delivered: logger.debug("webhook delivered", metadata: metadata)
        case .retry(let error, _, let next):
            metadata["error"] = "\(error)"
            metadata["next_attempt_at"] = "\(next.iso8601)"
            logger.info("webhook delivery failed; will retry", metadata: metadata)
        case .gaveUp(let error, _):
            metadata["error"] = "\(error)"
            logger.warning("webhook delivery given up", metadata: metadata)
        }
        do {
            // Recorded even when the service is being cancelled (an attempt that happened must count),
            // within a few seconds at most.
            try await shielded { [store] in try await store.recordDeliveryAttempt(delivery.id, result) }
        } catch {
            logger.error("could not record a webhook delivery attempt", metadata: ["delivery": "\(delivery.id)", "error": "\(error)"])
        }
    }

    private func attempt(_ delivery: WebhookDelivery) async -> DeliveryAttemptResult {
        guard let environment = config.environment(named: delivery.environment) else {
            return .gaveUp(error: "Environment '\(delivery.environment)' is no longer configured.", statusCode: nil)
        }
        guard let key = environment.webhooks.signingKey else {
            return .gaveUp(error: "Environment '\(delivery.environment)' has no webhooks.signing_key to sign with.", statusCode: nil)
        }
        let headers: [(name: String, value: String)] = [
            ("Content-Type", "application/json"),
            (WebhookSignature.header, WebhookSignature.sign(delivery.body, key: key.value)),
            (WebhookSignature.legacyHeader, WebhookSignature.legacySign(delivery.body, key: key.value)),
            ("Idempotency-Key", delivery.idempotencyKey),
            ("X-Tributary-Delivery-Attempt", "\(delivery.attempts + 1)"),
            ("User-Agent", "Tributary-Webhooks"),
        ]
        let response: ProviderResponse
        do {
            response = try await http.perform(
                method: .POST, url: delivery.url, headers: headers, body: delivery.body,
                timeout: .milliseconds(Int64(settings.timeoutSeconds * 1000)), maxBytes: 65_536)
        } catch {
            return failed(delivery, error: "The receiver could not be reached: \(Self.describe(error))", statusCode: nil, retryable: true)
        }
        switch response.status {
        case 200..<300:
            return .delivered(statusCode: response.status)
        case 408, 429, 500..<600:
            let retryAfter = response.status == 429 ? response.header("Retry-After").flatMap(Double.init) : nil
            return failed(delivery, error: "The receiver answered \(response.status).", statusCode: response.status, retryable: true, retryAfter: retryAfter)
        default:
            return failed(delivery, error: "The receiver refused the webhook with \(response.status).", statusCode: response.status, retryable: false)
        }
    }

    private func failed(_ delivery: WebhookDelivery, error: String, statusCode: Int?, retryable: Bool, retryAfter: Double? = nil) -> DeliveryAttemptResult {
        let now = clock()
        let age = Double(now.microseconds - delivery.createdAt.microseconds) / 1_000_000
        guard retryable, age < settings.giveUpAfterSeconds else {
            let reason = retryable ? "\(error) Given up after \(delivery.attempts + 1) attempts." : error
            return .gaveUp(error: reason, statusCode: statusCode)
        }
        let failures = delivery.attempts + 1
        let delay = min(
            settings.backoff.delay(attempt: failures, retryAfterSeconds: retryAfter, jitter: jitter()) ?? settings.retryMaxSeconds,
            settings.retryMaxSeconds)
        return .retry(error: error, statusCode: statusCode, nextAttemptAt: Timestamp(microseconds: now.microseconds + Int64(delay * 1_000_000)))
    }

    /// A short, secret-free description of a network error.
    static func describe(_ error: any Error) -> String {
        let text = String(describing: error)
        return text.count > 300 ? String(text.prefix(300)) + "…" : text
    }
}
