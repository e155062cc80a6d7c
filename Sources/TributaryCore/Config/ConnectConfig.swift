/// How an OAuth 2 integration's end users connect through the Connect page: the authorization-code
/// flow (RFC 6749 §4.1) with PKCE (RFC 7636, S256) — `auth.authorization_url`, `scopes`,
/// `scope_separator`, `authorization_params` and `disable_pkce` in `tributary.yaml`. The code is
/// exchanged at the integration's `token_url` as its client (`client_id`, `client_secret`).
public struct OAuthAuthorization: Sendable, Hashable {
    /// The provider's authorization endpoint (`https://provider.example.com/oauth/authorize`).
    public var authorizationURL: String
    /// Scopes asked for, joined with ``scopeSeparator`` in `scope`.
    public var scopes: [String]
    public var scopeSeparator: String
    /// Extra query parameters of the authorization request (`access_type: offline`, `prompt: consent`),
    /// in file order; they cannot replace the ones the flow sets.
    public var parameters: [Parameter]
    /// Send a PKCE challenge (on unless `disable_pkce: true`, for the rare provider that refuses one).
    public var usesPKCE: Bool

    public struct Parameter: Sendable, Hashable {
        public var name: String
        public var value: String
        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    /// The parameters the flow itself sets; `authorization_params` may not name them.
    public static let reservedParameters: Set<String> = [
        "response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge", "code_challenge_method",
    ]

    public init(authorizationURL: String, scopes: [String] = [], scopeSeparator: String = " ", parameters: [Parameter] = [], usesPKCE: Bool = true) {
        self.authorizationURL = authorizationURL
        self.scopes = scopes
        self.scopeSeparator = scopeSeparator
        self.parameters = parameters
        self.usesPKCE = usesPKCE
    }
}

/// A request that must succeed (2xx) with credentials an end user typed on the Connect page before
/// the connection is saved (`auth.verification: {method, path}`), as Nango checks API keys.
public struct ConnectVerification: Sendable, Hashable {
    public var method: String
    /// Relative to the integration's `base_url`.
    public var path: String

    public init(method: String = "GET", path: String) {
        self.method = method
        self.path = path
    }
}

/// An environment's Connect settings (`environments.<name>.connect`).
public struct EnvironmentConnect: Sendable, Hashable {
    /// Where the Connect page sends the end user when it is done and was not opened as a popup, with
    /// `connection_id` and `provider_config_key` (or `error` and `error_description`) added to the
    /// query. Nil: the page shows the outcome and tells its opener window, if any.
    public var redirectURL: String?
    /// How long a session token lasts, in seconds (30 minutes, as Nango's).
    public var sessionSeconds: Int

    public init(redirectURL: String? = nil, sessionSeconds: Int = 1800) {
        self.redirectURL = redirectURL
        self.sessionSeconds = sessionSeconds
    }
}

/// Where providers send end users back after an OAuth authorization: `<server.public_url>/oauth/callback`,
/// the redirect URI every OAuth integration's client must register.
public enum ConnectCallback {
    public static func url(publicURL: String) -> String {
        (publicURL.hasSuffix("/") ? String(publicURL.dropLast()) : publicURL) + "/oauth/callback"
    }
}
