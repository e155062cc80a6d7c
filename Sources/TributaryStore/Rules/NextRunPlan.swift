import TributaryCore

/// How a variant's next run is planned when a run ends — data the worker passes with the outcome,
/// applied by the store in the transaction that ends the run, so a variant that is not paused always
/// has an active run or a planned next run (no crash between two steps can drop it off the schedule).
public struct NextRunPlan: Sendable, Hashable {
    /// The sync's configured frequency (a variant's own override wins).
    public var frequency: Frequency
    /// The sync's jitter and overlap rule.
    public var schedule: SchedulePolicy
    /// When runs that failed with a ``RetryableError`` are retried.
    public var retry: RetryPolicy
    /// The time the plan counts from: the run's end as its worker sees it.
    public var from: Timestamp
    /// The retry delay's jitter factor (0.8…1.2), drawn by the caller so the rule stays a pure function.
    public var jitter: Double

    public init(
        frequency: Frequency, schedule: SchedulePolicy = SchedulePolicy(), retry: RetryPolicy, from: Timestamp,
        jitter: Double = Double.random(in: 0.8...1.2)
    ) {
        self.frequency = frequency
        self.schedule = schedule
        self.retry = retry
        self.from = from
        self.jitter = jitter
    }

    /// The longest wait a provider's `Retry-After` may impose on a retry (one week).
    public static let longestRetryWaitSeconds: Double = 7 * 86_400

    /// The next run: the first slot of the variant's schedule after `from` (slots missed while running
    /// are skipped — or, with `overlap: run_after`, `from` itself when one was missed) — or, after a
    /// temporary failure, an earlier retry per ``RetryPolicy``.
    ///
    /// - Parameters:
    ///   - activeSince: when the finished run was queued (its first start).
    ///   - retry: the finished run's retry advice (nil: it did not fail with a temporary error).
    ///   - consecutiveRetryableFailures: temporary failures in a row, this run included.
    public func next(for state: VariantState, activeSince: Timestamp? = nil, retry advice: RetryAdvice?, consecutiveRetryableFailures: Int) -> Timestamp {
        // After a temporary failure the retry's backoff decides, not `run_after`: a run that keeps failing
        // past its slots must not be queued again at once.
        var policy = schedule
        if advice != nil { policy.overlap = .skip }
        var next = policy.next(
            state.frequency(configured: frequency), variant: state.id, origin: state.createdAt, activeSince: activeSince, end: from)
        if let advice, let delay = retry.delay(attempt: consecutiveRetryableFailures, retryAfterSeconds: Self.wait(advice.afterSeconds), jitter: jitter) {
            let micros = Int64(min(delay, Self.longestRetryWaitSeconds) * 1_000_000)
            next = min(next, Timestamp(microseconds: from.microseconds + micros))
        }
        return next
    }

    /// A provider's wait as a finite number of seconds within the bound (nil when it gave none or nonsense).
    static func wait(_ seconds: Double?) -> Double? {
        guard let seconds, seconds.isFinite, seconds >= 0 else { return nil }
        return min(seconds, longestRetryWaitSeconds)
    }

    /// `afterSeconds` as whole milliseconds for the run row, bounded (nil when absent or not finite).
    public static func milliseconds(_ advice: RetryAdvice?) -> Int64? {
        guard let seconds = wait(advice?.afterSeconds) else { return nil }
        return Int64(seconds * 1000)
    }
}
