import TributaryCore

/// Connections' sealed credentials, and the cross-process lock OAuth refreshes take
/// (``CredentialRefreshLock``). The credentials themselves are read with
/// ``StoreReader/connection(_:)``.
public protocol CredentialStore: Sendable {
    /// Replaces the connection's sealed credentials.
    func updateCredentials(_ sealed: [UInt8]?, type: String, of connection: ConnectionRef) async throws
    /// Takes the connection's refresh lock for `seconds` unless another holder has it, and returns
    /// the connection as stored now. Throws `unknown_connection`.
    func beginCredentialRefresh(of connection: ConnectionRef, holder: String, seconds: Int64) async throws -> CredentialRefreshGrant
    /// Writes the refreshed credentials (nil: nothing new — the refresh failed, or another holder's
    /// result was good) and releases the lock, if `holder` still has it — or, its lock lost, if the
    /// stored credentials are still `expected` (what it read under the lock), so a token the provider
    /// already issued is not dropped. Returns whether anything was written (or released).
    @discardableResult
    func finishCredentialRefresh(
        of connection: ConnectionRef, holder: String, sealed: (type: String, credentials: [UInt8])?, replacing expected: [UInt8]?
    ) async throws -> Bool
    /// Records that refreshing the credentials with `fingerprint` (``CredentialCipher/fingerprint(_:)``)
    /// was refused and queues `webhooks` (the `auth` webhook telling the app), once per version of the
    /// credentials: when the last refusal recorded was of the same ones, nothing is queued — a
    /// connection whose syncs keep failing does not flood the app — nor when the stored credentials
    /// are no longer the refused ones (replaced meanwhile by a reconnect), nor without webhooks.
    /// Returns whether they were queued.
    @discardableResult
    func reportRefusedRefresh(of connection: ConnectionRef, fingerprint: String, webhooks: [OutboxMessage]) async throws -> Bool
}
