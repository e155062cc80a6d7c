import TributaryCore

/// What finishing a run changes, decided from the run row and the variant as the finishing
/// transaction read them. The store checks the lease (``RunFence``), applies the deletion scans the
/// decision lists (adding their counts), then writes the run row, the variant and the outbox.
public enum RunCompletionRule {
    /// The run row as the finishing transaction read it.
    public struct Row: Sendable, Hashable {
        public var fence: RunFence.Row
        public var kind: RunKind
        public var startedAt: Timestamp
        public var deletionGeneration: Int64?
        /// The counts every attempt's writes added so far.
        public var results: [String: ModelResult]

        public init(fence: RunFence.Row, kind: RunKind, startedAt: Timestamp, deletionGeneration: Int64?, results: [String: ModelResult]) {
            self.fence = fence
            self.kind = kind
            self.startedAt = startedAt
            self.deletionGeneration = deletionGeneration
            self.results = results
        }
    }

    /// The variant after a successful run.
    public struct VariantUpdate: Sendable, Hashable {
        public var lastSyncDate: Timestamp
        public var clearCheckpoint: Bool
    }

    public struct Decision: Sendable {
        public var status: RunStatus
        public var error: String?
        public var retry: RetryAdvice?
        /// Counts so far with every declared model present; the store adds the deletions it applies.
        public var results: [String: ModelResult]
        /// Models whose live records not seen in `generation` are marked deleted.
        public var deleteUnseen: (models: [String], generation: Int64)?
        /// Success of a sync run: `lastSyncDate` (the run's first start), close the window, maybe clear the checkpoint.
        public var variant: VariantUpdate?
        /// Whether the variant's next run is planned (by ``NextRunPlan``) in this transaction.
        public var plansNextRun: Bool
        /// A run ending without a plan (started directly, as `dryrun` does) still leaves its variant on
        /// the schedule: a variant with no next run planned gets one now.
        public var keepsVariantScheduled: Bool
        /// A provider webhook execution: its task becomes open again (cancelled) or done.
        public var webhookTaskReopens: Bool?
    }

    public static func decide(_ completion: RunCompletion, row: Row) -> Decision {
        let (status, error) = completion.outcome.finalStatus
        var results = row.results
        for model in completion.models where results[model] == nil { results[model] = ModelResult() }
        let isRun = row.kind != .webhook
        var decision = Decision(
            status: status, error: error, retry: status == .failed && isRun ? completion.retry : nil, results: results, deleteUnseen: nil,
            variant: nil, plansNextRun: isRun && completion.nextRun != nil, keepsVariantScheduled: isRun && completion.nextRun == nil,
            webhookTaskReopens: nil)
        if !isRun {
            decision.webhookTaskReopens = status == .cancelled
            return decision
        }
        if status == .succeeded {
            if let generation = row.deletionGeneration, !completion.deleteUnseenModels.isEmpty {
                decision.deleteUnseen = (completion.deleteUnseenModels, generation)
            }
            decision.variant = VariantUpdate(lastSyncDate: row.startedAt, clearCheckpoint: completion.clearCheckpoint)
        }
        return decision
    }

    /// Whether ``consecutiveRetryableFailures(before:decision:)`` looks at the earlier runs: only after
    /// a temporary failure (otherwise the store need not read them).
    public static func countsEarlierFailures(_ decision: Decision) -> Bool {
        decision.status == .failed && decision.retry != nil
    }

    /// Temporary failures in a row ending with this run: the finished runs before it (newest first)
    /// that failed with a retry hint, plus this one when it did.
    public static func consecutiveRetryableFailures(before earlier: [RunRecord], decision: Decision) -> Int {
        guard countsEarlierFailures(decision) else { return 0 }
        return 1 + earlier.prefix { $0.status == .failed && $0.retry != nil }.count
    }
}
