import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import TributaryCore
import TributaryEngine
import TributaryStore

/// The Connect page (`/connect?session_token=…`, a session's `connect_link`): where an end user
/// connects their own account, server-rendered like the dashboard and usable without JavaScript.
///
/// - It lists the integrations the session allows; an API-key or basic integration gets a form (its
///   `auth.verification` request must succeed with what was typed before anything is saved), an
///   OAuth 2 integration the authorization-code flow with PKCE: `/connect/{key}/authorize` redirects
///   to the provider with a `state` bound to the session, `/oauth/callback` exchanges the code at the
///   token URL. Tokens are sealed; the session is spent in the transaction that saves the connection
///   and queues its `auth` webhook.
/// - It ends on a page that tells its opener window (`postMessage`, Nango's
///   `AUTHORIZATION_SUCEEDED` / `AUTHORIZATION_FAILED`) and closes, or — with the environment's
///   `connect.redirect_url` — by redirecting there with the outcome in the query.
/// - Links and `redirect_uri` are built from `server.public_url`, never from the request's `Host`.
///   Pages send `Referrer-Policy: no-referrer` (the session token is in their URL) and are never
///   cached; the token is never logged.
struct ConnectPage: Sendable {
    let api: API
    let templates: DashboardTemplates

    /// The `connect_link` of a session.
    static func link(publicURL: String, token: String) -> String {
        trimmed(publicURL) + "/connect?session_token=" + token
    }

    /// The OAuth callback URL (`redirect_uri`) every OAuth integration's client must register.
    static func callbackURL(publicURL: String) -> String { ConnectCallback.url(publicURL: publicURL) }

    private static func trimmed(_ url: String) -> String { url.hasSuffix("/") ? String(url.dropLast()) : url }

    func addRoutes(to router: Router<APIRequestContext>) {
        router.get("connect") { request, context in await self.page(request, context) { try await self.start(request, context) } }
        router.get("connect/assets/:name") { _, context in
            guard let name = context.parameters.get("name"), name.hasPrefix("connect."), let response = templates.asset(name) else {
                throw APIError(.notFound, "not_found", "No such asset.")
            }
            return response
        }
        router.get("connect/integrations/:integration") { request, context in
            await self.page(request, context) { try await self.integrationPage(request, context) }
        }
        router.post("connect/integrations/:integration") { request, context in
            await self.page(request, context) { try await self.submitCredentials(request, context) }
        }
        router.get("connect/integrations/:integration/authorize") { request, context in
            await self.page(request, context) { try await self.authorize(request, context) }
        }
        router.get("oauth/callback") { request, context in await self.page(request, context) { try await self.callback(request, context) } }
    }

    // MARK: Views

    struct IntegrationView {
        let key: String
        let provider: String
        let href: String
    }

    struct ChoiceView {
        let integrations: [IntegrationView]
        let reconnecting: Bool
    }

    struct FormView {
        let key: String
        let provider: String
        let token: String
        let action: String
        let apiKey: Bool
        let basic: Bool
        let oauthHref: String?
        let reconnecting: Bool
        let problem: ProblemView?
        let backHref: String?
    }

    struct OutcomeView {
        let success: Bool
        let heading: String
        let message: String
        let event: String
        let connectionId: String
        let providerConfigKey: String
        let errorType: String
    }

    struct PageView {
        let title: String
        let choice: ChoiceView?
        let form: FormView?
        let outcome: OutcomeView?
        let problem: ProblemView?
    }

    // MARK: Pages

    /// `GET /connect?session_token=`: the integrations to choose from — or, when there is one (or the
    /// session reconnects one), that integration's page.
    func start(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let (token, session, environment) = try await usableSession(DashboardForm.query(request)["session_token"])
        let integrations = connectable(session, environment)
        if integrations.count == 1 { return try formPage(integrations[0], token: token, session: session, environment: environment, problem: nil, back: false) }
        guard !integrations.isEmpty else {
            throw APIError(.badRequest, "no_connectable_integrations", "There is nothing to connect here: this link allows no integration that can be connected.")
        }
        let views = integrations.map {
            IntegrationView(key: $0.providerConfigKey, provider: $0.provider, href: Self.href(Self.integrationPath($0.providerConfigKey), token: token))
        }
        return render(PageView(title: "Connect an account", choice: ChoiceView(integrations: views, reconnecting: false), form: nil, outcome: nil, problem: nil), environment: environment)
    }

    /// `GET /connect/{integration}?session_token=`: the form (API key, basic) or the OAuth button.
    func integrationPage(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let (token, session, environment) = try await usableSession(DashboardForm.query(request)["session_token"])
        let integration = try allowedIntegration(context, session: session, environment: environment)
        return try formPage(integration, token: token, session: session, environment: environment, problem: nil, back: connectable(session, environment).count > 1)
    }

    /// `POST /connect/{integration}` with `session_token` and `api_key` (or `username`, `password`):
    /// verifies the credentials when the integration says how, then saves the connection.
    func submitCredentials(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let form = try await DashboardForm.read(request, maxBytes: min(api.maxBody, 64 * 1024))
        let (token, session, environment) = try await usableSession(form["session_token"])
        let integration = try allowedIntegration(context, session: session, environment: environment)
        let back = connectable(session, environment).count > 1
        func again(_ message: String) throws -> Response {
            try formPage(
                integration, token: token, session: session, environment: environment,
                problem: ProblemView(APIError(.badRequest, "invalid_credentials", message), title: "Not connected"), back: back, status: .badRequest)
        }
        let credentials: JSONObject
        switch integration.auth {
        case .apiKey, .bearer:
            let key = (form["api_key"] ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
            guard !key.isEmpty else { return try again("Enter the API key.") }
            credentials = ["type": "API_KEY", "api_key": .string(key)]
        case .basic:
            let username = form["username"] ?? ""
            guard !username.isEmpty else { return try again("Enter the user name.") }
            credentials = ["type": "BASIC", "username": .string(username), "password": .string(form["password"] ?? "")]
        default:
            throw APIError(.badRequest, "invalid_request", "\(integration.provider) is connected by signing in with it, not with a form.")
        }
        let sealed: (String, [UInt8]?)
        do {
            sealed = try api.sealCredentials(credentials, for: integration)
        } catch let error as APIError {
            return try again(error.message)
        }
        if integration.verification != nil {
            guard let providers = api.providers else {
                throw APIError(.serviceUnavailable, "provider_unavailable", "Credentials cannot be checked by this server right now. Try again later.")
            }
            if let refusal = await providers.verify(credentials, integration: integration) { return try again(refusal) }
        }
        return try await finish(
            session: session, tokenHash: ConnectToken.hash(token), integration: integration, environment: environment, type: sealed.0, sealed: sealed.1,
            credentials: try ConnectionCredentials.normalized(credentials), context: context, retry: { message in try again(message) })
    }

    /// `GET /connect/{integration}/authorize?session_token=`: starts the OAuth authorization — a new
    /// `state` and PKCE verifier for the session — and redirects to the provider.
    func authorize(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let (token, session, environment) = try await usableSession(DashboardForm.query(request)["session_token"])
        let integration = try allowedIntegration(context, session: session, environment: environment)
        // Started from the Connect page only: a browser that says it came from elsewhere (a link to
        // this URL passed around) is shown the page first, so the end user sees what they connect.
        if let site = request.headers.first(where: { $0.name.canonicalName == "sec-fetch-site" })?.value, site != "same-origin" {
            var response = Response(status: .seeOther, headers: headers(environment: environment))
            response.headers[.location] = Self.href(Self.integrationPath(integration.providerConfigKey), token: token)
            return response
        }
        guard case .oauth2(_, let clientID, _) = integration.auth, let authorization = integration.oauthAuthorization else {
            throw APIError(.badRequest, "invalid_request", "\(integration.provider) is not connected by signing in with it.")
        }
        let publicURL = try requirePublicURL()
        let state = ConnectToken.newState()
        let verifier = ConnectToken.newCodeVerifier()
        // The callback must come back to this browser: a link to the provider's consent screen passed
        // to someone else cannot attach their account to this session.
        let browser = ConnectToken.newState()
        let pending = PendingOAuth(
            stateHash: ConnectToken.hash(state), browserHash: ConnectToken.hash(browser), providerConfigKey: integration.providerConfigKey,
            sealedVerifier: try api.cipher.seal(Array(verifier.utf8)), startedAt: .now())
        guard try await api.store.beginConnectOAuth(tokenHash: ConnectToken.hash(token), pending) else {
            throw APIError(.unauthorized, "connect_session_expired", "The Connect session has expired: ask the app for a new link.")
        }
        var query: [(String, String)] = [
            ("response_type", "code"), ("client_id", clientID), ("redirect_uri", Self.callbackURL(publicURL: publicURL)), ("state", state),
        ]
        if !authorization.scopes.isEmpty { query.append(("scope", authorization.scopes.joined(separator: authorization.scopeSeparator))) }
        if authorization.usesPKCE {
            query += [("code_challenge", ConnectToken.challenge(for: verifier)), ("code_challenge_method", "S256")]
        }
        query += authorization.parameters.map { ($0.name, $0.value) }
        let separator = authorization.authorizationURL.contains("?") ? "&" : "?"
        let location = authorization.authorizationURL + separator + query.map { "\(FormEncoding.escape($0.0))=\(FormEncoding.escape($0.1))" }.joined(separator: "&")
        context.logger.info("connect: redirecting to the provider", metadata: ["integration": "\(integration.providerConfigKey)"])
        var response = Response(status: .found, headers: headers(environment: environment))
        response.headers[.location] = location
        let callbackPath = URLComponents(string: Self.callbackURL(publicURL: publicURL))?.path ?? "/oauth/callback"
        response.setCookie(
            Cookie(
                name: Self.browserCookie(stateHash: pending.stateHash), value: browser, maxAge: Int(ConnectSessionRule.oauthSeconds), path: callbackPath,
                secure: publicURL.lowercased().hasPrefix("https://"), httpOnly: true, sameSite: .lax))
        return response
    }

    /// The cookie binding an OAuth authorization to the browser that started it; one per
    /// authorization, so two flows in one browser do not overwrite each other's.
    static func browserCookie(stateHash: String) -> String { "tributary_connect_oauth_" + stateHash.prefix(16) }

    /// `GET /oauth/callback?code=&state=` (or `?error=&state=`): the provider's answer. The `state`
    /// must be one a session issued (its hash is looked up) within the last 15 minutes; the code is
    /// exchanged with the session's PKCE verifier.
    func callback(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let query = DashboardForm.query(request)
        guard let state = query["state"], !state.isEmpty, state.utf8.count <= 512,
            let found = try await api.store.connectSession(oauthStateHash: ConnectToken.hash(state))
        else {
            context.logger.notice("connect: OAuth callback with an unknown state")
            return outcome(
                failure: "state_err", heading: "Not connected",
                message: "This sign-in could not be matched to a Connect session (the link is old, was already used, or did not come from here). Start again from the app.",
                environment: nil, status: .badRequest)
        }
        guard let environment = api.config.environment(named: found.environment) else {
            throw APIError(.notFound, "unknown_environment", "The Connect session's environment is no longer configured.")
        }
        // Only the browser that started the authorization can finish it (another one claims nothing,
        // so the right browser still can).
        let stateHash = ConnectToken.hash(state)
        let browserHash = ConnectToken.hash(request.cookies[Self.browserCookie(stateHash: stateHash)]?.value ?? "")
        guard found.oauth?.browserHash == browserHash else {
            context.logger.notice("connect: OAuth callback in another browser than the one that started it")
            return outcome(
                failure: "state_err", heading: "Not connected",
                message: "This sign-in was started in another browser (or its cookie was blocked). Start again from the app, in this browser.",
                environment: environment, status: .badRequest)
        }
        guard let session = try await api.store.claimConnectOAuth(stateHash: stateHash, browserHash: browserHash), let pending = session.oauth else {
            return outcome(
                failure: "state_err", heading: "Not connected",
                message: "This sign-in could not be matched to a Connect session (the link is old, was already used, or did not come from here). Start again from the app.",
                environment: environment, status: .badRequest)
        }
        let verdict = ConnectSessionRule.verdict(session, now: .now())
        guard verdict == .usable, ConnectSessionRule.acceptsCallback(session, now: .now()) else {
            let message = verdict == .used
                ? "This account was already connected with this link. Start again from the app to connect another one."
                : "The Connect session has expired. Start again from the app."
            return outcome(failure: "session_expired", heading: "Not connected", message: message, environment: environment, status: .badRequest)
        }
        guard let integration = api.config.integration(pending.providerConfigKey, in: environment.name), integration.oauthAuthorization != nil else {
            throw APIError(.notFound, "unknown_provider_config", "The integration being connected is no longer configured.")
        }
        if let error = query["error"] {
            context.logger.notice("connect: the provider refused the authorization", metadata: ["integration": "\(integration.providerConfigKey)"])
            let denied = error == "access_denied"
            let detail = query["error_description"].map { " (\($0.prefix(200)))" } ?? ""
            return outcome(
                failure: denied ? "access_denied" : "callback_err", heading: denied ? "Access was not granted" : "Not connected",
                message: denied
                    ? "You declined to give access to your \(integration.provider) account, so nothing was connected. You can close this window, or start again from the app."
                    : "\(integration.provider) reported an error\(detail). Nothing was connected; try again from the app.",
                environment: environment, status: .badRequest)
        }
        guard let code = query["code"], !code.isEmpty, code.utf8.count <= 4096 else {
            return outcome(
                failure: "callback_err", heading: "Not connected", message: "\(integration.provider) sent no authorization code. Try again from the app.",
                environment: environment, status: .badRequest)
        }
        guard let providers = api.providers else {
            throw APIError(.serviceUnavailable, "provider_unavailable", "This server cannot reach providers right now. Try again later.")
        }
        let verifier = String(decoding: try api.cipher.open(pending.sealedVerifier), as: UTF8.self)
        let credentials: JSONObject
        do {
            credentials = try await providers.exchangeAuthorizationCode(
                code, verifier: integration.oauthAuthorization?.usesPKCE == true ? verifier : nil,
                redirectURI: Self.callbackURL(publicURL: try requirePublicURL()), integration: integration)
        } catch let error as TributaryError {
            context.logger.notice("connect: the code exchange failed", metadata: ["integration": "\(integration.providerConfigKey)", "error": "\(error.code)"])
            return outcome(
                failure: "token_err", heading: "Not connected", message: "\(integration.provider) did not complete the sign-in: \(error.message) Try again from the app.",
                environment: environment, status: .badGateway)
        } catch {
            return outcome(
                failure: "token_err", heading: "Not connected", message: "\(integration.provider) could not be reached to complete the sign-in. Try again in a moment.",
                environment: environment, status: .badGateway)
        }
        // Stored as a refresh stores them (with the token endpoint's `raw` answer), sealed.
        let sealed = try api.cipher.seal(JSONWriter.bytes(.object(credentials)))
        return try await finish(
            session: session, tokenHash: session.tokenHash, integration: integration, environment: environment, type: "OAUTH2", sealed: sealed,
            credentials: credentials, context: context,
            retry: { message in
                self.outcome(failure: "connection_validation_failed", heading: "Not connected", message: message, environment: environment, status: .badRequest)
            })
    }

    // MARK: Completing

    /// Saves the connection (spending the session) with its `auth` webhook, and shows the outcome.
    /// `retry` shows a refusal by `validate-connection` (the form again, or the outcome page).
    private func finish(
        session: ConnectSession, tokenHash: String, integration: IntegrationConfig, environment: EnvironmentConfig, type: String, sealed: [UInt8]?,
        credentials: JSONObject, context: APIRequestContext, retry: (String) throws -> Response
    ) async throws -> Response {
        var connection: ConnectionImport
        let operation: AuthWebhookBody.Operation
        if let reconnect = session.reconnect {
            let existing = try await api.existingConnection(reconnect)
            // The session's end user (as Nango links a reconnected connection to it), else the connection's own.
            connection = ConnectionImport(
                ref: reconnect, metadata: existing.metadata, connectionConfig: existing.connectionConfig, credentialsType: type, sealedCredentials: sealed,
                endUser: session.endUser ?? existing.endUser, tags: session.tags ?? existing.tags)
            operation = .override
        } else {
            let ref = ConnectionRef(environment: environment.name, providerConfigKey: integration.providerConfigKey, connectionId: UUID().uuidString.lowercased())
            connection = ConnectionImport(
                ref: ref, metadata: [:], connectionConfig: session.connectionConfig(for: integration.providerConfigKey), credentialsType: type,
                sealedCredentials: sealed, endUser: session.endUser, tags: session.tags)
            connection.pausedSyncs = Set(integration.syncs.filter { !$0.autoStart }.map(\.name))
            operation = .creation
        }
        let events = api.connectionEvents(context)
        if events.has(.validateConnection, for: connection.ref) {
            let candidate = ConnectionEventRunner.Candidate(credentials: credentials, metadata: connection.metadata)
            if let failure = await events.run(.validateConnection, connection: connection.ref, candidate: candidate) {
                return try retry("\(integration.provider) could not be connected: \(failure)")
            }
        }
        let webhooks = AuthWebhookPlanner(config: api.config).messages(operation, connection: connection)
        let record: ConnectionRecord
        do {
            (record, _) = try await api.store.completeConnectSession(
                tokenHash: tokenHash,
                ConnectCompletion(
                    connection: connection, baseVariantsOf: integration.syncs.map(\.name), credentialsOnly: session.reconnect != nil, webhooks: webhooks))
            await api.providers?.forgetCredentials(of: record.ref)
        } catch let error as TributaryError where [.connectSessionUsed, .connectSessionExpired, .unknownConnectSession].contains(error.code) {
            return outcome(failure: "session_expired", heading: "Not connected", message: error.message, environment: environment, status: .conflict)
        }
        if !webhooks.isEmpty { api.deliveryService?.wake() }
        if operation == .creation { api.runs.variantsBecameDue() }
        if operation == .creation { await events.run(.postConnectionCreation, connection: record.ref) }
        context.logger.info(
            "connect: connection saved", metadata: ["connection": "\(record.ref)", "operation": "\(operation.rawValue)"])
        if let redirect = environment.connect.redirectURL {
            return redirectResponse(
                redirect, [("connection_id", record.ref.connectionId), ("provider_config_key", record.ref.providerConfigKey)], environment: environment)
        }
        let view = OutcomeView(
            success: true, heading: "Connected", message: "Your \(integration.provider) account is connected. You can close this window.",
            event: "AUTHORIZATION_SUCEEDED", connectionId: record.ref.connectionId, providerConfigKey: record.ref.providerConfigKey, errorType: "")
        return render(PageView(title: "Connected", choice: nil, form: nil, outcome: view, problem: nil), environment: environment)
    }

    /// A failed ending: shown (and told to the opener), or redirected with `error` when configured.
    private func outcome(failure: String, heading: String, message: String, environment: EnvironmentConfig?, status: HTTPResponse.Status) -> Response {
        if let environment, let redirect = environment.connect.redirectURL {
            return redirectResponse(redirect, [("error", failure), ("error_description", message)], environment: environment)
        }
        let view = OutcomeView(
            success: false, heading: heading, message: message, event: "AUTHORIZATION_FAILED", connectionId: "", providerConfigKey: "", errorType: failure)
        return render(PageView(title: heading, choice: nil, form: nil, outcome: view, problem: nil), environment: environment, status: status)
    }

    private func redirectResponse(_ base: String, _ query: [(String, String)], environment: EnvironmentConfig) -> Response {
        let separator = base.contains("?") ? "&" : "?"
        var response = Response(status: .seeOther, headers: headers(environment: environment))
        response.headers[.location] = base + separator + query.map { "\(FormEncoding.escape($0.0))=\(FormEncoding.escape($0.1))" }.joined(separator: "&")
        return response
    }

    // MARK: Helpers

    private func formPage(
        _ integration: IntegrationConfig, token: String, session: ConnectSession, environment: EnvironmentConfig, problem: ProblemView?, back: Bool,
        status: HTTPResponse.Status = .ok
    ) throws -> Response {
        let path = Self.integrationPath(integration.providerConfigKey)
        var apiKey = false, basic = false
        var oauthHref: String?
        switch integration.auth {
        case .apiKey, .bearer: apiKey = true
        case .basic: basic = true
        case .oauth2: oauthHref = Self.href(path + "/authorize", token: token)
        default: throw APIError(.badRequest, "integration_not_connectable", "\(integration.provider) cannot be connected here.")
        }
        let form = FormView(
            key: integration.providerConfigKey, provider: integration.provider, token: token, action: path, apiKey: apiKey, basic: basic,
            oauthHref: oauthHref, reconnecting: session.reconnect != nil, problem: problem,
            backHref: back ? Self.href("/connect", token: token) : nil)
        return render(PageView(title: "Connect \(integration.provider)", choice: nil, form: form, outcome: nil, problem: nil), environment: environment, status: status)
    }

    /// The session a page names by its token, if it can still be used — else an error page in words.
    private func usableSession(_ token: String?) async throws -> (String, ConnectSession, EnvironmentConfig) {
        guard let token, ConnectToken.looksLikeSessionToken(token) else {
            throw APIError(.unauthorized, "unknown_connect_session", "This link is not a valid Connect link: ask the app for a new one.")
        }
        let session = try await api.store.connectSession(tokenHash: ConnectToken.hash(token))
        if let error = ConnectSessionRule.error(for: ConnectSessionRule.verdict(session, now: .now())) {
            throw APIError(.unauthorized, error.code.rawValue, error.message)
        }
        guard let session, let environment = api.config.environment(named: session.environment) else {
            throw APIError(.unauthorized, "unknown_connect_session", "This link is not a valid Connect link: ask the app for a new one.")
        }
        return (token, session, environment)
    }

    private func connectable(_ session: ConnectSession, _ environment: EnvironmentConfig) -> [IntegrationConfig] {
        api.config.integrations(in: environment.name).filter { $0.isConnectable && session.allows($0.providerConfigKey) }
    }

    private func allowedIntegration(_ context: APIRequestContext, session: ConnectSession, environment: EnvironmentConfig) throws -> IntegrationConfig {
        let key = context.parameters.get("integration") ?? ""
        guard let integration = api.config.integration(key, in: environment.name), integration.isConnectable, session.allows(key) else {
            throw APIError(.notFound, "unknown_provider_config", "This link does not allow connecting '\(key.prefix(80))'.")
        }
        return integration
    }

    private func requirePublicURL() throws -> String {
        guard let url = api.config.server.publicURL else {
            throw APIError(.serviceUnavailable, "connect_not_configured", "Connect is not set up on this server (server.public_url).")
        }
        return url
    }

    static func href(_ path: String, token: String) -> String { DashboardFormat.href(path, [("session_token", token)]) }

    /// The page of one integration (its form, or its OAuth button).
    static func integrationPath(_ key: String) -> String { "/connect/integrations/" + FormEncoding.escape(key) }

    private func render(_ view: PageView, environment: EnvironmentConfig?, status: HTTPResponse.Status = .ok) -> Response {
        let html = templates.library.render(view, withTemplate: "connect") ?? "<!doctype html><title>Connect</title><p>The Connect page is missing."
        return Response(status: status, headers: headers(environment: environment), body: ResponseBody(byteBuffer: ByteBuffer(string: html)))
    }

    /// No caching, no referrer (the session token is in the URL), no framing; scripts and styles from
    /// this server only; forms post here — or, after a post, redirect to the environment's `redirect_url`.
    private func headers(environment: EnvironmentConfig?) -> HTTPFields {
        var formAction = "'self'"
        if let redirect = environment?.connect.redirectURL, let origin = Self.origin(of: redirect) { formAction += " " + origin }
        return DashboardTemplates.headers(contentType: "text/html; charset=utf-8", connectSource: nil, formAction: formAction, referrerPolicy: "no-referrer")
    }

    /// `scheme://host[:port]` of an http(s) URL.
    static func origin(of url: String) -> String? {
        guard let components = URLComponents(string: url), let scheme = components.scheme, let host = components.host else { return nil }
        return "\(scheme)://\(host)" + (components.port.map { ":\($0)" } ?? "")
    }

    /// Runs a page, rendering an error as a page in words (with its status) instead of JSON.
    private func page(_ request: Request, _ context: APIRequestContext, _ body: () async throws -> Response) async -> Response {
        do {
            return try await body()
        } catch {
            let problem = ErrorMiddleware.apiError(for: error, request: request, logger: context.logger)
            let view = PageView(title: "Connect", choice: nil, form: nil, outcome: nil, problem: ProblemView(problem, title: "This did not work"))
            return render(view, environment: nil, status: problem.status)
        }
    }
}
