import TributaryCore

/// What a lifecycle change of a variant does to its active runs, applied in the transaction that
/// makes the change (one transaction: no run claimed in between keeps the old state, and a late
/// write of an ended run is fenced out — ``RunFence``).
public enum VariantLifecycle {
    public enum Change: Sendable, Hashable {
        /// Pausing the schedule ends the variant's queued or running run; provider webhook
        /// executions go on (webhooks are handled while paused).
        case pause
        /// Reset (`lastSyncDate`, checkpoint, window; with `emptyCache` the records) ends every active
        /// run, provider webhook executions included — their webhooks are handled again afterwards.
        case reset(emptyCache: Bool)
        /// Deleting the variant (or its connection) ends every active run; the runs go with it.
        case delete
    }

    /// An active run as the changing transaction read it.
    public struct ActiveRun: Sendable, Hashable {
        public var id: Int64
        public var status: RunStatus
        public var kind: RunKind

        public init(id: Int64, status: RunStatus, kind: RunKind) {
            self.id = id
            self.status = status
            self.kind = kind
        }
    }

    /// How one active run ends.
    public struct Ending: Sendable, Hashable {
        public var runId: Int64
        public var kind: RunKind
        /// The error text recorded on the cancelled run.
        public var reason: String
        /// A provider webhook execution whose task is opened again, to run after the change.
        public var reopensWebhookTask: Bool
    }

    public static func endings(for change: Change, active: [ActiveRun]) -> [Ending] {
        active.compactMap { run in
            let isWebhook = run.kind == .webhook
            switch change {
            case .pause:
                guard !isWebhook else { return nil }
                return Ending(runId: run.id, kind: run.kind, reason: reason("the variant was paused", queued: run.status == .queued), reopensWebhookTask: false)
            case .reset:
                return Ending(runId: run.id, kind: run.kind, reason: reason("the variant was reset", queued: run.status == .queued), reopensWebhookTask: isWebhook)
            case .delete:
                return Ending(runId: run.id, kind: run.kind, reason: reason("the variant was deleted", queued: run.status == .queued), reopensWebhookTask: false)
            }
        }
    }

    static func reason(_ what: String, queued: Bool) -> String {
        queued ? "Cancelled before it started: \(what)." : "Cancelled: \(what)."
    }
}
