import TributaryCore

/// How an attempt of a run starts, decided from what the claiming (or starting) transaction read:
/// the run row, the variant's state and whether the sync tracks deletes. The store writes what the
/// decision says (the run's start, kind, attempt and window; the variant's window) and hands the
/// ``StartedRun`` to the worker.
///
/// - A run keeps its **first start** across attempts: it becomes `lastSyncDate` and the webhooks'
///   `modifiedAfter`, so an app reading `modified_after=<modifiedAfter>` sees what every attempt saved.
/// - **Deletion window** (full refresh with `track_deletes`): a run continues the variant's open
///   window only when it resumes from a checkpoint saved in that window (or it is the same run's next
///   attempt, restarting inside its own window). A run resuming from any other checkpoint — saved
///   before tracking was turned on, or after the window closed — cannot have seen the pages before
///   it, so it tracks no window and deletes nothing; the next run from the beginning does. Without a
///   checkpoint a run opens a new window, identified by its run id.
public enum RunStartRule {
    /// The run row as the starting transaction read it.
    public struct Row: Sendable, Hashable {
        /// Attempts made before this one (0: the run never started).
        public var attempts: Int64
        /// Its first start (meaningful when `attempts > 0`).
        public var startedAt: Timestamp
        /// The kind its first attempt started as.
        public var kind: RunKind
        /// The window its earlier attempts tracked.
        public var deletionGeneration: Int64?

        public init(attempts: Int64, startedAt: Timestamp, kind: RunKind, deletionGeneration: Int64?) {
            self.attempts = attempts
            self.startedAt = startedAt
            self.kind = kind
            self.deletionGeneration = deletionGeneration
        }

        /// A run that never started.
        public static let new = Row(attempts: 0, startedAt: Timestamp(microseconds: 0), kind: .initial, deletionGeneration: nil)
    }

    /// What to write and what the worker starts from.
    public struct Decision: Sendable {
        public var started: StartedRun
        /// The variant's open window after the start, when it changes (`.some(nil)` closes it).
        public var variantWindow: Int64??
    }

    public static func begin(runId: Int64, row: Row, now: Timestamp, state: VariantState, tracksDeletes: Bool) -> Decision {
        let attempt = row.attempts + 1
        let resumedAttempt = row.attempts > 0
        let startedAt = resumedAttempt ? row.startedAt : now
        let kind: RunKind = resumedAttempt ? row.kind : (state.lastSyncDate == nil ? .initial : .incremental)
        var generation: Int64? = nil
        var resumes = false
        var distrusts = false
        if tracksDeletes {
            let open = state.deletionGeneration
            if state.checkpoint != nil {
                if let open, state.checkpointGeneration == open {
                    generation = open
                    resumes = true
                } else {
                    distrusts = true
                }
            } else if resumedAttempt, let open, open == row.deletionGeneration {
                generation = open
                resumes = true
            } else {
                generation = runId
            }
        }
        var startState = state
        startState.deletionGeneration = generation
        var started = StartedRun(
            lease: RunLease(runId: runId, token: attempt), startedAt: startedAt, kind: kind, state: startState, deletionGeneration: generation,
            resumesWindow: resumes, distrustsCheckpoint: distrusts)
        // A queued run's row carries its queue time until its first claim overwrites it with the start.
        started.queuedAt = resumedAttempt || row == .new ? nil : row.startedAt
        return Decision(started: started, variantWindow: generation == state.deletionGeneration ? nil : .some(generation))
    }
}
