import TributaryCore

/// A Connect session (`POST /connect/sessions`): what the app allows one end user to connect, for a
/// short time. The token itself is never stored — only its SHA-256 (``ConnectToken/hash(_:)``).
public struct ConnectSession: Sendable, Hashable {
    public var tokenHash: String
    public var environment: String
    /// Nango's `end_user` (with `organization` inside, as connections store it); nil for a reconnect
    /// session that gave none (the connection keeps its own).
    public var endUser: JSONObject?
    /// The connection's tags (Nango's `tags`, with the ones derived from the end user).
    public var tags: JSONObject?
    /// The integrations the end user may connect (nil: every connectable one of the environment).
    public var allowedIntegrations: [String]?
    /// Nango's `integrations_config_defaults`: per integration key, `{connection_config: {…}}` given
    /// to the connection it makes.
    public var integrationsConfigDefaults: JSONObject
    /// For `POST /connect/sessions/reconnect`: the connection whose credentials the session replaces.
    public var reconnect: ConnectionRef?
    public var createdAt: Timestamp
    public var expiresAt: Timestamp
    /// When a connection was made with it (then it is spent).
    public var usedAt: Timestamp?
    /// The OAuth authorization under way, if the end user chose an OAuth integration.
    public var oauth: PendingOAuth?

    public init(
        tokenHash: String, environment: String, endUser: JSONObject?, tags: JSONObject?, allowedIntegrations: [String]?,
        integrationsConfigDefaults: JSONObject, reconnect: ConnectionRef?, createdAt: Timestamp, expiresAt: Timestamp, usedAt: Timestamp? = nil,
        oauth: PendingOAuth? = nil
    ) {
        self.tokenHash = tokenHash
        self.environment = environment
        self.endUser = endUser
        self.tags = tags
        self.allowedIntegrations = allowedIntegrations
        self.integrationsConfigDefaults = integrationsConfigDefaults
        self.reconnect = reconnect
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.usedAt = usedAt
        self.oauth = oauth
    }

    /// Whether the end user may connect `integration` with this session.
    public func allows(_ integration: String) -> Bool {
        if let reconnect { return reconnect.providerConfigKey == integration }
        return allowedIntegrations?.contains(integration) ?? true
    }

    /// The `connection_config` its `integrations_config_defaults` give a connection of `integration`.
    public func connectionConfig(for integration: String) -> JSONObject {
        integrationsConfigDefaults[integration]?["connection_config"]?.objectValue ?? [:]
    }
}

/// An OAuth authorization a Connect session started: the `state` sent to the provider (stored as its
/// hash), the hash of the nonce in the starting browser's cookie (the callback must come back to
/// that browser), the integration, and the PKCE verifier (sealed like credentials).
public struct PendingOAuth: Sendable, Hashable {
    public var stateHash: String
    public var browserHash: String
    public var providerConfigKey: String
    public var sealedVerifier: [UInt8]
    public var startedAt: Timestamp

    public init(stateHash: String, browserHash: String, providerConfigKey: String, sealedVerifier: [UInt8], startedAt: Timestamp) {
        self.browserHash = browserHash
        self.stateHash = stateHash
        self.providerConfigKey = providerConfigKey
        self.sealedVerifier = sealedVerifier
        self.startedAt = startedAt
    }
}

/// What ends a Connect session: the connection it makes (or, for a reconnect, the credentials it
/// replaces) and the `auth` webhooks queued in the same transaction.
public struct ConnectCompletion: Sendable {
    /// The connection with its sealed credentials, end user, tags and `connection_config`.
    public var connection: ConnectionImport
    /// Syncs whose `base` variant the new connection gets.
    public var baseVariantsOf: [String]
    /// Replace only the credentials of the existing connection (a reconnect session) — and its end
    /// user and tags where the completion gives them: its metadata, configuration and variants stay.
    public var credentialsOnly: Bool
    public var webhooks: [OutboxMessage]

    public init(connection: ConnectionImport, baseVariantsOf: [String], credentialsOnly: Bool, webhooks: [OutboxMessage]) {
        self.connection = connection
        self.baseVariantsOf = baseVariantsOf
        self.credentialsOnly = credentialsOnly
        self.webhooks = webhooks
    }
}

/// A session's JSON columns as text, and a session rebuilt from its columns — the same for both stores.
public struct ConnectSessionColumns: Sendable {
    public var endUser: String?
    public var tags: String?
    public var allowedIntegrations: String?
    public var configDefaults: String

    public init(_ session: ConnectSession) {
        endUser = session.endUser.map { JSONWriter.string(.object($0), canonical: false) }
        tags = session.tags.map { JSONWriter.string(.object($0), canonical: false) }
        allowedIntegrations = session.allowedIntegrations.map { JSONWriter.string(.array($0.map { .string($0) }), canonical: false) }
        configDefaults = JSONWriter.string(.object(session.integrationsConfigDefaults), canonical: false)
    }

    public static func session(
        tokenHash: String, environment: String, endUser: String?, tags: String?, allowedIntegrations: String?, configDefaults: String,
        reconnect: ConnectionRef?, createdAt: Int64, expiresAt: Int64, usedAt: Int64?, oauth: PendingOAuth?
    ) throws -> ConnectSession {
        ConnectSession(
            tokenHash: tokenHash, environment: environment, endUser: try endUser.flatMap { try JSONParser.parse($0).objectValue },
            tags: try tags.flatMap { try JSONParser.parse($0).objectValue },
            allowedIntegrations: try allowedIntegrations.flatMap { try JSONParser.parse($0).arrayValue?.compactMap(\.stringValue) },
            integrationsConfigDefaults: try JSONParser.parse(configDefaults).objectValue ?? [:], reconnect: reconnect,
            createdAt: Timestamp(microseconds: createdAt), expiresAt: Timestamp(microseconds: expiresAt), usedAt: usedAt.map(Timestamp.init(microseconds:)),
            oauth: oauth)
    }
}
