import TributaryCore

/// The persisted state of one sync variant.
public struct VariantState: Sendable, Hashable {
    /// Stable public id (a UUID), what the API calls the sync's `id`.
    public var id: String
    public var ref: VariantRef
    /// A paused variant's schedule does not start runs.
    public var paused: Bool
    /// Per-connection-and-variant frequency override (nil: the sync's configured frequency).
    public var frequencyOverride: String?
    /// When the schedule next starts a run (a new variant: at once).
    public var nextRunAt: Timestamp?
    /// Start time of the last successful run.
    public var lastSyncDate: Timestamp?
    public var checkpoint: Checkpoint?
    /// The open deletion-tracking window of a full-refresh sync: the generation records must have
    /// been seen in to survive the next successful run. Nil when no window is open.
    public var deletionGeneration: Int64?
    /// The deletion window the checkpoint was saved in (nil: saved by a run that tracked no window).
    /// A run resumes the open window only from a checkpoint saved in it (``RunStartRule``).
    public var checkpointGeneration: Int64?
    public var createdAt: Timestamp

    /// The frequency this variant runs at: its override, else the sync's configured one.
    public func frequency(configured: Frequency) -> Frequency {
        frequencyOverride.flatMap { try? Frequency($0) } ?? configured
    }

    public init(
        id: String, ref: VariantRef, paused: Bool = false, frequencyOverride: String? = nil, lastSyncDate: Timestamp? = nil,
        checkpoint: Checkpoint? = nil, deletionGeneration: Int64? = nil, checkpointGeneration: Int64? = nil, createdAt: Timestamp
    ) {
        self.checkpointGeneration = checkpointGeneration
        self.id = id
        self.ref = ref
        self.paused = paused
        self.frequencyOverride = frequencyOverride
        self.nextRunAt = nil
        self.lastSyncDate = lastSyncDate
        self.checkpoint = checkpoint
        self.deletionGeneration = deletionGeneration
        self.createdAt = createdAt
    }
}
