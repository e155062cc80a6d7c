#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
import TributaryCore
import TributaryStore

/// Opens connections' sealed credentials and keeps OAuth tokens fresh: a token is refreshed shortly
/// before it expires and when the provider answers 401, the new tokens are sealed and persisted.
/// Concurrent refreshes of one connection collapse into one call to the token endpoint: within this
/// process (several variants running at once) by sharing one task, and across processes by the
/// connection's refresh lock in the store (``CredentialRefreshLock``): the holder re-reads the
/// credentials under the lock and refreshes only if they are still the refused ones, so a rotating
/// refresh token is used once.
actor CredentialVault {
    /// Refresh a token this long before it expires.
    static let expiryMargin: Int64 = 60_000_000
    /// When the token was last refreshed (kept with the sealed credentials; never shown).
    static let refreshedAtField = "refreshed_at"
    /// How often a refresh waiting for another process's looks at the store again.
    static let lockPoll: Duration = .milliseconds(100)

    private let store: any StoreReader & CredentialStore
    private let cipher: CredentialCipher
    private let http: OutboundHTTP
    private let policy: OutboundPolicy
    private let logger: Logger
    /// Told when the token endpoint refuses a refresh (the connection needs its user to reconnect):
    /// the `auth` webhook of a failed refresh.
    private let onRefused: @Sendable (ConnectionRecord, TributaryError) async -> Void
    /// Refreshes under way, one per connection; every caller awaits the same one (and may stop waiting).
    private var refreshing: [ConnectionRef: RefreshFlight] = [:]
    /// How long credentials opened for a provider call are used again without reading the store
    /// (zero: never). A sync calls its provider once per page; reading, decrypting and parsing the
    /// sealed credentials each time cost about a fifth of a page's fetch. Within this time a change
    /// made through the API (a new API key, a reconnect) is not seen yet; an OAuth token refreshed
    /// meanwhile by another process is — its old token gets a 401, and that refresh reads the store.
    private let reuse: Duration
    /// Credentials opened recently for provider calls, and until when they may be used again.
    private var recent: [ConnectionRef: (credentials: JSONObject, until: ContinuousClock.Instant)] = [:]
    /// Past this many entries, expired ones are dropped when another is added.
    private static let recentLimit = 256
    /// Bumped by every refresh and forget: a store read that began before one is not kept (the actor
    /// is reentrant, so an older read may end after a newer token was kept).
    private var epoch = 0

    /// This process, as the refresh lock names its holder.
    private let holder = "\(ProcessInfo.processInfo.hostName)/\(ProcessInfo.processInfo.processIdentifier)/\(UUID().uuidString.prefix(8))"

    init(
        store: any StoreReader & CredentialStore, cipher: CredentialCipher, http: OutboundHTTP, policy: OutboundPolicy, logger: Logger,
        reuse: Duration = .zero, onRefused: @escaping @Sendable (ConnectionRecord, TributaryError) async -> Void = { _, _ in }
    ) {
        self.onRefused = onRefused
        self.reuse = reuse
        self.store = store
        self.cipher = cipher
        self.http = http
        self.policy = policy
        self.logger = logger
    }

    /// The connection's credentials as a JSON object (`type` plus its fields), refreshed first when
    /// an OAuth token is missing or about to expire.
    ///
    /// - Parameter reusing: whether credentials opened within the vault's reuse time may be returned
    ///   instead of reading the store (provider calls); false reads the store (the API's answer).
    func credentials(for connection: ConnectionRef, auth: AuthScheme, reusing: Bool = false) async throws -> JSONObject {
        let current: JSONObject
        if reusing, let kept = recent[connection], ContinuousClock.now < kept.until {
            current = kept.credentials
        } else {
            let readFrom = epoch
            current = try await Self.open(store: store, cipher: cipher, connection)
            if epoch == readFrom { keep(current, for: connection) }
        }
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

    /// Drops what is kept for `connection` (deleted or given new credentials in this process).
    func forget(_ connection: ConnectionRef) {
        epoch &+= 1
        recent[connection] = nil
    }

    /// Keeps `credentials` for provider calls during the reuse time.
    private func keep(_ credentials: JSONObject, for connection: ConnectionRef) {
        guard reuse > .zero else { return }
        let now = ContinuousClock.now
        if recent.count >= Self.recentLimit, recent[connection] == nil {
            recent = recent.filter { now < $0.value.until }
            // All still fresh (many connections at once): start over rather than grow.
            if recent.count >= Self.recentLimit { recent.removeAll(keepingCapacity: true) }
        }
        recent[connection] = (credentials, now + reuse)
    }

    /// Refreshes the connection's OAuth token unless it already changed since `rejectedToken` was
    /// read (another caller — or another process — refreshed meanwhile).
    func refresh(_ connection: ConnectionRef, auth: AuthScheme, rejectedToken: String) async throws -> JSONObject {
        // Whatever was kept is the refused token or older: calls wait for this refresh's result.
        forget(connection)
        let fresh = try await refreshOnce(connection, auth: auth, rejectedToken: rejectedToken)
        keep(fresh, for: connection)
        return fresh
    }

    private func refreshOnce(_ connection: ConnectionRef, auth: AuthScheme, rejectedToken: String) async throws -> JSONObject {
        if let running = refreshing[connection] { return try await running.value() }
        let work = { @Sendable [store, cipher, http, policy, logger, holder, onRefused] () async throws -> JSONObject in
            // The lock outlives the token call (its timeout, twice) and the saving of its answer (five
            // tries, each bounded by the store's 10 s operation timeout, with backoff): it is never taken
            // over while a rotated refresh token may still be on its way into the store.
            let callSeconds: Int64 = min(3600, max(0, policy.timeout.components.seconds))
            let lockSeconds: Int64 = callSeconds * 2 + Self.saveSeconds
            let deadline = ContinuousClock.now + .seconds(lockSeconds * 2)
            while true {
                try Task.checkCancellation()
                switch try await store.beginCredentialRefresh(of: connection, holder: holder, seconds: lockSeconds) {
                case .busy:
                    // Another process refreshes this connection now: wait for its result in the store.
                    let stored = try await Self.open(store: store, cipher: cipher, connection)
                    if Self.isFresh(stored, auth: auth, rejectedToken: rejectedToken) { return stored }
                    guard ContinuousClock.now < deadline else {
                        throw ProviderUnavailable(status: nil, reason: "another process has been refreshing this connection's token for too long")
                    }
                    try await Task.sleep(for: Self.lockPoll)
                case .granted(let record):
                    let stored: JSONObject
                    do {
                        stored = try Self.open(cipher: cipher, record)
                    } catch {
                        _ = try? await store.finishCredentialRefresh(of: connection, holder: holder, sealed: nil, replacing: nil)
                        throw error
                    }
                    // Refreshed by someone else since the token was refused: use theirs.
                    if Self.isFresh(stored, auth: auth, rejectedToken: rejectedToken) {
                        _ = try? await store.finishCredentialRefresh(of: connection, holder: holder, sealed: nil, replacing: nil)
                        return stored
                    }
                    let fresh: JSONObject
                    do {
                        fresh = try await Self.requestToken(stored, auth: auth, http: http, policy: policy)
                    } catch {
                        // Release the lock so another caller can try.
                        _ = try? await store.finishCredentialRefresh(of: connection, holder: holder, sealed: nil, replacing: nil)
                        if let refused = error as? TributaryError, refused.code == .invalidCredentials { await onRefused(record, refused) }
                        throw error
                    }
                    // The provider issued new tokens (a rotating refresh token is spent now): save them,
                    // trying again on a store error, so the next refresh does not use the spent one.
                    let sealed = (type: stored["type"]?.stringValue ?? "OAUTH2", credentials: try cipher.seal(JSONWriter.bytes(.object(fresh))))
                    var saved = false
                    for attempt in 0..<5 where !saved {
                        do {
                            saved = try await store.finishCredentialRefresh(
                                of: connection, holder: holder, sealed: sealed, replacing: record.sealedCredentials)
                            if !saved { break }
                        } catch {
                            logger.warning("could not save the refreshed token; trying again", metadata: ["connection": "\(connection)"])
                            try? await Task.sleep(for: .milliseconds(100 << attempt))
                        }
                    }
                    if saved {
                        logger.info("OAuth token refreshed", metadata: ["connection": "\(connection)"])
                    } else {
                        logger.error(
                            "OAuth token refreshed, but it could not be saved (the refresh lock was taken over and the credentials changed); the connection may need new credentials",
                            metadata: ["connection": "\(connection)"])
                    }
                    return fresh
                }
            }
        }
        let flight = RefreshFlight()
        refreshing[connection] = flight
        // Owned by the flight: it runs to its end (bounded by the lock's deadline) and hands its result
        // to whoever still waits, then leaves the table.
        Task {
            let result: Result<JSONObject, any Error>
            do { result = .success(try await work()) } catch { result = .failure(error) }
            flight.finish(result)
            self.forget(flight, of: connection)
        }
        return try await flight.value()
    }

    private func forget(_ flight: RefreshFlight, of connection: ConnectionRef) {
        if refreshing[connection] === flight { refreshing[connection] = nil }
    }

    /// How long saving a refreshed token may take: five tries, each bounded by the store's 10 s
    /// operation timeout, their backoff, and a margin.
    static let saveSeconds: Int64 = 5 * 10 + 10 + 30

    /// Whether `stored` holds a token other than the refused one that is not about to expire.
    private static func isFresh(_ stored: JSONObject, auth: AuthScheme, rejectedToken: String) -> Bool {
        guard let token = stored[auth.tokenField]?.stringValue, !token.isEmpty, token != rejectedToken else { return false }
        return stored["expires_at"]?.stringValue.flatMap(Timestamp.init(iso8601:)).map { $0.microseconds - expiryMargin > Timestamp.now().microseconds } ?? true
    }

    private static func open(store: any StoreReader, cipher: CredentialCipher, _ connection: ConnectionRef) async throws -> JSONObject {
        guard let record = try await store.connection(connection) else {
            throw TributaryError(.unknownConnection, "Connection '\(connection.connectionId)' does not exist.")
        }
        return try open(cipher: cipher, record)
    }

    private static func open(cipher: CredentialCipher, _ record: ConnectionRecord) throws -> JSONObject {
        let connection = record.ref
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
        let answer = try await tokenEndpoint(tokenURL, form: form, http: http, policy: policy, refusal: "refused to issue a token")
        return applying(answer, to: stored, tokenField: auth.tokenField)
    }

    /// Posts `form` to a token endpoint and returns its answer, which has an `access_token`.
    /// - Throws: ``ProviderUnavailable`` when it cannot be reached or answers 429/5xx;
    ///   `invalid_credentials` (saying it `refusal`) for any other error status, or an answer without a token.
    static func tokenEndpoint(_ tokenURL: String, form: [(String, String)], http: OutboundHTTP, policy: OutboundPolicy, refusal: String) async throws
        -> JSONObject
    {
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
            throw TributaryError(.invalidCredentials, "The token endpoint \(refusal) (HTTP \(response.status)); the connection needs new credentials.")
        }
        guard let answer = try? response.json().objectValue, let access = answer["access_token"]?.stringValue, !access.isEmpty else {
            throw TributaryError(.invalidCredentials, "The token endpoint's answer has no access_token.")
        }
        return answer
    }

    /// `stored` with the tokens of a token endpoint's `answer`: the access token (in `tokenField`), a
    /// rotated refresh token, `expires_at` from `expires_in`, and Nango's `raw` (the answer as it came).
    static func applying(_ answer: JSONObject, to stored: JSONObject, tokenField: String) -> JSONObject {
        var fresh = stored
        fresh[tokenField] = answer["access_token"]
        // Nango's `raw`: the token endpoint's answer as it came (sealed with the rest).
        fresh["raw"] = .object(answer)
        fresh[Self.refreshedAtField] = .string(Timestamp.now().iso8601)
        if let refreshToken = answer["refresh_token"]?.stringValue, !refreshToken.isEmpty { fresh["refresh_token"] = .string(refreshToken) }
        // A lifetime beyond ten years (or not a finite, positive number) is taken as "no expiry known".
        if let seconds = answer["expires_in"]?.doubleValue ?? answer["expires_in"]?.stringValue.flatMap(Double.init), seconds.isFinite, seconds > 0,
            seconds < 315_360_000
        {
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
