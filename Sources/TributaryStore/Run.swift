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

    /// Queued or running: a variant has at most one active run (provider webhook executions aside).
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

/// A configured sync, as the run queue knows it: environment, integration and sync name.
public struct SyncAddress: Sendable, Hashable, CustomStringConvertible {
    public var environment: String
    public var providerConfigKey: String
    public var syncName: String

    public init(environment: String, providerConfigKey: String, syncName: String) {
        self.environment = environment
        self.providerConfigKey = providerConfigKey
        self.syncName = syncName
    }

    /// The sync a variant belongs to.
    public init(_ variant: VariantRef) {
        self.init(environment: variant.connection.environment, providerConfigKey: variant.connection.providerConfigKey, syncName: variant.syncName)
    }

    public var description: String { "\(environment)/\(providerConfigKey)/\(syncName)" }
}

/// How a worker claims a queued run (``RunQueueStore/claimRun(_:)``).
public struct RunClaim: Sendable {
    /// The claimed run's lease; a heartbeat renews it.
    public var leaseSeconds: Int64
    /// Runs of one connection running at once across all workers; queued runs of a connection at
    /// its limit are passed over.
    public var maxRunsPerConnection: Int
    /// The syncs this worker can run, each with whether its runs track deletes (a full refresh with
    /// `track_deletes`). A queued run of a sync not listed stays queued for a worker that runs it: the
    /// claim query filters on ``syncKeys``, so any number of such runs never holds up the others.
    public var syncs: [SyncAddress: Bool]

    /// Separates the parts of a ``syncKeys`` entry (a control character no name may contain).
    public static let keySeparator = "\u{1F}"

    /// `environment␟providerConfigKey␟syncName` for every sync the worker runs: the stores match a
    /// queued run's sync against these inside the claim query (SQL builds the same string).
    public var syncKeys: [String] {
        syncs.keys.map { [$0.environment, $0.providerConfigKey, $0.syncName].joined(separator: Self.keySeparator) }.sorted()
    }
    /// Who claims: recorded on the run (``RunRecord/worker``), so operators see which process ran it.
    public var worker: String?

    public init(leaseSeconds: Int64, maxRunsPerConnection: Int, worker: String? = nil, syncs: [SyncAddress: Bool]) {
        self.worker = worker
        self.leaseSeconds = leaseSeconds
        self.maxRunsPerConnection = maxRunsPerConnection
        self.syncs = syncs
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

/// A started run (one attempt of it) and the state it starts from.
public struct StartedRun: Sendable {
    /// The lease every write of this attempt presents (run id + fencing token).
    public var lease: RunLease
    /// When the run first started: a run resumed after an interruption keeps its first attempt's start.
    public var startedAt: Timestamp
    /// When the run waited in the queue since, for its first attempt (nil for later attempts and for
    /// runs started directly): the queue wait is `startedAt − queuedAt`.
    public var queuedAt: Timestamp? = nil
    public var kind: RunKind
    public var state: VariantState
    /// The deletion-tracking generation records saved in this run are marked with (nil: not
    /// tracking, or the run resumes from a checkpoint saved outside the open window — it deletes nothing).
    public var deletionGeneration: Int64?
    /// True when the run continues the deletion window its checkpoint was saved in.
    public var resumesWindow: Bool
    /// True when the run resumes from a checkpoint that was not saved in the variant's open deletion
    /// window (deletion tracking was turned on since, or the window was closed): it saves what it
    /// reads but deletes nothing, since it never sees the pages before its checkpoint.
    public var distrustsCheckpoint: Bool

    public var runId: Int64 { lease.runId }
    /// The attempt (1 for the first), which is also the lease's fencing token.
    public var attempt: Int64 { lease.token }

    public init(
        lease: RunLease, startedAt: Timestamp, kind: RunKind, state: VariantState, deletionGeneration: Int64?, resumesWindow: Bool,
        distrustsCheckpoint: Bool = false
    ) {
        self.lease = lease
        self.startedAt = startedAt
        self.kind = kind
        self.state = state
        self.deletionGeneration = deletionGeneration
        self.resumesWindow = resumesWindow
        self.distrustsCheckpoint = distrustsCheckpoint
    }
}

/// How a run ended.
public enum RunOutcome: Sendable, Hashable {
    case succeeded
    case failed(message: String)
    case cancelled(reason: String)
}

/// Everything that changes when a run ends, applied by ``RunLeaseStore/completeRun(_:_:)`` in one
/// transaction. The run's per-model counts are the store's own (every record write of every
/// attempt added to them in its transaction); the completion only names the models to report.
public struct RunCompletion: Sendable {
    public var outcome: RunOutcome
    /// The sync's models: each appears in the run's results, with zero counts when nothing changed.
    public var models: [String]
    /// On success: models whose unseen records are deleted (full refresh with `track_deletes`).
    public var deleteUnseenModels: [String]
    /// On success: clear the checkpoint (full-refresh syncs start each run from the beginning).
    public var clearCheckpoint: Bool
    /// On failure: the error was temporary (``RetryableError``), with the provider's wait if it gave one.
    public var retry: RetryAdvice?
    /// The sync webhooks to queue in the same transaction (nil: none).
    public var webhooks: SyncWebhookPlan?
    /// How the variant's next run is planned, in the same transaction (nil: leave `next_run_at` as
    /// it is — a provider webhook execution, or a run started directly).
    public var nextRun: NextRunPlan?

    public init(
        outcome: RunOutcome, models: [String] = [], deleteUnseenModels: [String] = [], clearCheckpoint: Bool = false,
        retry: RetryAdvice? = nil, webhooks: SyncWebhookPlan? = nil, nextRun: NextRunPlan? = nil
    ) {
        self.webhooks = webhooks
        self.outcome = outcome
        self.models = models
        self.deleteUnseenModels = deleteUnseenModels
        self.clearCheckpoint = clearCheckpoint
        self.retry = retry
        self.nextRun = nextRun
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
    /// When it first started (a resumed run keeps its first attempt's start); for a run queued and
    /// never started, when it was queued.
    public var startedAt: Timestamp
    public var finishedAt: Timestamp?
    public var results: [String: ModelResult]
    public var error: String?
    /// Set on a failed run whose error was temporary.
    public var retry: RetryAdvice?
    /// The worker process that claimed it from the queue (`host/pid`); nil for runs started directly.
    public var worker: String?
    /// Attempts so far: 0 while queued for the first time, 1 once claimed, one more each time it
    /// was resumed after an interruption (its process died, or a shutdown queued it again).
    public var attempts: Int

    public init(
        id: Int64, variant: VariantRef, status: RunStatus, kind: RunKind, startedAt: Timestamp, finishedAt: Timestamp?,
        results: [String: ModelResult], error: String?, retry: RetryAdvice? = nil, worker: String? = nil, attempts: Int = 1
    ) {
        self.attempts = attempts
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
