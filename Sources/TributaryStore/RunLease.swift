import TributaryCore

/// The right to write for one attempt of one run — the fencing token of lease-based systems.
///
/// Claiming a run (or starting one) hands out a lease: the run's id and a token that grows with
/// every attempt of that run (a run resumed after an interruption is claimed again and gets the
/// next token). Every write made for the run — records, checkpoint, metadata, logs, its outcome —
/// presents the lease, and the store applies it only if, in the same transaction, the run is still
/// `running` under that token and its lease time has not run out (``RunFence``). A write of a
/// cancelled, expired or superseded attempt fails with `lease_lost` and changes nothing.
public struct RunLease: Sendable, Hashable, CustomStringConvertible {
    public var runId: Int64
    /// The attempt the lease was handed out for (1 for a run's first attempt).
    public var token: Int64

    public init(runId: Int64, token: Int64) {
        self.runId = runId
        self.token = token
    }

    public var description: String { "run \(runId) attempt \(token)" }
}

/// Whether a lease is still held (``RunLeaseStore/renewLease(_:)``).
public enum LeaseState: Sendable, Hashable {
    /// The run is running under this lease: its writes are applied.
    case held
    /// The lease is gone: the run was ended by someone else, its lease time ran out, a later attempt
    /// took it over, or the run no longer exists. The run's function must stop.
    case lost(reason: String)

    public var isHeld: Bool { self == .held }
}
