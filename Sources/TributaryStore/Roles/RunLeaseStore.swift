import TributaryCore

/// The writes a running run makes besides records, each fenced by its lease (``RunFence``): applied
/// only while the lease is held, checked in the write's own transaction; otherwise they throw
/// `lease_lost` (or `run_not_running`, `unknown_run`) and change nothing.
public protocol RunLeaseStore: Sendable {
    /// Renews the lease (a heartbeat) and answers whether it is still held.
    func renewLease(_ lease: RunLease) async throws -> LeaseState
    /// Whether the lease is still held, without renewing it.
    func leaseState(_ lease: RunLease) async throws -> LeaseState
    /// Appends a line to the run's log.
    func appendLog(_ lease: RunLease, level: LogLevel, message: String) async throws
    /// Saves the variant's checkpoint, marked with the run's deletion window.
    func saveCheckpoint(_ checkpoint: Checkpoint, for lease: RunLease) async throws
    /// Removes the variant's checkpoint.
    func clearCheckpoint(for lease: RunLease) async throws
    /// Replaces the metadata of the run's connection (a sync function's `setMetadata`).
    func setMetadata(_ metadata: JSONObject, for lease: RunLease) async throws
    /// Shallow-merges into the metadata of the run's connection (`updateMetadata`).
    func updateMetadata(_ metadata: JSONObject, for lease: RunLease) async throws
    /// Finishes the run (``RunCompletionRule``), in one transaction: on success deletion of records
    /// not seen in the run's window, `lastSyncDate` (the run's first start) and checkpoint clearing;
    /// the variant's next run (``NextRunPlan``); the run's sync webhooks into the outbox
    /// (``SyncWebhookBody``). A `WEBHOOK` run changes no variant state; its task is done (or open
    /// again when it was cancelled).
    func completeRun(_ lease: RunLease, _ completion: RunCompletion) async throws -> RunRecord
    /// Puts the run back in the queue (graceful shutdown), in one transaction: the next claim is its
    /// next attempt and resumes from its checkpoint, keeping its start, window and counts.
    @discardableResult
    func releaseRun(_ lease: RunLease, reason: String) async throws -> RunRecord
}
