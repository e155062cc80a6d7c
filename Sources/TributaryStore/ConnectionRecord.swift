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

    public init(environment: String, providerConfigKeys: [String]? = nil, connectionId: String? = nil, search: String? = nil) {
        self.environment = environment
        self.providerConfigKeys = providerConfigKeys
        self.connectionId = connectionId
        self.search = search
    }
}
