import Foundation
import HTTPTypes
import Hummingbird
import TributaryCore
import TributaryStore

/// The web dashboard (SPEC §8): server-rendered pages under `/dashboard`, served by the API's own
/// process, that show every connection, every sync and every variant, and act on variants.
///
/// - Login with one of an environment's secret keys; the session is a signed, `HttpOnly`,
///   `SameSite=Strict` cookie (``DashboardSession``), and every form posts the session's CSRF token.
/// - Pages: connections per integration (with search), a connection's syncs with a row per variant
///   (status, frequency, last run, record counts, next run, checkpoint) and its metadata, a variant's
///   run history, a run with its logs, a dataset's change feed, and a connection's action executions
///   (each with its attempts, failure and logs).
/// - Actions per variant — trigger, pause, start, reset (confirmed), delete (confirmed), create —
///   go through the same ``API`` operations as the JSON endpoints, so they follow the same rules;
///   errors are shown on the page.
/// - Rows refresh every few seconds through a small script (`Assets/dashboard.js`); everything works
///   without it, and without any JavaScript build step.
struct Dashboard: Sendable {
    let api: API
    let templates: DashboardTemplates

    /// Rows a page shows at most (connections per integration, runs of a variant, records per page).
    static let connectionsPerIntegration = 200
    static let runsShown = 50
    static let recordsPerPage = 50
    static let logLinesShown = 2000

    init(api: API) throws {
        self.api = api
        templates = try DashboardTemplates.load()
    }

    /// Adds the dashboard's routes: `/` redirects to `/dashboard`; the login page and assets are
    /// open; everything else needs a session.
    func addRoutes(to router: Router<APIRequestContext>) {
        router.get("/") { _, _ in DashboardTemplates.redirect(to: "/dashboard") }
        let errors = DashboardErrorMiddleware(templates: templates)
        let open = router.group("dashboard").add(middleware: errors)
        open.get("login") { request, context in try await self.loginPage(request, context) }
        open.post("login") { request, context in try await self.login(request, context) }
        open.get("assets/:name") { _, context in
            guard let response = templates.asset(context.parameters.get("name") ?? "") else {
                throw APIError(.notFound, "not_found", "No such dashboard asset.")
            }
            return response
        }
        let secured = router.group("dashboard").add(middleware: DashboardAuthMiddleware(environments: api.config.environments))
            .add(middleware: errors)
        secured.get { request, context in try await self.connectionsPage(request, context) }
        secured.post("logout") { request, context in try await self.logout(request, context) }
        secured.get("connection") { request, context in try await self.connectionPage(request, context) }
        secured.get("connection/rows") { request, context in try await self.variantRows(request, context) }
        secured.get("connection/confirm") { request, context in try await self.confirmPage(request, context) }
        secured.post("connection/actions") { request, context in try await self.variantAction(request, context) }
        secured.post("connection/variants") { request, context in try await self.createVariant(request, context) }
        secured.get("variant") { request, context in try await self.variantPage(request, context) }
        secured.get("runs/:runId") { request, context in try await self.runPage(request, context) }
        secured.get("runs/:runId/body") { request, context in try await self.runBody(request, context) }
        secured.get("records") { request, context in try await self.recordsPage(request, context) }
        secured.get("activity") { request, context in try await self.activityPage(request, context) }
        secured.get("actions/:id") { request, context in try await self.actionPage(request, context) }
        secured.get("**") { _, _ -> Response in throw APIError(.notFound, "not_found", "The dashboard has no such page.") }
    }

    // MARK: Login

    struct LoginView {
        let problem: ProblemView?
    }

    func loginPage(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        if let cookie = request.cookies[DashboardSession.cookieName]?.value,
            DashboardSession.verify(cookie, environments: api.config.environments) != nil
        {
            return DashboardTemplates.redirect(to: "/dashboard")
        }
        return templates.page("login", LoginView(problem: nil))
    }

    /// `POST /dashboard/login` with `secret_key`: the key selects the environment, as on the API.
    func login(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let form = try await DashboardForm.read(request, maxBytes: api.maxBody)
        let presented = (form["secret_key"] ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        guard let (environment, secret) = AuthMiddleware.environment(forKey: presented, in: api.config.environments) else {
            context.logger.notice("dashboard login refused")
            let problem = APIError(.unauthorized, "unknown_account", "That secret key is not valid for any environment.")
            return templates.page("login", LoginView(problem: ProblemView(problem, title: "Login failed")), status: .unauthorized)
        }
        let session = DashboardSession.issue(environment: environment.name, secret: secret)
        var response = DashboardTemplates.redirect(to: "/dashboard")
        response.setCookie(sessionCookie(session.cookieValue, maxAge: Int(DashboardSession.lifetimeSeconds), request: request))
        context.logger.info("dashboard login", metadata: ["environment": "\(environment.name)"])
        return response
    }

    /// `POST /dashboard/logout`: forgets the cookie.
    func logout(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        _ = try await form(request, context)
        var response = DashboardTemplates.redirect(to: "/dashboard/login")
        response.setCookie(sessionCookie("", maxAge: 0, request: request))
        return response
    }

    /// The session cookie: `HttpOnly`, `SameSite=Strict`, path `/dashboard`, and `Secure` when the
    /// request reached a TLS-terminating proxy (`X-Forwarded-Proto: https`).
    private func sessionCookie(_ value: String, maxAge: Int, request: Request) -> Cookie {
        let secure = request.headers[HTTPField.Name("X-Forwarded-Proto")!]?.lowercased() == "https"
        return Cookie(
            name: DashboardSession.cookieName, value: value, maxAge: maxAge, path: "/dashboard", secure: secure, httpOnly: true,
            sameSite: .strict)
    }

    // MARK: Shared by the pages

    /// The session the auth middleware found.
    func session(_ context: APIRequestContext) throws -> (DashboardSession, EnvironmentConfig) {
        guard let session = context.session, let environment = context.environment else {
            throw APIError(.unauthorized, "not_logged_in", "Log in to use the dashboard.")
        }
        return (session, environment)
    }

    /// A posted form whose CSRF token is the session's (else 403, nothing done).
    func form(_ request: Request, _ context: APIRequestContext) async throws -> DashboardForm {
        let (session, _) = try session(context)
        let form = try await DashboardForm.read(request, maxBytes: api.maxBody)
        guard session.accepts(csrfToken: form["csrf"]) else {
            throw APIError(.forbidden, "invalid_csrf_token", "The form's security token is missing or stale: reload the page and try again.")
        }
        return form
    }

    /// The connection a page or form names by `integration` and `connection`.
    func connectionTarget(_ values: DashboardForm, environment: EnvironmentConfig) async throws -> (IntegrationConfig, ConnectionRecord) {
        let integration = try api.integration(try values.required("integration"), in: environment)
        let connection = try await api.existingConnection(
            ConnectionRef(environment: environment.name, providerConfigKey: integration.providerConfigKey, connectionId: try values.required("connection")))
        return (integration, connection)
    }

    /// The variant a page or form names by `integration`, `connection`, `sync` and `variant`.
    func variantTarget(_ values: DashboardForm, environment: EnvironmentConfig) async throws
        -> (IntegrationConfig, ConnectionRecord, SyncConfig, VariantRef)
    {
        let (integration, connection) = try await connectionTarget(values, environment: environment)
        let sync = try api.sync(try values.required("sync"), of: integration)
        let variant = try values.required("variant")
        return (integration, connection, sync, VariantRef(connection: connection.ref, syncName: sync.name, variant: variant))
    }

    static func connectionHref(_ ref: ConnectionRef, sync: String? = nil, page: String = "/dashboard/connection") -> String {
        DashboardFormat.href(page, [("integration", ref.providerConfigKey), ("connection", ref.connectionId), ("sync", sync)])
    }

    /// A variant's page (`page`), with one more query value when given (`done`, `action`).
    static func variantHref(_ ref: VariantRef, page: String = "/dashboard/variant", extra: (String, String)? = nil) -> String {
        var query: [(String, String?)] = [
            ("integration", ref.connection.providerConfigKey), ("connection", ref.connection.connectionId), ("sync", ref.syncName), ("variant", ref.variant),
        ]
        if let extra { query.append(extra) }
        return DashboardFormat.href(page, query)
    }

    static func recordsHref(_ dataset: DatasetRef, filter: String? = nil, cursor: String? = nil) -> String {
        DashboardFormat.href(
            "/dashboard/records",
            [
                ("integration", dataset.connection.providerConfigKey), ("connection", dataset.connection.connectionId), ("model", dataset.model),
                ("variant", dataset.variant), ("filter", filter), ("cursor", cursor),
            ])
    }
}
