import TributaryCore

/// Whether a Connect session can still be used: a pure rule the stores and the Connect page share.
public enum ConnectSessionRule {
    public enum Verdict: Sendable, Hashable {
        case usable
        /// No such session (never issued, deleted, or in another environment).
        case unknown
        case expired
        /// A connection was already made with it.
        case used
    }

    public static func verdict(_ session: ConnectSession?, environment: String? = nil, now: Timestamp) -> Verdict {
        guard let session, environment.map({ $0 == session.environment }) ?? true else { return .unknown }
        if session.usedAt != nil { return .used }
        if now >= session.expiresAt { return .expired }
        return .usable
    }

    /// How long an OAuth authorization may take, from the redirect to the provider to the callback.
    public static let oauthSeconds: Int64 = 15 * 60

    /// Whether the session's OAuth authorization can still complete.
    public static func acceptsCallback(_ session: ConnectSession, now: Timestamp) -> Bool {
        guard let oauth = session.oauth else { return false }
        return now.microseconds - oauth.startedAt.microseconds <= oauthSeconds * 1_000_000
    }

    /// Sessions that expired this long ago are removed when a new one is created.
    public static let keepExpiredSeconds: Int64 = 24 * 3600

    /// The error a session that cannot be used answers with (Nango's codes where it has one).
    public static func error(for verdict: Verdict) -> TributaryError? {
        switch verdict {
        case .usable: nil
        case .unknown: TributaryError(.unknownConnectSession, "The Connect session does not exist: ask the app for a new link.")
        case .expired: TributaryError(.connectSessionExpired, "The Connect session has expired: ask the app for a new link.")
        case .used: TributaryError(.connectSessionUsed, "This Connect session was already used to connect an account: ask the app for a new link.")
        }
    }
}
