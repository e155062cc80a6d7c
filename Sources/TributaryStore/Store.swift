import TributaryCore

/// Everything Tributary persists, behind one protocol: connections and their metadata, sync
/// variants and their state, runs and their logs, and the records cache with its change feed.
///
/// The embedded implementation is `SQLiteStore`; a PostgreSQL one implements the same protocol and
/// passes the same test suite. Callers never see the database underneath.
///
/// Rules every implementation keeps (the records semantics of SPEC §3):
/// - Records are keyed by (environment, connection, model, variant, id); variants never see or
///   change each other's records.
/// - Saving a record whose canonical JSON hash is unchanged is a no-op: no counter, no cursor move.
/// - Every change of a dataset gets a position in its change feed; a reader paging with cursors
///   sees every change in order and never skips one, also while writers are running.
/// - Each record call is one transaction: it is all written, or none of it is.
extension Store {
    /// The most recent runs of a variant, newest first, provider webhook executions included.
    public func runs(of variant: VariantRef, limit: Int) async throws -> [RunRecord] {
        try await runs(of: variant, limit: limit, includingWebhooks: true)
    }
}

public protocol Store: Sendable {
    /// Creates or upgrades the schema. Safe to call on every start.
    func migrate() async throws

    // MARK: Connections

    /// Creates the connection if it does not exist (metadata `{}`); returns whether it was created.
    @discardableResult
    func ensureConnection(_ connection: ConnectionRef) async throws -> Bool
    /// Creates the connection, or replaces its credentials, metadata and configuration if it exists,
    /// and creates the `base` variant of each of `syncNames` — in one transaction.
    /// - Returns: the stored connection and whether it was created.
    func importConnection(_ connection: ConnectionImport, baseVariantsOf syncNames: [String]) async throws -> (ConnectionRecord, created: Bool)
    /// One connection, or nil.
    func connection(_ connection: ConnectionRef) async throws -> ConnectionRecord?
    /// Connections matching `filter`, ordered by creation.
    func connections(_ filter: ConnectionFilter) async throws -> [ConnectionRecord]
    /// Whether the connection exists.
    func connectionExists(_ connection: ConnectionRef) async throws -> Bool
    /// Deletes a connection with all its variants, runs and records.
    func deleteConnection(_ connection: ConnectionRef) async throws
    /// Replaces the connection's sealed credentials (after an OAuth token refresh).
    func updateCredentials(_ sealed: [UInt8]?, type: String, of connection: ConnectionRef) async throws
    /// The connection's metadata. Throws `unknown_connection` when it does not exist.
    func metadata(of connection: ConnectionRef) async throws -> JSONObject
    /// Replaces the metadata of every listed connection, all or nothing (`unknown_connection` if one is missing).
    func setMetadata(_ metadata: JSONObject, of connections: [ConnectionRef]) async throws
    /// Shallow-merges into the metadata of every listed connection, all or nothing.
    func updateMetadata(_ metadata: JSONObject, of connections: [ConnectionRef]) async throws

    // MARK: Variants

    /// Creates the variant (and its connection) if missing; returns its state.
    @discardableResult
    func ensureVariant(_ variant: VariantRef) async throws -> VariantState
    /// Creates a new variant of an existing connection.
    ///
    /// Throws `unknown_connection`, `sync_variant_already_exists`, or `resource_capped` when the sync
    /// already has `maximumPerSync` variants on this connection (`base` included) — checked atomically.
    /// The variant starts paused when `paused` (a sync with `auto_start: false`).
    func createVariant(_ variant: VariantRef, maximumPerSync: Int, paused: Bool) async throws -> VariantState
    /// Pauses or resumes a variant's schedule.
    func setPaused(_ paused: Bool, for variant: VariantRef) async throws
    /// Overrides the variant's frequency (nil: back to the sync's configured frequency).
    func setFrequency(_ frequency: String?, for variant: VariantRef) async throws
    /// Sets when the variant's schedule next starts a run.
    func setNextRun(_ time: Timestamp, for variant: VariantRef) async throws
    /// Started (not paused) variants whose next run is due at `now` and that have no active (queued or
    /// running) run, earliest first.
    func dueVariants(at now: Timestamp, limit: Int) async throws -> [VariantState]
    /// The earliest next run after `time` of any started (not paused) variant; nil when none is
    /// planned. The scheduler sleeps until then (or its tick, whichever is sooner).
    func nextScheduledRun(after time: Timestamp) async throws -> Timestamp?
    /// The variant's state, or nil when it does not exist.
    func variantState(_ variant: VariantRef) async throws -> VariantState?
    /// All variants of a connection, ordered by sync name then variant (`base` first).
    func variants(of connection: ConnectionRef) async throws -> [VariantState]
    /// Saves the variant's checkpoint. Throws `unknown_sync_variant` when the variant does not exist.
    func saveCheckpoint(_ checkpoint: Checkpoint, for variant: VariantRef) async throws
    /// Removes the variant's checkpoint.
    func clearCheckpoint(for variant: VariantRef) async throws
    /// Clears `lastSyncDate`, the checkpoint and any open deletion-tracking window; with
    /// `emptyCache` also hard-deletes the variant's records (its datasets restart empty).
    func resetVariant(_ variant: VariantRef, emptyCache: Bool) async throws
    /// Removes the variant: its state, runs, logs and records. Other variants are untouched.
    func deleteVariant(_ variant: VariantRef) async throws

    // MARK: Runs

    /// Records the start of a run and returns the state the run starts from.
    ///
    /// Throws `sync_running` while another run of the variant is queued or holds a live lease.
    func startRun(_ variant: VariantRef, _ start: RunStart) async throws -> StartedRun
    /// Renews a running run's lease.
    func heartbeat(run: Int64) async throws
    /// Appends a line to a run's log.
    func appendLog(run: Int64, level: LogLevel, message: String) async throws
    /// Finishes a run. On success this applies, in the same transaction: deletion of records not
    /// seen in the run's deletion-tracking window, the new `lastSyncDate`, and checkpoint clearing.
    /// On failure or cancellation nothing but the run row changes. In the same transaction, the
    /// completion's sync webhooks (``SyncWebhookBody``) enter the outbox — a finished run and its
    /// webhooks are stored together or not at all.
    ///
    /// A `WEBHOOK` run (a provider webhook execution) changes no variant state; finishing it also
    /// marks its provider webhook task done.
    func completeRun(_ run: Int64, _ completion: RunCompletion) async throws -> RunRecord
    /// The most recent runs of a variant, newest first; without provider webhook executions
    /// (`WEBHOOK` runs) unless `includingWebhooks`.
    func runs(of variant: VariantRef, limit: Int, includingWebhooks: Bool) async throws -> [RunRecord]
    /// One run.
    func run(_ id: Int64) async throws -> RunRecord?
    /// A run's log lines in order.
    func logs(ofRun id: Int64, limit: Int) async throws -> [RunLogEntry]

    // MARK: Run queue

    /// Queues a run of every listed variant — all of them, or none: throws `sync_running` when one
    /// already has an active (queued or running, with a live lease) run, `unknown_sync_variant` when
    /// one does not exist. A running run whose lease ran out is marked expired first.
    /// - Returns: the queued runs, in order.
    @discardableResult
    func enqueueRuns(_ variants: [VariantRef]) async throws -> [RunRecord]
    /// Queues a scheduled run of each of `variants` that, in this one transaction, is still started,
    /// due (`next_run_at <= due`) and without an active run — so a scheduler working from a list of
    /// due variants read a moment ago (several processes schedule) never queues a second run of a
    /// variant that ran meanwhile (its next run is then in the future). Variants deleted meanwhile
    /// are skipped.
    /// - Returns: the variants queued, in order.
    func enqueueScheduledRuns(_ variants: [VariantRef], dueAt due: Timestamp) async throws -> [VariantRef]
    /// Atomically claims the fairest queued run and starts it (as ``startRun(_:_:)`` does): among
    /// connections below `maxRunsPerConnection` running runs, the one with the fewest, oldest run
    /// first. Two workers never claim the same run.
    /// - Returns: nil when nothing can be claimed now.
    func claimRun(_ claim: RunClaim) async throws -> ClaimedRun?
    /// The variant's queued or running run, if any.
    func activeRun(of variant: VariantRef) async throws -> RunRecord?
    /// Asks the variant's active run to stop: a queued run is cancelled at once; a running one is
    /// flagged, and the worker running it sees the flag through ``shouldStop(run:)``.
    /// - Returns: the run as it now stands, or nil when none was active.
    @discardableResult
    func requestCancel(of variant: VariantRef, reason: String) async throws -> RunRecord?
    /// Whether a running run must stop: its cancel was requested, or it is no longer running (finished
    /// by someone else, expired, or deleted with its variant).
    func shouldStop(run: Int64) async throws -> Bool
    /// Marks every running run whose lease ran out as expired (its process died), and queues a retry
    /// for each whose variant is not paused — the retry resumes from the variant's checkpoint.
    /// - Returns: the expired runs.
    func expireRuns() async throws -> [RunRecord]

    // MARK: Records

    /// Inserts or updates whole records of `model` for `variant` (batchSave).
    ///
    /// - Parameter seenGeneration: the run's deletion-tracking generation; every record passed is
    ///   marked seen in it, changed or not.
    /// - Returns: added (new or back from deletion) and updated counts.
    func saveRecords(_ records: [PreparedRecord], model: String, of variant: VariantRef, seenGeneration: Int64?) async throws
        -> ModelResult
    /// Deep-merges partial records into existing, non-deleted records (batchUpdate); unknown ids are ignored.
    func updateRecords(_ patches: [RecordPatch], model: String, of variant: VariantRef, seenGeneration: Int64?) async throws
        -> ModelResult
    /// Soft-deletes records by id (batchDelete); unknown or already deleted ids are ignored.
    func deleteRecords(ids: [String], model: String, of variant: VariantRef) async throws -> ModelResult
    /// Reads the change feed of one dataset.
    func changes(_ query: ChangeQuery) async throws -> ChangePage
    /// Non-deleted record counts per model of one variant.
    func recordCounts(of variant: VariantRef) async throws -> [String: Int]

    // MARK: Webhooks to the app (outbox)

    /// Claims due deliveries, at most one per receiver URL — the oldest pending one of each, so a
    /// receiver gets its webhooks in order — and locks each for `leaseSeconds` (another process
    /// takes it over only after that).
    func claimDeliveries(now: Timestamp, limit: Int, leaseSeconds: Double) async throws -> [WebhookDelivery]
    /// Records an attempt's outcome and releases the claim.
    func recordDeliveryAttempt(_ id: Int64, _ result: DeliveryAttemptResult) async throws
    /// Deliveries of an environment, newest first.
    func deliveries(_ query: DeliveryQuery) async throws -> [WebhookDelivery]
    /// One delivery of an environment, or nil.
    func delivery(_ id: Int64, environment: String) async throws -> WebhookDelivery?
    /// Sends a delivery again: it becomes `pending`, due now (its attempts are kept). Nil when it
    /// does not exist in the environment.
    func retryDelivery(_ id: Int64, environment: String, now: Timestamp) async throws -> WebhookDelivery?

    // MARK: Webhooks from providers

    /// Stores a provider webhook for each listed base variant, all or none (the API answers only once
    /// they are stored). Variants that do not exist are skipped.
    /// - Returns: the tasks stored.
    func enqueueProviderWebhook(for variants: [VariantRef], type: String?, payload: [UInt8]) async throws -> [ProviderWebhookTask]
    /// Claims the oldest provider webhook task that is not claimed (or whose claim's lease ran out)
    /// and opens a `running` run of kind `WEBHOOK` on its variant for it. A task claimed
    /// `maxAttempts` times already is given up: its run is recorded as failed.
    func claimProviderWebhook(leaseSeconds: Int64, maxAttempts: Int) async throws -> ClaimedProviderWebhook?
}
