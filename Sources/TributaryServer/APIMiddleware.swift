import HTTPTypes
import Hummingbird
import Logging
import TributaryCore

/// Turns every error into the API's error shape: known errors keep their status and code;
/// anything unexpected is logged in full and answered with an opaque 500.
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext
    /// The API's routes: a path they serve with another method is a 405, not a 404.
    var routes = RouteTable([])

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            var answer = Self.apiError(for: error, request: request, logger: context.logger)
            if let error = error as? HTTPError, error.status == .notFound, case let allowed = routes.allowedMethods(at: request.uri.path),
                !allowed.isEmpty, !allowed.contains(request.method)
            {
                answer = APIError(.methodNotAllowed, "method_not_allowed", "\(request.method.rawValue) is not allowed on \(request.uri.path.prefix(200)); allowed: \(allowed.map(\.rawValue).joined(separator: ", ")).")
                answer.allow = allowed
            }
            throw answer
        }
    }

    /// The API error an error is answered with (the dashboard renders the same as a page).
    static func apiError(for error: any Error, request: Request, logger: Logger) -> APIError {
        switch error {
        case let error as APIError:
            return error
        case let error as TributaryError:
            return APIError(error)
        case let error as HTTPError:
            switch error.status {
            case .notFound:
                return APIError(.notFound, "not_found", "No route \(request.method.rawValue) \(request.uri.path.prefix(200)).")
            case .methodNotAllowed:
                return APIError(.methodNotAllowed, "method_not_allowed", "\(request.method.rawValue) is not allowed on \(request.uri.path).")
            case .contentTooLarge:
                return APIError(.contentTooLarge, "payload_too_large", "The request body is too large.")
            default:
                return APIError(error.status, "http_error", error.body ?? error.status.reasonPhrase)
            }
        case is CancellationError:
            return APIError(.serviceUnavailable, "shutting_down", "The server is shutting down.")
        default:
            logger.error("unexpected error", metadata: ["error": "\(String(reflecting: error))", "path": "\(request.uri.path)"])
            return APIError(.internalServerError, "server_error", "An unexpected error occurred; it has been logged.")
        }
    }
}

/// `Authorization: Bearer <secret key>`: the key selects the environment. Keys are compared in
/// constant time and never logged.
struct AuthMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext
    let environments: [EnvironmentConfig]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let header = request.headers[.authorization] else {
            throw APIError(.unauthorized, "missing_auth_header", "Missing Authorization header: send 'Authorization: Bearer <secret key>'.")
        }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer", !parts[1].isEmpty else {
            throw APIError(.unauthorized, "malformed_auth_header", "The Authorization header must be 'Bearer <secret key>'.")
        }
        guard let (match, _) = Self.environment(forKey: String(parts[1]), in: environments) else {
            throw APIError(.unauthorized, "unknown_account", "The secret key is not valid for any environment.")
        }
        var context = context
        context.environment = match
        context.logger[metadataKey: "environment"] = "\(match.name)"
        return try await next(request, context)
    }

    /// The environment one of whose secret keys is `presented`, and that key. Every key is compared
    /// (in constant time), so the time taken says nothing about which one matched.
    static func environment(forKey presented: String, in environments: [EnvironmentConfig]) -> (EnvironmentConfig, String)? {
        let bytes = Array(presented.utf8)
        guard !bytes.isEmpty else { return nil }
        var match: (EnvironmentConfig, String)? = nil
        for environment in environments {
            for key in environment.secretKeys where constantTimeEqual(Array(key.value.utf8), bytes) {
                match = (environment, key.value)
            }
        }
        return match
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference = UInt8(a.count == b.count ? 0 : 1)
        for i in 0..<max(a.count, b.count) {
            difference |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0)
        }
        return difference == 0
    }
}
