import TributaryCore

/// Connect sessions and the connections they make (`/connect/*`, the Connect page). Sessions are
/// looked up by the hash of their token or of their OAuth `state`, never by the values themselves.
public protocol ConnectSessionStore: Sendable {
    /// Stores a new session, and removes sessions that expired more than a day ago.
    func createConnectSession(_ session: ConnectSession) async throws
    /// The session whose token hashes to `tokenHash`, as stored (``ConnectSessionRule`` says whether it is usable).
    func connectSession(tokenHash: String) async throws -> ConnectSession?
    /// The session whose OAuth authorization sent the `state` hashing to `stateHash`.
    func connectSession(oauthStateHash: String) async throws -> ConnectSession?
    /// Takes the OAuth authorization whose `state` hashes to `stateHash` — started by the browser whose
    /// cookie hashes to `browserHash` — off its session, in one transaction, and returns the session as
    /// it was (with it): a `state` is used once, so a replayed or concurrent callback finds nothing and
    /// never exchanges the code a second time; a callback from another browser claims nothing.
    func claimConnectOAuth(stateHash: String, browserHash: String) async throws -> ConnectSession?
    /// Deletes the session of the environment (`DELETE /connect/session`); false when there was none.
    @discardableResult
    func deleteConnectSession(tokenHash: String, environment: String) async throws -> Bool
    /// Records the OAuth authorization the session starts (replacing an earlier one of it) if the
    /// session is still usable; returns whether it was.
    func beginConnectOAuth(tokenHash: String, _ oauth: PendingOAuth) async throws -> Bool
    /// Ends the session with the connection it made, in one transaction: the session is spent
    /// (``ConnectSessionRule``: an expired or spent one throws its error and nothing is written), the
    /// connection is created — or, for ``ConnectCompletion/credentialsOnly``, its credentials replaced
    /// (`unknown_connection` if it is gone) — and the `auth` webhooks are queued.
    /// - Returns: the stored connection and whether it was created.
    func completeConnectSession(tokenHash: String, _ completion: ConnectCompletion) async throws -> (ConnectionRecord, created: Bool)
}
