import Hummingbird
import Logging
import ServiceLifecycle
import TributaryCore
import TributaryEngine
import TributaryStore

/// Builds the HTTP application: the router with every ``APIRoute`` (authenticated ones behind
/// ``AuthMiddleware``), error rendering, the dashboard under `/dashboard` (its own login and
/// HTML error pages), and `services` (in role `all`: the worker's `RunCoordinator` and the
/// `Scheduler`) as services of the app.
///
/// Tests build the same application with test configuration (`app.test(.router)` / `.live`).
///
/// - Parameters:
///   - port: the port to listen on instead of the configuration's (0: any free port).
///   - onListening: called with the port once the server listens (how a caller learns the port 0 chose).
/// - Throws: when the dashboard's templates are missing from the build or do not parse.
public func buildApplication(
    api: API, services: [any Service] = [], logger: Logger, port: Int? = nil, onListening: @escaping @Sendable (Int) async -> Void = { _ in }
) throws -> some ApplicationProtocol {
    let router = Router(context: APIRequestContext.self)
    let metricsHere = api.metricsExport != nil && api.config.metrics.enabled && api.config.metrics.port == nil
    router.add(middleware: ErrorMiddleware(routes: RouteTable(api.routes.map { ($0.method, $0.path) } + (metricsHere ? [(.get, "/metrics")] : []))))
    let open = router.group()
    let authenticated = router.group().add(middleware: AuthMiddleware(environments: api.config.environments))
    for route in api.routes {
        // `{anyPath}` (the proxy's) is the rest of the path, any depth; other `{name}`s are one segment.
        let path = RouterPath(
            route.path.replacingOccurrences(of: "{anyPath}", with: "**").replacingOccurrences(of: "{", with: ":").replacingOccurrences(of: "}", with: ""))
        let handler = route.handler
        if route.authenticated {
            authenticated.on(path, method: route.method) { request, context in try await handler(request, context) }
        } else {
            open.on(path, method: route.method) { request, context in try await handler(request, context) }
        }
    }
    if metricsHere, let export = api.metricsExport {
        let settings = api.config.metrics
        let store = api.store
        open.get("/metrics") { request, _ in try await export.respond(request, config: settings, store: store) }
    }
    let dashboard = try Dashboard(api: api)
    dashboard.addRoutes(to: router)
    ConnectPage(api: api, templates: dashboard.templates).addRoutes(to: router)
    return Application(
        router: router,
        configuration: ApplicationConfiguration(address: .hostname(api.config.server.host, port: port ?? api.config.server.port), serverName: "Tributary"),
        services: services,
        onServerRunning: { channel in await onListening(channel.localAddress?.port ?? 0) },
        logger: logger)
}
