import Hummingbird
import Logging
import TributaryCore

/// Lets a dashboard request through only with a valid session cookie (``DashboardSession``), and
/// sets the request's environment and session from it; anything else is sent to the login page.
struct DashboardAuthMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext
    let environments: [EnvironmentConfig]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let cookie = request.cookies[DashboardSession.cookieName]?.value,
            let session = DashboardSession.verify(cookie, environments: environments),
            let environment = environments.first(where: { $0.name == session.environment })
        else {
            return DashboardTemplates.redirect(to: "/dashboard/login")
        }
        var context = context
        context.environment = environment
        context.session = session
        context.logger[metadataKey: "environment"] = "\(environment.name)"
        return try await next(request, context)
    }
}

/// Renders a dashboard request's error as an HTML page with the error's status (the API's JSON
/// error shape is for API clients). Unexpected errors are logged and shown as an opaque 500.
struct DashboardErrorMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext
    let templates: DashboardTemplates

    struct ErrorView {
        let session: SessionView?
        let heading: String
        let problem: ProblemView
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            let apiError = ErrorMiddleware.apiError(for: error, request: request, logger: context.logger)
            let heading: String
            switch apiError.status.code {
            case 404: heading = "Not found"
            case 401, 403: heading = "Not allowed"
            case 500...: heading = "Something went wrong"
            default: heading = "That did not work"
            }
            let view = ErrorView(session: context.session.map(SessionView.init), heading: heading, problem: ProblemView(apiError, title: heading))
            return templates.page("error", view, status: apiError.status)
        }
    }
}
