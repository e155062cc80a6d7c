import TributaryCore

/// What the API changes about variants. Every call that changes runs is one transaction that also
/// ends (or queues) the runs it concerns, all or nothing over the variants it names.
public protocol VariantStore: Sendable {
    /// Creates the variant (and its connection) if missing; returns its state. For local development
    /// (`dryrun`) and tools; runs never create variants.
    @discardableResult
    func ensureVariant(_ variant: VariantRef) async throws -> VariantState
    /// Creates a new variant of an existing connection.
    ///
    /// Throws `unknown_connection`, `sync_variant_already_exists`, or `resource_capped` when the sync
    /// already has `maximumPerSync` variants on this connection (`base` included) — checked atomically.
    /// The variant starts paused when `paused` (a sync with `auto_start: false`).
    func createVariant(_ variant: VariantRef, maximumPerSync: Int, paused: Bool) async throws -> VariantState
    /// Pauses or resumes the variants' schedules, all or none (`unknown_sync_variant`). Pausing ends
    /// each one's queued or running run in the same transaction; resuming plans a run at once for a
    /// variant with no next run planned.
    @discardableResult
    func setPaused(_ paused: Bool, for variants: [VariantRef]) async throws -> LifecycleOutcome
    /// Overrides the variant's frequency (nil: back to the sync's configured frequency).
    func setFrequency(_ frequency: String?, for variant: VariantRef) async throws
    /// Resets the variants and (with `queuesRuns`) queues a run of each, all or none, in one transaction: every active
    /// run of theirs ends (provider webhook executions included; their webhooks are handled again
    /// afterwards), `lastSyncDate`, the checkpoint and the deletion window are cleared, and with
    /// `emptyCache` their records are emptied (invisible at once, removed in chunks afterwards; the
    /// datasets' change counters go on, so cursors stay valid).
    @discardableResult
    func resetVariants(_ variants: [VariantRef], emptyCache: Bool, queuesRuns: Bool) async throws -> LifecycleOutcome
    /// Removes the variant in one transaction: its state, runs (active ones end there), logs and
    /// records (invisible at once, removed in chunks afterwards). Other variants are untouched.
    @discardableResult
    func deleteVariant(_ variant: VariantRef) async throws -> LifecycleOutcome
}
