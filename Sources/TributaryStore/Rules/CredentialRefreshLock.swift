import TributaryCore

/// Serialises OAuth token refreshes of one connection across every process sharing the store: a
/// refresher takes a short lock on the connection's row (holder + expiry), re-reads the credentials
/// under it, refreshes only if they are still the ones that were refused, writes the new ones and
/// releases the lock. A rotating refresh token is thereby used once, never by two processes at once.
/// The lock expires by itself, so a process that dies while holding it blocks others only briefly.
public enum CredentialRefreshLock {
    /// Whether `holder` may take the lock, given who holds it until when.
    public static func mayAcquire(holder: String, currentHolder: String?, until: Int64?, now: Int64) -> Bool {
        guard let currentHolder, let until else { return true }
        return currentHolder == holder || until <= now
    }
}

/// The outcome of asking for the refresh lock (``CredentialStore/beginCredentialRefresh(of:holder:seconds:)``).
public enum CredentialRefreshGrant: Sendable {
    /// Granted: the connection as stored now (re-read under the lock).
    case granted(ConnectionRecord)
    /// Another process refreshes now; try again shortly (its result will be in the store).
    case busy
}
