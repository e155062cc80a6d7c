import TributaryCore

/// Writes to the records cache, each made for a run and fenced by its lease (``RunFence``) in the
/// write's own transaction. The run names the dataset's variant, and its deletion window the seen
/// generation (a `WEBHOOK` run's records are marked seen in the window the variant has open at that
/// moment). A write never creates a connection or a variant; it creates the model's dataset only
/// while the run holds its lease. The write's counts are added to the run's results in the same
/// transaction, so a resumed run's results add up across attempts.
public protocol RecordWriter: Sendable {
    /// Inserts or updates whole records of `model` (batchSave). Returns added (new or back from
    /// deletion) and updated counts. With a `checkpoint`, it is saved as the variant's checkpoint in
    /// the same transaction (as ``RunLeaseStore/saveCheckpoint(_:for:)`` would, and refused in a
    /// `WEBHOOK` run): a sync that checkpoints after each page commits once per page, and the
    /// checkpoint never names a page whose records were not saved.
    func saveRecords(_ records: [PreparedRecord], model: String, checkpoint: Checkpoint?, for lease: RunLease) async throws -> ModelResult
    /// Deep-merges partial records into existing, non-deleted records (batchUpdate); unknown ids are ignored.
    func updateRecords(_ patches: [RecordPatch], model: String, for lease: RunLease) async throws -> ModelResult
    /// Soft-deletes records by id (batchDelete); unknown or already deleted ids are ignored.
    func deleteRecords(ids: [String], model: String, for lease: RunLease) async throws -> ModelResult
    /// Where a task that does little but call these writes, one after another, is best run: an
    /// executor on the store's writer thread, so the task goes on as each write ends; nil (the
    /// default) when the store has none, or it would not help.
    var writeExecutor: (any WriteExecutor)? { get }
}

extension RecordWriter {
    public var writeExecutor: (any WriteExecutor)? { nil }

    /// ``saveRecords(_:model:checkpoint:for:)`` without a checkpoint.
    public func saveRecords(_ records: [PreparedRecord], model: String, for lease: RunLease) async throws -> ModelResult {
        try await saveRecords(records, model: model, checkpoint: nil, for: lease)
    }
}
