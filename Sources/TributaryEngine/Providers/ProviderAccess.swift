import Foundation
import Logging
import TributaryCore
import TributaryStore

/// Calls a connection's provider: resolves the integration's `base_url` and auth scheme, adds the
/// connection's credentials (API key in a header or query parameter, bearer, basic, OAuth 2 with
/// refresh, OAuth 2 client credentials), spaces calls per the integration's
/// `rate_limit_per_second`, and retries network errors, 5xx and 429 with exponential backoff and
/// jitter, honouring `Retry-After`. A 401 on an OAuth connection refreshes the token once and
/// repeats the call.
///
/// Used by sync functions (``SyncContext/send(_:)``), declarative syncs and the `/proxy` endpoint.
/// Credentials never appear in logs or errors: log lines name the method and path only.
public final class ProviderAccess: Sendable {
    public let config: TributaryConfig
    public let policy: OutboundPolicy
    let http: OutboundHTTP
    let vault: CredentialVault
    let limiter = ConnectionRateLimiter()
    /// Where request, retry and rate-limit figures go.
    public let metrics: TributaryMetrics
    /// Where each request attempt's client span goes (a child of the run's span, if any).
    public let tracer: TributaryTracer
    let logger: Logger

    /// How long a connection's credentials, once opened for a call, are used for its next calls
    /// without reading the store again (a sync calls its provider once per page).
    public static let defaultCredentialReuse: Duration = .seconds(1)

    /// - Parameters:
    ///   - policy: how calls behave; nil: the configuration's `outbound` section.
    ///   - credentialReuse: how long opened credentials serve further calls before the store is read
    ///     again. A change made meanwhile (a new API key) is used from the next read on; a token
    ///     refreshed by another process is picked up at once, by the 401 its predecessor gets.
    ///     `GET /connections/{id}` (``credentials(for:forceRefresh:)``) always reads the store.
    public init(
        config: TributaryConfig, store: any StoreReader & CredentialStore, cipher: CredentialCipher, http: OutboundHTTP, policy: OutboundPolicy? = nil,
        credentialReuse: Duration = ProviderAccess.defaultCredentialReuse, metrics: TributaryMetrics = .disabled, tracer: TributaryTracer = .disabled,
        logger: Logger
    ) {
        let policy = policy ?? OutboundPolicy(config.outbound)
        self.metrics = metrics
        self.tracer = tracer
        self.config = config
        self.policy = policy
        self.http = http
        self.logger = logger
        let planner = AuthWebhookPlanner(config: config)
        vault = CredentialVault(store: store, cipher: cipher, http: http, policy: policy, logger: logger, reuse: credentialReuse) { record, error in
            // The app's cue to ask its user to reconnect: once per version of the credentials (a sync that
            // keeps failing does not flood it); a failure to queue it is logged, never hides the refusal.
            do {
                try await store.reportRefusedRefresh(
                    of: record.ref, fingerprint: CredentialCipher.fingerprint(record.sealedCredentials ?? []), webhooks: planner.refreshFailure(record, error))
            } catch {
                logger.error("could not queue the auth webhook of a refused token refresh", metadata: ["connection": "\(record.ref)"])
            }
        }
    }

    /// Sends `request` to the connection's provider and returns its response, whatever the status,
    /// once no retry is due.
    ///
    /// - Throws: ``ProviderUnavailable`` when every attempt failed on the network or with 5xx/429;
    ///   `provider_error` for a request Tributary refuses to send (no `base_url`, a URL on another
    ///   host, a response over the size limit); `invalid_credentials` when credentials cannot be used.
    ///
    /// - Parameter freshCredentials: read the connection's credentials from the store even if they
    ///   were opened within the reuse time (the proxy: the app may have replaced them just before).
    public func send(_ request: ProviderRequest, for connection: ConnectionRef, freshCredentials: Bool = false) async throws -> ProviderResponse {
        guard let integration = config.integration(connection.providerConfigKey, in: connection.environment) else {
            throw TributaryError(.unknownProviderConfig, "Integration '\(connection.providerConfigKey)' is not configured.")
        }
        let target = try Self.url(for: request, baseURL: integration.baseURL, integration: integration.providerConfigKey)
        var credentials = try await vault.credentials(for: connection, auth: integration.auth, reusing: !freshCredentials)
        let retries = request.retries ?? policy.retries
        var attempt = 0
        var refreshed = false
        while true {
            try Task.checkCancellation()
            if let rate = integration.rateLimitPerSecond {
                let waitStart = ContinuousClock.now
                try await limiter.acquire(connection, perSecond: rate)
                metrics.rateLimitWait(connection, source: "own_limit", seconds: TributaryMetrics.seconds(since: waitStart))
            }
            let (url, headers) = try Self.authorize(target, request.headers, integration.auth, credentials)
            let outcome = try await perform(request, url: url, headers: headers, target: target, attempt: attempt, for: connection)
            switch outcome {
            case .success(let response) where response.status == 401 && !refreshed && integration.auth.refreshes:
                refreshed = true
                logger.info("provider answered 401; refreshing the token", metadata: ["connection": "\(connection)", "path": "\(request.shownEndpoint)"])
                credentials = try await vault.refresh(
                    connection, auth: integration.auth, rejectedToken: credentials[integration.auth.tokenField]?.stringValue ?? "")
                continue
            case .success(let response) where response.status == 429 || response.status >= 500:
                let retryAfter = Self.retryAfter(response.header("Retry-After"))
                guard attempt < retries, (retryAfter ?? .zero) <= policy.maxRetryAfter else {
                    throw ProviderUnavailable(
                        status: response.status, reason: "\(request.method.rawValue) \(request.shownEndpoint)",
                        retryAfterSeconds: retryAfter.map { Double($0.components.seconds) }, response: response)
                }
                attempt += 1
                let wait = retryAfter ?? policy.delay(attempt: attempt)
                metrics.providerRetry(connection, reason: response.status == 429 ? "rate_limited" : "server_error")
                if response.status == 429 { metrics.rateLimitWait(connection, source: "provider", seconds: TributaryMetrics.seconds(wait)) }
                logger.notice(
                    "provider answered \(response.status); retrying", metadata: ["connection": "\(connection)", "path": "\(request.shownEndpoint)", "in": "\(wait)"])
                try await Task.sleep(for: wait)
            case .success(var response):
                // The URL that answered, without credentials: a relative `Link` resolves against it.
                response.url = target.string
                response.credentialQueryNames = integration.auth.credentialQueryNames
                return response
            case .failure(let error):
                guard attempt < retries else {
                    throw ProviderUnavailable(status: nil, reason: "\(request.method.rawValue) \(request.shownEndpoint): \(Self.describe(error))")
                }
                attempt += 1
                let wait = policy.delay(attempt: attempt)
                metrics.providerRetry(connection, reason: "network")
                logger.notice(
                    "provider call failed; retrying",
                    metadata: ["connection": "\(connection)", "path": "\(request.shownEndpoint)", "error": "\(Self.describe(error))", "in": "\(wait)"])
                try await Task.sleep(for: wait)
            }
        }
    }

    /// One attempt of `request` at `url` (credentials added), in a client span of its own: a network
    /// failure is returned for the retry loop; a refusal (a response over the limit, say) is thrown.
    /// The span names the method, the provider's host and the path — never the query, which may carry
    /// credentials — and the status; a network error or a 5xx fails it.
    private func perform(
        _ request: ProviderRequest, url: String, headers: [(name: String, value: String)], target: URLComponents, attempt: Int, for connection: ConnectionRef
    ) async throws -> Result<ProviderResponse, any Error> {
        try await tracer.span(TributaryTracer.Name.providerRequest(request.method.rawValue), kind: .client) { span in
            if let span {
                TributaryTracer.annotate(span, connection: connection)
                span.attributes["http.request.method"] = request.method.rawValue
                span.attributes["server.address"] = target.host ?? ""
                span.attributes["url.path"] = String(target.percentEncodedPath.prefix(300))
                if attempt > 0 { span.attributes["http.request.resend_count"] = attempt }
            }
            let callStart = ContinuousClock.now
            do {
                let response = try await http.perform(
                    method: request.method, url: url, headers: headers, body: request.body, timeout: policy.timeout,
                    maxBytes: policy.responseLimit(for: request).bytes, limitName: policy.responseLimit(for: request).setting)
                metrics.providerRequest(connection, status: response.status, seconds: TributaryMetrics.seconds(since: callStart))
                span?.attributes["http.response.status_code"] = response.status
                // OpenTelemetry's HTTP conventions: a client span fails on a 4xx or 5xx answer.
                if response.status >= 400 { TributaryTracer.fail(span, "HTTP \(response.status)") }
                return .success(response)
            } catch let error as TributaryError {
                metrics.providerRequest(connection, status: nil, seconds: TributaryMetrics.seconds(since: callStart))
                throw error
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                metrics.providerRequest(connection, status: nil, seconds: TributaryMetrics.seconds(since: callStart))
                span?.attributes["error.type"] = String(describing: type(of: error))
                TributaryTracer.fail(span, String(describing: type(of: error)))
                return .failure(error)
            }
        }
    }

    /// A forced refresh of a token refreshed this recently returns it as it is: a client looping on
    /// `force_refresh=true` cannot hammer the provider's token endpoint (or spend rotating refresh
    /// tokens), and a token refreshed because it was about to expire is not refreshed twice.
    static let forcedRefreshInterval: Int64 = 60_000_000

    /// Drops the credentials kept for `connection`'s calls: call when it is deleted or its
    /// credentials are replaced, so this process's next call reads the store.
    public func forgetCredentials(of connection: ConnectionRef) async {
        await vault.forget(connection)
    }

    /// The connection's opened credentials, for handing to the app (`GET /connections/{id}`, as
    /// Nango does): an OAuth token that is missing or about to expire is refreshed first, and with
    /// `forceRefresh` (Nango's `force_refresh=true`) an OAuth token is refreshed now — unless it was
    /// refreshed within the last minute.
    /// - Throws: `invalid_credentials` when a refresh is refused; ``ProviderUnavailable`` when the
    ///   token endpoint cannot be reached.
    public func credentials(for connection: ConnectionRef, forceRefresh: Bool) async throws -> JSONObject {
        guard let integration = config.integration(connection.providerConfigKey, in: connection.environment) else {
            throw TributaryError(.unknownProviderConfig, "Integration '\(connection.providerConfigKey)' is not configured.")
        }
        let current = try await vault.credentials(for: connection, auth: integration.auth)
        let refreshedAt = current[CredentialVault.refreshedAtField]?.stringValue.flatMap(Timestamp.init(iso8601:))
        let recent = refreshedAt.map { Timestamp.now().microseconds - $0.microseconds < Self.forcedRefreshInterval } ?? false
        switch integration.auth {
        case .oauth2 where forceRefresh && !recent, .oauth2ClientCredentials where forceRefresh && !recent:
            return try await vault.refresh(connection, auth: integration.auth, rejectedToken: current[integration.auth.tokenField]?.stringValue ?? "")
        default:
            return current
        }
    }

    /// The request's URL without credentials: `endpoint` below `baseURL`, or an absolute URL on
    /// the same scheme, host and port as `baseURL` (credentials never go to another host).

    static func url(for request: ProviderRequest, baseURL: String?, integration: String) throws -> URLComponents {
        guard let baseURL, let base = URLComponents(string: baseURL), base.host != nil else {
            throw TributaryError(.providerError, "Integration '\(integration)' has no base_url to call.")
        }
        var target: URLComponents
        if request.endpoint.hasPrefix("http://") || request.endpoint.hasPrefix("https://") {
            guard let absolute = URLComponents(string: request.endpoint), absolute.scheme == base.scheme, absolute.host == base.host,
                absolute.port == base.port
            else {
                throw TributaryError(.providerError, "Refusing to send the connection's credentials to a URL outside the integration's base_url.")
            }
            target = absolute
            // Credentials come from the connection, never from a link's `user:password@`.
            target.user = nil
            target.password = nil
        } else {
            target = base
            let prefix = base.percentEncodedPath.hasSuffix("/") ? String(base.percentEncodedPath.dropLast()) : base.percentEncodedPath
            var path = Substring(request.endpoint.hasPrefix("/") ? request.endpoint : "/" + request.endpoint)
            // A fragment is never sent; the endpoint may carry values a function put in (ids, cursors):
            // whatever they hold, the path and query are escaped to be valid (setting them never traps).
            if let hash = path.firstIndex(of: "#") { path = path[..<hash] }
            let (pathPart, inlineQuery) = path.firstIndex(of: "?").map { (path[..<$0], Optional(path[path.index(after: $0)...])) } ?? (path, nil)
            let escapedPath = URLText.path(pathPart)
            guard !URLText.hasDotSegment(escapedPath) else {
                throw TributaryError(.providerError, "Refusing to call '\(request.shownEndpoint)': a '.' or '..' segment would leave the integration's base_url.")
            }
            target.percentEncodedPath = prefix + escapedPath
            target.percentEncodedQuery = inlineQuery.map { URLText.query($0) }
        }
        var query = target.percentEncodedQuery.map { [$0] } ?? []
        query += request.query.map { "\(FormEncoding.escape($0.name))=\(FormEncoding.escape($0.value))" }
        target.percentEncodedQuery = query.isEmpty ? nil : query.joined(separator: "&")
        return target
    }

    /// Adds the credentials to a copy of the URL and headers.
    static func authorize(
        _ target: URLComponents, _ headers: [(name: String, value: String)], _ auth: AuthScheme, _ credentials: JSONObject
    ) throws -> (String, [(name: String, value: String)]) {
        var target = target
        var headers = headers.filter { $0.name.lowercased() != "authorization" }
        func field(_ name: String) throws -> String {
            guard let value = credentials[name]?.stringValue else {
                throw TributaryError(.invalidCredentials, "The connection's credentials have no '\(name)' for auth \(auth.typeName).")
            }
            return value
        }
        switch auth {
        case .none:
            break
        case .apiKey(let header?, _):
            headers.append((header, try field("api_key")))
        case .apiKey(_, let parameter?):
            let pair = "\(FormEncoding.escape(parameter))=\(FormEncoding.escape(try field("api_key")))"
            // A link saved with the key in it (by an older version) gets the current key, not two.
            let kept = target.percentEncodedQuery.map { URLText.removingQueryItems(named: [parameter], from: "?" + $0).dropFirst() }
            target.percentEncodedQuery = kept.flatMap { $0.isEmpty ? nil : String($0) + "&" + pair } ?? pair
        case .apiKey:
            throw TributaryError(.invalidCredentials, "The api_key auth scheme names neither a header nor a query parameter.")
        case .bearer:
            headers.append(("Authorization", "Bearer \(try field("api_key"))"))
        case .basic:
            let pair = "\(try field("username")):\(try field("password"))"
            headers.append(("Authorization", "Basic \(Data(pair.utf8).base64EncodedString())"))
        case .oauth2, .oauth2ClientCredentials:
            headers.append(("Authorization", "Bearer \(try field(auth.tokenField))"))
        }
        guard let url = target.string else { throw TributaryError(.providerError, "Could not build the provider URL.") }
        return (url, headers)
    }

    /// `Retry-After` in seconds or as an HTTP date.
    static func retryAfter(_ value: String?) -> Duration? {
        guard let value = value?.trimmingCharacters(in: .whitespaces), !value.isEmpty else { return nil }
        // Any number a provider sends (`inf`, `1e20`, `nan`) is clamped, never converted unchecked: past
        // a day it makes no difference (`outbound.max_retry_after` gives up long before).
        if let seconds = Double(value) {
            guard seconds.isFinite, seconds >= 0 else { return seconds == .infinity ? Self.longestRetryAfter : nil }
            return .milliseconds(Int64(min(seconds, Double(Self.longestRetryAfter.components.seconds)) * 1000))
        }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        guard let date = formatter.date(from: value) else { return nil }
        let wait = date.timeIntervalSinceNow
        guard wait.isFinite else { return nil }
        return .milliseconds(Int64(min(max(0, wait), Double(Self.longestRetryAfter.components.seconds)) * 1000))
    }

    /// The longest `Retry-After` taken at its word (a day); longer ones count as this.
    static let longestRetryAfter = Duration.seconds(86_400)

    /// A network error's kind, without URLs or other details that could carry a credential.
    static func describe(_ error: any Error) -> String {
        String(describing: type(of: error)) + "." + String(String(describing: error).prefix { $0 != "(" && $0 != ":" }.prefix(80))
    }
}

extension AuthScheme {
    /// Whether a 401 can be cured by getting a new token.
    var refreshes: Bool {
        switch self {
        case .oauth2, .oauth2ClientCredentials: true
        default: false
        }
    }
}
