import TributaryCore

/// Records of deleted or emptied datasets: the deleting transaction makes them invisible and
/// unwritable at once and lists the datasets; the purge removes their rows in small transactions,
/// so deleting a million records never holds the writer (or a lock) for long.
public protocol PurgeStore: Sendable {
    /// Removes up to `limit` rows of one listed dataset; a dataset with none left leaves the list.
    /// - Returns: the rows removed, or nil when no dataset waits.
    func purgeRecords(limit: Int) async throws -> Int?
    /// Datasets whose records wait to be removed.
    func pendingPurges() async throws -> Int
}
