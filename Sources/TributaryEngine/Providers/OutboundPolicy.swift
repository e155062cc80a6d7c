import TributaryCore

/// How provider calls behave: timeouts, retries, and the largest response read.
public struct OutboundPolicy: Sendable, Hashable {
    /// The whole call, from sending to the last byte read.
    public var timeout: Duration
    /// Attempts after the first, on network errors, 5xx and 429.
    public var retries: Int
    /// The first retry's delay; each further one doubles it (±20% jitter), up to `maxDelay`.
    public var baseDelay: Duration
    public var maxDelay: Duration
    /// The longest `Retry-After` honoured within a call; a longer one ends the call (the run's retry
    /// policy takes over, with that wait).
    public var maxRetryAfter: Duration
    /// Responses larger than this fail the call.
    public var maxResponseBytes: Int
    /// Pages of a paginated listing (``ProviderRequest/isPage``) larger than this fail the call: it
    /// bounds what one run holds in memory.
    public var maxPageBytes: Int

    public init(
        timeout: Duration = .seconds(30), retries: Int = 3, baseDelay: Duration = .milliseconds(500), maxDelay: Duration = .seconds(30),
        maxRetryAfter: Duration = .seconds(60), maxResponseBytes: Int = 50 * 1024 * 1024, maxPageBytes: Int = 16 * 1024 * 1024
    ) {
        self.timeout = timeout
        self.retries = max(0, retries)
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
        self.maxRetryAfter = maxRetryAfter
        self.maxResponseBytes = maxResponseBytes
        self.maxPageBytes = maxPageBytes
    }

    /// The policy the configuration's `outbound` section sets (backoff delays keep their defaults).
    public init(_ config: OutboundConfig) {
        self.init(
            timeout: .seconds(config.timeoutSeconds), retries: config.retries, maxRetryAfter: .seconds(config.maxRetryAfterSeconds),
            maxResponseBytes: config.maxResponseBytes, maxPageBytes: config.maxPageBytes)
    }

    /// The largest response `request` may have, and the setting that says so (for the error).
    func responseLimit(for request: ProviderRequest) -> (bytes: Int, setting: String) {
        request.isPage && maxPageBytes < maxResponseBytes ? (maxPageBytes, "outbound.max_page_bytes") : (maxResponseBytes, "outbound.max_response_bytes")
    }

    /// The wait before retry number `attempt` (1-based): the same exponential backoff with ±20%
    /// jitter as a run's ``RetryPolicy``, on this policy's scale.
    func delay(attempt: Int) -> Duration {
        let backoff = RetryPolicy(maxAttempts: attempt, baseSeconds: baseDelay.inSeconds, maxSeconds: maxDelay.inSeconds)
        return .milliseconds(Int64((backoff.delay(attempt: attempt) ?? 0) * 1000))
    }
}
