import Foundation

/// A PostgreSQL connection URL: `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=disable|prefer|require]`
/// (`postgresql://` also accepted). The password never appears in ``redacted`` or in errors.
public struct PostgresURL: Sendable, Hashable {
    public enum TLSMode: String, Sendable, Hashable {
        /// Plain TCP (loopback, or a private network you trust).
        case disable
        /// TLS when the server offers it (postgres-nio's default).
        case prefer
        /// TLS or no connection.
        case require
    }

    /// Why a string is not a usable PostgreSQL URL.
    public struct Invalid: Error, Sendable, CustomStringConvertible {
        public var reason: String
        public var description: String {
            "not a usable PostgreSQL URL: \(reason). Expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=disable|prefer|require]"
        }
    }

    public var host: String
    public var port: Int
    public var username: String
    public var password: String?
    public var database: String
    public var tls: TLSMode

    public init(host: String, port: Int = 5432, username: String, password: String? = nil, database: String, tls: TLSMode = .prefer) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
        self.tls = tls
    }

    /// Parses a URL.
    ///
    /// - Throws: ``Invalid`` saying what is wrong (never repeating the password).
    public init(_ string: String) throws(Invalid) {
        func invalid(_ why: String) -> Invalid { Invalid(reason: why) }
        guard let components = URLComponents(string: string) else { throw invalid("it cannot be parsed") }
        guard components.scheme == "postgres" || components.scheme == "postgresql" else {
            throw invalid("the scheme must be postgres:// or postgresql://")
        }
        guard let host = components.host, !host.isEmpty else { throw invalid("it names no host") }
        guard let user = components.user, !user.isEmpty else { throw invalid("it names no user") }
        let database = String(components.path.drop(while: { $0 == "/" }))
        guard !database.isEmpty, !database.contains("/") else { throw invalid("it names no database (the path)") }
        var tls = TLSMode.prefer
        for item in components.queryItems ?? [] {
            switch item.name {
            case "sslmode":
                switch item.value ?? "" {
                case "disable": tls = .disable
                case "prefer", "allow": tls = .prefer
                case "require", "verify-ca", "verify-full": tls = .require
                default: throw invalid("sslmode must be disable, prefer or require")
                }
            default:
                throw invalid("unknown parameter '\(item.name)' (only sslmode is understood)")
            }
        }
        self.init(
            host: host, port: components.port ?? 5432, username: user.removingPercentEncoding ?? user,
            password: components.password.map { $0.removingPercentEncoding ?? $0 }, database: database.removingPercentEncoding ?? database,
            tls: tls)
    }

    /// The URL with the password masked, for logs.
    public var redacted: String {
        "postgres://\(username)\(password == nil ? "" : ":***")@\(host):\(port)/\(database)"
    }

    /// The same server and credentials, another database (tests create one per test).
    public func with(database: String) -> PostgresURL {
        var copy = self
        copy.database = database
        return copy
    }
}
