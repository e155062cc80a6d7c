import PostgresNIO
import TributaryCore

extension PostgresURL {
    /// The pool configuration for this URL.
    var clientConfiguration: PostgresClient.Configuration {
        let tlsSetting: PostgresClient.Configuration.TLS =
            switch tls {
            case .disable: .disable
            case .prefer: .prefer(.makeClientConfiguration())
            case .require: .require(.makeClientConfiguration())
            }
        var configuration = PostgresClient.Configuration(host: host, port: port, username: username, password: password, database: database, tls: tlsSetting)
        configuration.options.additionalStartupParameters = Self.sessionSettings
        return configuration
    }

    /// Settings of every pooled session. The store never leaves a transaction idle (nothing but SQL
    /// runs inside one), so a session idle in a transaction for 20 s belongs to a frozen or cut-off
    /// process: the server ends it and its locks go. No lock is waited for longer than a minute.
    /// No JIT compilation: the store's statements touch a page of rows each, and the planner's
    /// estimates for a page's CTEs (a thousand ids joined to a dataset) pass `jit_above_cost`,
    /// which then spends ~50 ms compiling a statement that runs in 4 (docs/BENCHMARKS.md).
    static let sessionSettings: [(String, String)] = [("idle_in_transaction_session_timeout", "20000"), ("lock_timeout", "60000"), ("jit", "off")]

    /// A single connection's configuration (administration: creating databases in tests, one-off tools).
    public func connectionConfiguration() throws -> PostgresConnection.Configuration {
        let tlsSetting: PostgresConnection.Configuration.TLS =
            switch tls {
            case .disable: .disable
            case .prefer: .prefer(try .init(configuration: .makeClientConfiguration()))
            case .require: .require(try .init(configuration: .makeClientConfiguration()))
            }
        return PostgresConnection.Configuration(host: host, port: port, username: username, password: password, database: database, tls: tlsSetting)
    }
}
