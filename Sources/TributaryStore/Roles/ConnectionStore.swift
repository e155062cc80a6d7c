import TributaryCore

/// What the API changes about connections. Deleting one is a lifecycle change (``LifecycleOutcome``).
public protocol ConnectionStore: Sendable {
    /// Creates the connection if it does not exist (metadata `{}`); returns whether it was created.
    /// For local development (`dryrun`) and tools; runs never create connections.
    @discardableResult
    func ensureConnection(_ connection: ConnectionRef) async throws -> Bool
    /// Creates the connection, or replaces its credentials, metadata and configuration if it exists,
    /// and creates the `base` variant of each of `syncNames` — in one transaction.
    /// - Returns: the stored connection and whether it was created.
    func importConnection(_ connection: ConnectionImport, baseVariantsOf syncNames: [String]) async throws -> (ConnectionRecord, created: Bool)
    /// Deletes a connection with all its variants, runs and records in one transaction: every active
    /// run of it ends there (its late writes are fenced out), its records become invisible at once
    /// and are removed in chunks afterwards (``PurgeStore``).
    /// - Returns: the runs that were active (now ended).
    @discardableResult
    func deleteConnection(_ connection: ConnectionRef) async throws -> LifecycleOutcome
    /// Replaces the metadata of every listed connection, all or nothing (`unknown_connection` if one is missing).
    func setMetadata(_ metadata: JSONObject, of connections: [ConnectionRef]) async throws
    /// Shallow-merges into the metadata of every listed connection, all or nothing.
    func updateMetadata(_ metadata: JSONObject, of connections: [ConnectionRef]) async throws
    /// Replaces what the patch sets (end user, tags) — `unknown_connection` if it is missing.
    func patchConnection(_ connection: ConnectionRef, _ patch: ConnectionPatch) async throws -> ConnectionRecord
}

/// What changed when a lifecycle call (reset, pause, delete) ended runs or queued new ones.
public struct LifecycleOutcome: Sendable {
    /// Runs that were active and were ended by the change (as they ended).
    public var ended: [RunRecord]
    /// Runs the change queued (a reset's new run).
    public var queued: [RunRecord]

    public init(ended: [RunRecord] = [], queued: [RunRecord] = []) {
        self.ended = ended
        self.queued = queued
    }
}
