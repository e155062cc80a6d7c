import TributaryCore

/// The fencing rule every run-scoped write passes, inside the write's own transaction: the run row
/// as the transaction read it must be `running`, under the lease's token, with time left on the lease.
public enum RunFence {
    /// What a store reads of a run row to check a lease.
    public struct Row: Sendable, Hashable {
        public var status: RunStatus
        /// The token of the attempt that holds the run (its attempt count).
        public var token: Int64
        /// When the lease runs out without a heartbeat (microseconds, on the store's lease clock).
        public var leaseEnd: Int64

        public init(status: RunStatus, token: Int64, leaseEnd: Int64) {
            self.status = status
            self.token = token
            self.leaseEnd = leaseEnd
        }
    }

    /// Whether `lease` is held, given the run row (nil: the run does not exist) at `now`.
    public static func state(of lease: RunLease, row: Row?, now: Int64) -> LeaseState {
        guard let row else { return .lost(reason: "run \(lease.runId) no longer exists (its variant or connection was deleted)") }
        guard row.status == .running else { return .lost(reason: "run \(lease.runId) is \(row.status.rawValue)") }
        guard row.token == lease.token else {
            return .lost(reason: "run \(lease.runId) was taken over by attempt \(row.token) (this is attempt \(lease.token))")
        }
        guard row.leaseEnd > now else { return .lost(reason: "the lease of run \(lease.runId) ran out (no heartbeat in time)") }
        return .held
    }

    /// Throws unless `lease` is held: `unknown_run` when the run is gone, `run_not_running` when it
    /// ended or was queued again, `lease_lost` when another attempt holds it or its time ran out.
    public static func check(_ lease: RunLease, row: Row?, now: Int64) throws(TributaryError) {
        switch state(of: lease, row: row, now: now) {
        case .held: return
        case .lost(let reason):
            guard let row else { throw TributaryError(.unknownRun, "Run \(lease.runId) does not exist; the write was not applied.") }
            if row.status != .running {
                throw TributaryError(.runNotRunning, "Run \(lease.runId) is no longer running (it is \(row.status.rawValue)); the write was not applied.")
            }
            throw TributaryError(.leaseLost, "The run no longer holds its lease (\(reason)); the write was not applied.")
        }
    }
}
