import Hummingbird
import TributaryCore

/// The request context of the API: Hummingbird's core storage plus the environment the
/// request's secret key selected (set by ``AuthMiddleware``), or the dashboard session's.
public struct APIRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The authenticated environment; nil on routes that need no key.
    public var environment: EnvironmentConfig?
    /// The dashboard session of a dashboard request (set by `DashboardAuthMiddleware`).
    var session: DashboardSession?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        environment = nil
        session = nil
    }

    /// The authenticated environment.
    func requireEnvironment() throws -> EnvironmentConfig {
        guard let environment else { throw APIError(.unauthorized, "missing_auth_header", "Authentication is required.") }
        return environment
    }
}
