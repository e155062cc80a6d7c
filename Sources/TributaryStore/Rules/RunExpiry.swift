import TributaryCore

/// What happens to a running run whose lease ran out (its process died, froze past the lease, or
/// lost the database): decided per run by the expiring transaction.
public enum RunExpiry {
    /// When expired runs are retried.
    public struct Policy: Sendable, Hashable {
        /// Attempts a run gets when its lease keeps running out: a run whose lease expired this many
        /// times is given up (recorded `expired`). A graceful shutdown's re-queue does not count.
        public var maxAttempts: Int
        /// A given-up run's variant runs again after this long (it is not dropped from the schedule).
        public var giveUpDelaySeconds: Int64

        public init(maxAttempts: Int = 5, giveUpDelaySeconds: Int64 = 900) {
            self.maxAttempts = max(1, maxAttempts)
            self.giveUpDelaySeconds = max(1, giveUpDelaySeconds)
        }
    }

    /// What the store does with one timed-out run.
    public enum Action: Sendable, Hashable {
        /// Back to `queued`, the same run: the next claim is its next attempt and resumes from the
        /// checkpoint, keeping its first start, its window and its counts.
        case requeue
        /// Finished as `expired`; the variant's next run is planned at `nextRunAt` (nil: leave it —
        /// a paused variant plans its next run when it is started again).
        case giveUp(nextRunAt: Timestamp?)
        /// A provider webhook execution: finished as `expired`; its task is claimed again.
        case expireWebhookExecution
    }

    /// - Parameter expiries: the run's lease expiries before this one.
    public static func action(kind: RunKind, expiries: Int64, variantPaused: Bool, now: Timestamp, policy: Policy) -> Action {
        if kind == .webhook { return .expireWebhookExecution }
        if variantPaused { return .giveUp(nextRunAt: nil) }
        if expiries + 1 < Int64(policy.maxAttempts) { return .requeue }
        return .giveUp(nextRunAt: Timestamp(microseconds: now.microseconds + policy.giveUpDelaySeconds * 1_000_000))
    }

    /// The error recorded on a given-up run.
    public static func gaveUpMessage(expiries: Int64) -> String {
        "Given up: \(expiries) times, the process running it stopped renewing its lease before it finished (it died, froze or lost the database)."
    }

    /// The log line of an interrupted attempt, written on the run when it is queued again.
    public static func interruptedMessage(attempt: Int64, worker: String?) -> String {
        "Attempt \(attempt) was interrupted: \(worker.map { "its process (\($0))" } ?? "its process") stopped renewing the lease; the run is queued again and resumes from its checkpoint."
    }
}
