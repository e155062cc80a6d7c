import TributaryCore

/// A connection as stored: identity, timestamps, metadata, configuration and its sealed credentials.
public struct ConnectionRecord: Sendable, Hashable {
    /// Store-assigned numeric id (Nango's `id`).
    public var id: Int64
    public var ref: ConnectionRef
    public var createdAt: Timestamp
    public var updatedAt: Timestamp
    public var metadata: JSONObject
    public var connectionConfig: JSONObject
    /// The credentials' kind (`NONE`, `API_KEY`, `BASIC`, `OAUTH2`, `OAUTH2_CC`) — never the secret.
    public var credentialsType: String
    /// The credentials, sealed with AES-GCM (see ``CredentialCipher``); nil for `NONE`.
    public var sealedCredentials: [UInt8]?
    /// Nango's `end_user`: `{id, email?, display_name?, organization?: {id, display_name?}}` (nil: none).
    public var endUser: JSONObject?
    /// Nango's `tags`: string keys (lowercase) to string values.
    public var tags: JSONObject

    public init(
        id: Int64, ref: ConnectionRef, createdAt: Timestamp, updatedAt: Timestamp, metadata: JSONObject, connectionConfig: JSONObject,
        credentialsType: String, sealedCredentials: [UInt8]?, endUser: JSONObject? = nil, tags: JSONObject = [:]
    ) {
        self.endUser = endUser
        self.tags = tags
        self.id = id
        self.ref = ref
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.metadata = metadata
        self.connectionConfig = connectionConfig
        self.credentialsType = credentialsType
        self.sealedCredentials = sealedCredentials
    }
}

/// What `POST /connections` writes: everything about a connection but its timestamps.
public struct ConnectionImport: Sendable {
    public var ref: ConnectionRef
    public var metadata: JSONObject
    public var connectionConfig: JSONObject
    public var credentialsType: String
    public var sealedCredentials: [UInt8]?
    /// Nango's `end_user` and `tags` (nil: a new connection has none; an existing one keeps its own).
    public var endUser: JSONObject?
    public var tags: JSONObject?
    /// Syncs whose `base` variant starts paused when the import creates it (`auto_start: false`, as
    /// Nango does); base variants that exist already keep their state.
    public var pausedSyncs: Set<String> = []

    public init(
        ref: ConnectionRef, metadata: JSONObject, connectionConfig: JSONObject, credentialsType: String, sealedCredentials: [UInt8]?,
        endUser: JSONObject? = nil, tags: JSONObject? = nil
    ) {
        self.endUser = endUser
        self.tags = tags
        self.ref = ref
        self.metadata = metadata
        self.connectionConfig = connectionConfig
        self.credentialsType = credentialsType
        self.sealedCredentials = sealedCredentials
    }
}

/// Which connections to list.
public struct ConnectionFilter: Sendable, Hashable {
    public var environment: String
    /// Only these integrations (nil: all).
    public var providerConfigKeys: [String]?
    /// Only this connection id.
    public var connectionId: String?
    /// Connection ids containing this text.
    public var search: String?
    /// Only connections holding every one of these values (compared as text) at a path of their
    /// metadata, `connection_config`, end user or tags (provider webhook routing; Nango's `endUserId`,
    /// `endUserOrganizationId`, `tags[…]`).
    public var fields: [FieldMatch] = []
    /// At most this many (nil: all), after skipping `offset`, in id order (Nango's `limit` and `page`).
    public var limit: Int? = nil
    public var offset: Int = 0

    /// A value at a dot path of a connection's JSON field.
    public struct FieldMatch: Sendable, Hashable {
        public enum Field: String, Sendable, Hashable {
            case metadata
            case connectionConfig = "connection_config"
            case endUser = "end_user"
            case tags
        }

        public var field: Field
        /// Dot-separated keys (`account.id`).
        public var path: String
        /// The value, as text (a number `42` matches `"42"`).
        public var value: String

        /// The keys from the top down (``path`` split at dots, or given whole: a tag key may hold a dot).
        public var keys: [String]

        public init(_ field: Field, path: String, value: String) {
            self.field = field
            self.path = path
            self.value = value
            self.keys = path.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        }

        /// A match one key deep whatever the key holds (`tags` keys may contain dots).
        public init(_ field: Field, key: String, value: String) {
            self.init(field, path: key, value: value)
            self.keys = [key]
        }
    }

    public init(
        environment: String, providerConfigKeys: [String]? = nil, connectionId: String? = nil, search: String? = nil, fields: [FieldMatch] = []
    ) {
        self.environment = environment
        self.providerConfigKeys = providerConfigKeys
        self.connectionId = connectionId
        self.search = search
        self.fields = fields
    }
}

/// What `PATCH /connections/{id}` changes (nil: unchanged).
public struct ConnectionPatch: Sendable, Hashable {
    public var endUser: JSONObject?
    public var tags: JSONObject?

    public init(endUser: JSONObject? = nil, tags: JSONObject? = nil) {
        self.endUser = endUser
        self.tags = tags
    }
}
