/// An error that marks a failure as temporary — a network error, a 5xx, a 429 — so the run is
/// retried after a backoff instead of waiting for the variant's next scheduled slot.
///
/// ```swift
/// struct ProviderUnavailable: RetryableError { let status: Int }
/// throw ProviderUnavailable(status: 503)
/// ```
public protocol RetryableError: Error {
    /// The provider's own wait (`Retry-After`), if it gave one; nil lets the backoff decide.
    var retryAfterSeconds: Double? { get }
}

extension RetryableError {
    public var retryAfterSeconds: Double? { nil }
}

/// When to retry a variant after consecutive retryable failures: exponential backoff with jitter.
public struct RetryPolicy: Sendable, Hashable {
    /// Retries after consecutive retryable failures; then the variant waits for its next slot.
    public var maxAttempts: Int
    /// The first retry's delay; each further one doubles it.
    public var baseSeconds: Double
    /// The longest delay.
    public var maxSeconds: Double

    public init(maxAttempts: Int = 3, baseSeconds: Double = 10, maxSeconds: Double = 900) {
        self.maxAttempts = max(0, maxAttempts)
        self.baseSeconds = max(0.01, baseSeconds)
        self.maxSeconds = max(self.baseSeconds, maxSeconds)
    }

    /// The delay before retry number `attempt` (1-based), or nil once the attempts are used up.
    /// - Parameter jitter: a factor in 0.8…1.2 (random by default) so variants that failed together do not retry together.
    public func delay(attempt: Int, retryAfterSeconds: Double? = nil, jitter: Double = Double.random(in: 0.8...1.2)) -> Double? {
        guard attempt >= 1, attempt <= maxAttempts else { return nil }
        let backoff = min(maxSeconds, baseSeconds * Double(1 << min(attempt - 1, 30))) * jitter
        return max(backoff, retryAfterSeconds ?? 0)
    }
}
