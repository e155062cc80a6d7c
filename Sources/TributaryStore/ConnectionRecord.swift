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

    public init(
        id: Int64, ref: ConnectionRef, createdAt: Timestamp, updatedAt: Timestamp, metadata: JSONObject, connectionConfig: JSONObject,
        credentialsType: String, sealedCredentials: [UInt8]?
    ) {
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

    public init(ref: ConnectionRef, metadata: JSONObject, connectionConfig: JSONObject, credentialsType: String, sealedCredentials: [UInt8]?) {
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
    /// Only connections whose metadata or `connection_config` holds this value (compared as text) at a path.
    public var field: FieldMatch?

    /// A value at a dot path of a connection's JSON field.
    public struct FieldMatch: Sendable, Hashable {
        public enum Field: String, Sendable, Hashable {
            case metadata
            case connectionConfig = "connection_config"
        }

        public var field: Field
        /// Dot-separated keys (`account.id`).
        public var path: String
        /// The value, as text (a number `42` matches `"42"`).
        public var value: String

        public init(_ field: Field, path: String, value: String) {
            self.field = field
            self.path = path
            self.value = value
        }
    }

    public init(
        environment: String, providerConfigKeys: [String]? = nil, connectionId: String? = nil, search: String? = nil, field: FieldMatch? = nil
    ) {
        self.environment = environment
        self.providerConfigKeys = providerConfigKeys
        self.connectionId = connectionId
        self.search = search
        self.field = field
    }
}
