import TributaryCore

/// Where a run stands.
public enum RunStatus: String, Sendable, Hashable, CaseIterable {
    /// Waiting in the store's run queue for a worker to claim it.
    case queued
    case running
    case succeeded
    case failed
    case cancelled
    /// The process running it stopped without finishing it (lease expired).
    case expired

    /// Queued or running: a variant has at most one active run.
    public var isActive: Bool { self == .queued || self == .running }
    public var isFinished: Bool { !isActive }
}

/// Whether a run started from scratch or from a previous success (Nango's job type).
public enum RunKind: String, Sendable, Hashable {
    /// No `lastSyncDate` at start (first run, or after a reset).
    case initial = "INITIAL"
    case incremental = "INCREMENTAL"
    /// A provider webhook handled on the base variant: it runs beside the variant's own runs and
    /// changes neither `lastSyncDate` nor the checkpoint.
    case webhook = "WEBHOOK"
}

/// What the store needs to know to start a run.
public struct RunStart: Sendable {
    /// Full-refresh syncs with deletion tracking open (or continue) a deletion-tracking window.
    public var tracksDeletes: Bool
    /// How long a run's lease lasts without a heartbeat before another run may take over.
    public var leaseSeconds: Int64
    /// Create the variant (and its connection) when missing — for local development (`dryrun`).
    /// Scheduled and API-triggered runs pass false, so a run can never resurrect a deleted variant.
    public var createsVariant: Bool

    public init(tracksDeletes: Bool, leaseSeconds: Int64 = 120, createsVariant: Bool = true) {
        self.tracksDeletes = tracksDeletes
        self.leaseSeconds = leaseSeconds
        self.createsVariant = createsVariant
    }
}

/// How a worker claims a queued run (``Store/claimRun(_:)``).
public struct RunClaim: Sendable {
    /// The claimed run's lease; a heartbeat renews it.
    public var leaseSeconds: Int64
    /// Runs of one connection running at once across all workers; queued runs of a connection at
    /// its limit are passed over.
    public var maxRunsPerConnection: Int
    /// Whether a run of this variant tracks deletes (a full refresh with `track_deletes`); nil when its
    /// sync is no longer configured — the queued run then fails with that reason and the claim goes on.
    public var tracksDeletes: @Sendable (VariantRef) -> Bool?
    /// Who claims: recorded on the run (``RunRecord/worker``), so operators see which process ran it.
    public var worker: String?

    public init(
        leaseSeconds: Int64, maxRunsPerConnection: Int, worker: String? = nil, tracksDeletes: @escaping @Sendable (VariantRef) -> Bool?
    ) {
        self.worker = worker
        self.leaseSeconds = leaseSeconds
        self.maxRunsPerConnection = maxRunsPerConnection
        self.tracksDeletes = tracksDeletes
    }
}

/// A queued run a worker claimed and started.
public struct ClaimedRun: Sendable {
    public var variant: VariantRef
    public var started: StartedRun

    public init(variant: VariantRef, started: StartedRun) {
        self.variant = variant
        self.started = started
    }
}

/// A started run and the state it starts from.
public struct StartedRun: Sendable {
    public var runId: Int64
    public var startedAt: Timestamp
    public var kind: RunKind
    public var state: VariantState
    /// The deletion-tracking generation records saved in this run are marked with (nil: not tracking).
    public var deletionGeneration: Int64?
    /// True when the run continues the deletion window of an earlier, interrupted run.
    public var resumesWindow: Bool

    public init(runId: Int64, startedAt: Timestamp, kind: RunKind, state: VariantState, deletionGeneration: Int64?, resumesWindow: Bool) {
        self.runId = runId
        self.startedAt = startedAt
        self.kind = kind
        self.state = state
        self.deletionGeneration = deletionGeneration
        self.resumesWindow = resumesWindow
    }
}

/// How a run ended.
public enum RunOutcome: Sendable, Hashable {
    case succeeded
    case failed(message: String)
    case cancelled(reason: String)
}

/// Everything that changes when a run ends.
public struct RunCompletion: Sendable {
    public var outcome: RunOutcome
    /// Per-model counts gathered while the run wrote records.
    public var results: [String: ModelResult]
    /// On success: models whose unseen records are deleted (full refresh with `track_deletes`).
    public var deleteUnseenModels: [String]
    /// On success: clear the checkpoint (full-refresh syncs start each run from the beginning).
    public var clearCheckpoint: Bool
    /// On failure: the error was temporary (``RetryableError``), with the provider's wait if it gave one.
    public var retry: RetryAdvice?
    /// The sync webhooks to queue in the same transaction (nil: none).
    public var webhooks: SyncWebhookPlan?

    public init(
        outcome: RunOutcome, results: [String: ModelResult], deleteUnseenModels: [String] = [], clearCheckpoint: Bool = false,
        retry: RetryAdvice? = nil, webhooks: SyncWebhookPlan? = nil
    ) {
        self.webhooks = webhooks
        self.outcome = outcome
        self.results = results
        self.deleteUnseenModels = deleteUnseenModels
        self.clearCheckpoint = clearCheckpoint
        self.retry = retry
    }
}

/// A failed run's hint that retrying soon may succeed.
public struct RetryAdvice: Sendable, Hashable {
    /// The provider's own wait (`Retry-After`), in seconds.
    public var afterSeconds: Double?

    public init(afterSeconds: Double? = nil) { self.afterSeconds = afterSeconds }
}

/// One run as recorded.
public struct RunRecord: Sendable, Hashable {
    public var id: Int64
    public var variant: VariantRef
    public var status: RunStatus
    public var kind: RunKind
    /// When it started; for a queued run, when it was queued.
    public var startedAt: Timestamp
    public var finishedAt: Timestamp?
    public var results: [String: ModelResult]
    public var error: String?
    /// Set on a failed run whose error was temporary.
    public var retry: RetryAdvice?
    /// The worker process that claimed it from the queue (`host/pid`); nil for runs started directly.
    public var worker: String?

    public init(
        id: Int64, variant: VariantRef, status: RunStatus, kind: RunKind, startedAt: Timestamp, finishedAt: Timestamp?,
        results: [String: ModelResult], error: String?, retry: RetryAdvice? = nil, worker: String? = nil
    ) {
        self.worker = worker
        self.retry = retry
        self.id = id
        self.variant = variant
        self.status = status
        self.kind = kind
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.results = results
        self.error = error
    }
}

/// One line of a run's log.
public struct RunLogEntry: Sendable, Hashable {
    public var at: Timestamp
    public var level: LogLevel
    public var message: String

    public init(at: Timestamp, level: LogLevel, message: String) {
        self.at = at
        self.level = level
        self.message = message
    }
}
