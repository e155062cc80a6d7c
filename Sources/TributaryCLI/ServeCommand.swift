#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import ArgumentParser
import Logging
import ServiceLifecycle
import TributaryCore
import TributaryEngine
import TributaryServer
import TributarySQLite

/// `tributary serve`: the HTTP API on the embedded SQLite store, in one process.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve", abstract: "Serve the Nango-compatible HTTP API (SQLite, one process).")

    @OptionGroup var options: ConfigOptions

    @Option(name: .long, help: "Listen on this port (default: server.port from the configuration, 3003).")
    var port: Int?

    @Option(name: .long, help: "Listen on this address (default: server.host from the configuration, 127.0.0.1).")
    var host: String?

    @Flag(name: .long, help: "Encrypt credentials with a fixed, public development key when TRIBUTARY_ENCRYPTION_KEY is not set. Never in production.")
    var insecureDevKey = false

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    func run() async throws {
        let context = CLIContext.current
        let output = context.output
        var (config, usesDemo) = try options.load(output: output)
        if let port { config.server.port = port }
        if let host { config.server.host = host }
        var logger = Logger(label: "tributary")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info

        let cipher: CredentialCipher
        if let key = ProcessInfo.processInfo.environment["TRIBUTARY_ENCRYPTION_KEY"], !key.isEmpty {
            cipher = try CredentialCipher(base64Key: key)
        } else if insecureDevKey || usesDemo {
            logger.warning("TRIBUTARY_ENCRYPTION_KEY is not set: credentials are encrypted with a public development key. Never do this in production.")
            cipher = .insecureDevelopment
        } else {
            throw CLIError(
                "TRIBUTARY_ENCRYPTION_KEY is not set. It encrypts connection credentials at rest: set it to 32 random bytes, base64-encoded (`openssl rand -base64 32`). For local development only, pass --insecure-dev-key.")
        }

        let store = try SQLiteStore(path: options.database ?? config.database.path)
        try await store.migrate()
        let executor = SyncExecutor(
            store: store, functions: context.functions, logger: logger, leaseSeconds: Int64(config.scheduler.leaseSeconds))
        let coordinator = RunCoordinator(
            executor: executor,
            limits: RunCoordinator.Limits(
                maxConcurrentRuns: config.scheduler.maxConcurrentRuns, maxRunsPerConnection: config.scheduler.maxRunsPerConnection,
                drain: .seconds(config.scheduler.drainSeconds), retry: config.scheduler.retry),
            logger: logger)
        let scheduler = Scheduler(config: config, store: store, coordinator: coordinator, logger: logger)
        let api = API(config: config, store: store, coordinator: coordinator, cipher: cipher)
        let app = buildApplication(api: api, services: [scheduler], logger: logger)
        output.line("Tributary API on http://\(config.server.host):\(config.server.port) — database \(store.path), environments: \(config.environments.map(\.name).joined(separator: ", "))")
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(services: [app], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        try store.close()
    }
}
