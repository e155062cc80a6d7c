import TributaryCore

/// The rules of an action execution's attempts, the same for both stores: the fence every write
/// passes, what an ending attempt writes, and what a claim of an expired lease does.
public enum ActionAttemptRule {
    /// What a store reads of an execution row to check a lease.
    public struct Row: Sendable, Hashable {
        public var status: ActionRunStatus
        public var token: Int64
        /// When the lease runs out without a heartbeat (microseconds, on the store's lease clock).
        public var leaseEnd: Int64

        public init(status: ActionRunStatus, token: Int64, leaseEnd: Int64) {
            self.status = status
            self.token = token
            self.leaseEnd = leaseEnd
        }
    }

    /// Whether `lease` is held, given the row (nil: the execution does not exist) at `now`.
    public static func state(of lease: ActionLease, row: Row?, now: Int64) -> LeaseState {
        guard let row else { return .lost(reason: "action \(lease.id) no longer exists (its connection was deleted)") }
        guard row.status == .running else { return .lost(reason: "action \(lease.id) is \(row.status.rawValue)") }
        guard row.token == lease.token else {
            return .lost(reason: "action \(lease.id) was taken over by attempt \(row.token) (this is attempt \(lease.token))")
        }
        guard row.leaseEnd > now else { return .lost(reason: "the lease of action \(lease.id) ran out (no heartbeat in time)") }
        return .held
    }

    /// Throws `lease_lost` unless `lease` is held.
    public static func check(_ lease: ActionLease, row: Row?, now: Int64) throws(TributaryError) {
        if case .lost(let reason) = state(of: lease, row: row, now: now) {
            throw TributaryError(.leaseLost, "The action no longer holds its lease (\(reason)); the write was not applied.")
        }
    }

    /// What an ending attempt writes.
    public struct Ending: Sendable, Hashable {
        public var status: ActionRunStatus
        /// For a retry: when the next attempt may start.
        public var nextAttemptAt: Timestamp?
        public var countsRetryableFailure: Bool
        /// An async execution that ended for good sends its webhook.
        public var sendsWebhook: Bool
    }

    /// How an attempt ends: success; a retryable failure of an async execution with retries left
    /// (`retryableFailures` so far < `maxRetries`) is queued again `retryDelaySeconds` × 2^failures
    /// later (at most an hour); everything else fails for good.
    public static func ending(
        _ outcome: ActionOutcome, isAsync: Bool, retryableFailures: Int, maxRetries: Int, retryDelaySeconds: Double, now: Timestamp
    ) -> Ending {
        switch outcome {
        case .succeeded:
            return Ending(status: .succeeded, nextAttemptAt: nil, countsRetryableFailure: false, sendsWebhook: isAsync)
        case .failed(_, let retryable):
            if retryable, isAsync, retryableFailures < maxRetries {
                let exponent = min(retryableFailures, 12)
                let delay = min(retryDelaySeconds * Double(1 << exponent), 3_600)
                return Ending(
                    status: .queued, nextAttemptAt: Timestamp(microseconds: now.microseconds + Int64(delay * 1_000_000)),
                    countsRetryableFailure: true, sendsWebhook: false)
            }
            return Ending(status: .failed, nextAttemptAt: nil, countsRetryableFailure: retryable, sendsWebhook: isAsync)
        }
    }

    /// The failure of an execution whose lease ran out once too often.
    public static func expired(after expiries: Int) -> ActionFailure {
        ActionFailure(
            status: 500, code: "action_script_failure",
            message: "The action's worker stopped (its lease ran out \(expiries) times); it was not run again.", payload: ["reason": "lease_expired"])
    }
}
