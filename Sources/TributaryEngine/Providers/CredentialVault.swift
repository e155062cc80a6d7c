#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
import TributaryCore
import TributaryStore

/// Opens connections' sealed credentials and keeps OAuth tokens fresh: a token is refreshed shortly
/// before it expires and when the provider answers 401, the new tokens are sealed and persisted,
/// and concurrent refreshes of one connection (several variants running at once) collapse into one
/// call to the token endpoint.
actor CredentialVault {
    /// Refresh a token this long before it expires.
    static let expiryMargin: Int64 = 60_000_000

    private let store: any Store
    private let cipher: CredentialCipher
    private let http: OutboundHTTP
    private let policy: OutboundPolicy
    private let logger: Logger
    /// Refreshes under way, one per connection; every caller awaits the same one.
    private var refreshing: [ConnectionRef: Task<JSONObject, any Error>] = [:]

    init(store: any Store, cipher: CredentialCipher, http: OutboundHTTP, policy: OutboundPolicy, logger: Logger) {
        self.store = store
        self.cipher = cipher
        self.http = http
        self.policy = policy
        self.logger = logger
    }

    /// The connection's credentials as a JSON object (`type` plus its fields), refreshed first when
    /// an OAuth token is missing or about to expire.
    func credentials(for connection: ConnectionRef, auth: AuthScheme) async throws -> JSONObject {
        let current = try await Self.open(store: store, cipher: cipher, connection)
        switch auth {
        case .oauth2, .oauth2ClientCredentials:
            let token = current[auth.tokenField]?.stringValue ?? ""
            let expires = current["expires_at"]?.stringValue.flatMap(Timestamp.init(iso8601:))
            if token.isEmpty || expires.map({ $0.microseconds - Self.expiryMargin <= Timestamp.now().microseconds }) == true {
                return try await refresh(connection, auth: auth, rejectedToken: token)
            }
            return current
        default:
            return current
        }
    }

    /// Refreshes the connection's OAuth token unless it already changed since `rejectedToken` was
    /// read (another caller — or another process — refreshed meanwhile).
    func refresh(_ connection: ConnectionRef, auth: AuthScheme, rejectedToken: String) async throws -> JSONObject {
        if let running = refreshing[connection] { return try await running.value }
        let task = Task { [store, cipher, http, policy, logger] () throws -> JSONObject in
            let stored = try await Self.open(store: store, cipher: cipher, connection)
            if let token = stored[auth.tokenField]?.stringValue, !token.isEmpty, token != rejectedToken,
                stored["expires_at"]?.stringValue.flatMap(Timestamp.init(iso8601:)).map({ $0.microseconds - Self.expiryMargin > Timestamp.now().microseconds }) ?? true
            {
                return stored
            }
            let fresh = try await Self.requestToken(stored, auth: auth, http: http, policy: policy)
            try await store.updateCredentials(try cipher.seal(JSONWriter.bytes(.object(fresh))), type: stored["type"]?.stringValue ?? "OAUTH2", of: connection)
            logger.info("OAuth token refreshed", metadata: ["connection": "\(connection)"])
            return fresh
        }
        refreshing[connection] = task
        defer { refreshing[connection] = nil }
        return try await task.value
    }

    private static func open(store: any Store, cipher: CredentialCipher, _ connection: ConnectionRef) async throws -> JSONObject {
        guard let record = try await store.connection(connection) else {
            throw TributaryError(.unknownConnection, "Connection '\(connection.connectionId)' does not exist.")
        }
        guard let sealed = record.sealedCredentials else { return ["type": .string(record.credentialsType)] }
        guard let object = try JSONParser.parse(try cipher.open(sealed)).objectValue else {
            throw TributaryError(.invalidCredentials, "The stored credentials of connection '\(connection.connectionId)' are not an object.")
        }
        return object
    }

    /// Asks the token endpoint for a new token: the refresh-token grant (`oauth2`) or the
    /// client-credentials grant (`oauth2_client_credentials`). Errors never include the secrets.
    private static func requestToken(_ stored: JSONObject, auth: AuthScheme, http: OutboundHTTP, policy: OutboundPolicy) async throws -> JSONObject {
        var form: [(String, String)]
        let tokenURL: String
        switch auth {
        case .oauth2(let url, let clientID, let clientSecret):
            guard let refreshToken = stored["refresh_token"]?.stringValue, !refreshToken.isEmpty else {
                throw TributaryError(.invalidCredentials, "The access token expired or was refused, and the connection has no refresh token.")
            }
            tokenURL = url
            form = [("grant_type", "refresh_token"), ("refresh_token", refreshToken), ("client_id", clientID), ("client_secret", clientSecret.value)]
        case .oauth2ClientCredentials(let url, let scopes):
            guard let clientID = stored["client_id"]?.stringValue, let clientSecret = stored["client_secret"]?.stringValue else {
                throw TributaryError(.invalidCredentials, "The connection's client credentials are incomplete.")
            }
            tokenURL = url
            form = [("grant_type", "client_credentials"), ("client_id", clientID), ("client_secret", clientSecret)]
            if !scopes.isEmpty { form.append(("scope", scopes.joined(separator: " "))) }
        default:
            throw TributaryError(.invalidCredentials, "Only OAuth 2 credentials can be refreshed.")
        }
        let body = form.map { "\(FormEncoding.escape($0.0))=\(FormEncoding.escape($0.1))" }.joined(separator: "&")
        let response: ProviderResponse
        do {
            response = try await http.perform(
                method: .POST, url: tokenURL, headers: [("Content-Type", "application/x-www-form-urlencoded"), ("Accept", "application/json")],
                body: Array(body.utf8), timeout: policy.timeout, maxBytes: 1 << 20)
        } catch let error as TributaryError {
            throw error
        } catch {
            throw ProviderUnavailable(status: nil, reason: "the token endpoint could not be reached (\(type(of: error)))")
        }
        guard response.isSuccess else {
            if response.status == 429 || response.status >= 500 {
                throw ProviderUnavailable(status: response.status, reason: "the token endpoint is unavailable")
            }
            throw TributaryError(.invalidCredentials, "The token endpoint refused to issue a token (HTTP \(response.status)); the connection needs new credentials.")
        }
        guard let answer = try? response.json().objectValue, let access = answer["access_token"]?.stringValue, !access.isEmpty else {
            throw TributaryError(.invalidCredentials, "The token endpoint's answer has no access_token.")
        }
        var fresh = stored
        fresh[auth.tokenField] = .string(access)
        if let refreshToken = answer["refresh_token"]?.stringValue, !refreshToken.isEmpty { fresh["refresh_token"] = .string(refreshToken) }
        if let seconds = answer["expires_in"]?.doubleValue ?? answer["expires_in"]?.stringValue.flatMap(Double.init) {
            fresh["expires_at"] = .string(Timestamp(microseconds: Timestamp.now().microseconds + Int64(seconds * 1_000_000)).iso8601)
        } else {
            fresh["expires_at"] = nil
        }
        return fresh
    }
}

extension AuthScheme {
    /// Where the OAuth token is kept in the credentials object (Nango's names).
    var tokenField: String {
        if case .oauth2ClientCredentials = self { return "token" }
        return "access_token"
    }
}

/// `application/x-www-form-urlencoded` and query-string escaping.
enum FormEncoding {
    private static let unreserved = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~".utf8)
    private static let hex = Array("0123456789ABCDEF".utf8)

    static func escape(_ text: String) -> String {
        var bytes: [UInt8] = []
        for byte in text.utf8 {
            if unreserved.contains(byte) {
                bytes.append(byte)
            } else {
                bytes += [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]]
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
