import TributaryCore

/// Nango's payload pruning (`PATCH /records/prune`): an app that has copied records away lets the
/// cache drop their payloads, keeping each record's id, change tracking and place in the feed.
public protocol RecordPruneStore: Sendable {
    /// Prunes up to `limit` not-yet-pruned records of `dataset` (deleted ones too) at or before `cursor`
    /// in feed order: the payload becomes `{"id": …}` and `pruned_at` is set. Their hash stays, so
    /// saving the same record again restores its payload (clearing `pruned_at`) as unchanged — it does
    /// not move in the feed.
    /// - Returns: how many were pruned, and whether some at or before `cursor` are left.
    func pruneRecords(_ dataset: DatasetRef, through cursor: FeedCursor, limit: Int) async throws -> (count: Int, hasMore: Bool)
}
