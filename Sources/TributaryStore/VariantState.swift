import TributaryCore

/// The persisted state of one sync variant.
public struct VariantState: Sendable, Hashable {
    public var ref: VariantRef
    /// Start time of the last successful run.
    public var lastSyncDate: Timestamp?
    public var checkpoint: Checkpoint?
    /// The open deletion-tracking window of a full-refresh sync: the generation records must have
    /// been seen in to survive the next successful run. Nil when no window is open.
    public var deletionGeneration: Int64?
    public var createdAt: Timestamp

    public init(
        ref: VariantRef, lastSyncDate: Timestamp? = nil, checkpoint: Checkpoint? = nil, deletionGeneration: Int64? = nil,
        createdAt: Timestamp
    ) {
        self.ref = ref
        self.lastSyncDate = lastSyncDate
        self.checkpoint = checkpoint
        self.deletionGeneration = deletionGeneration
        self.createdAt = createdAt
    }
}
