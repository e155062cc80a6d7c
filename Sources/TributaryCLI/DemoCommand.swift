#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import ArgumentParser
import Logging
import ServiceLifecycle
import TributaryCore
import TributaryDemo
import TributaryEngine
import TributarySQLite
import TributaryStore

/// `tributary demo`: the newcomer's first command. Starts the demo provider (a fake shop API on
/// loopback) and Tributary itself — API, scheduler and worker on an SQLite file — creates a demo
/// connection with the `base` variant and two store variants of two declarative syncs, and prints
/// every run as records arrive, with the curl commands that read them.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run Tributary against the built-in demo shop API: three variants synced on schedule into a local SQLite file.")

    @Option(name: .long, help: "SQLite database file.")
    var database: String = "tributary-demo.sqlite"

    @Option(name: .long, help: "Port of Tributary's API.")
    var port: Int = 3003

    @Option(name: .long, help: "Port of the demo shop API.")
    var providerPort: Int = DemoConfiguration.providerPort

    @Option(name: .long, help: "Stop after this many seconds (default: run until Ctrl-C). With it, the command fails unless every variant synced.")
    var duration: Double?

    @Option(name: .long, parsing: .upToNextOption, help: "Variants to create besides base (each reads the shop's store of that name).")
    var variants: [String] = DemoConfiguration.variants

    @Option(name: .long, help: "Log level of Tributary's own log lines: trace, debug, info, notice, warning, error.")
    var logLevel: String = "warning"

    func validate() throws {
        if let duration, duration <= 0 { throw ValidationError("--duration must be positive.") }
        for variant in variants {
            do { try Variant.validate(variant) } catch { throw ValidationError(error.message) }
            if Variant.isBase(variant) { throw ValidationError("'base' is created automatically; name other variants.") }
        }
    }

    func run() async throws {
        let context = CLIContext.current
        let output = context.output
        var environmentVariables = ProcessInfo.processInfo.environment
        environmentVariables["TRIBUTARY_DEMO_PROVIDER_URL"] = "http://127.0.0.1:\(providerPort)"
        var config = try ConfigLoader.parse(yaml: DemoConfiguration.yaml, file: "<built-in demo configuration>", environment: environmentVariables)
        config.server.port = port
        guard let integration = config.integrations.first, let environment = config.environments.first, let secret = environment.secretKeys.first
        else { return }
        var logger = Logger(label: "tributary")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .warning
        let cipher = try EncryptionKey.cipherFromEnvironment() ?? .insecureDevelopment
        // The built-in development key is printed; a key set in the environment is only named.
        let shownSecret = environmentVariables["TRIBUTARY_DEV_SECRET_KEY"].map { _ in "$TRIBUTARY_DEV_SECRET_KEY" } ?? secret.value

        let store = try SQLiteStore(path: database)
        try await store.migrate()
        let connection = ConnectionRef(environment: environment.name, providerConfigKey: integration.providerConfigKey, connectionId: DemoConfiguration.connection)
        // Checked against the integration's auth and sealed as POST /connections does.
        let (type, sealed) = try ConnectionCredentials.seal(
            ["type": "API_KEY", "api_key": .string(DemoShopAPI.defaultAPIKey)], for: integration.auth, integration: integration.providerConfigKey,
            cipher: cipher)
        _ = try await store.importConnection(
            ConnectionImport(
                ref: connection, metadata: [:], connectionConfig: [:], credentialsType: type, sealedCredentials: sealed),
            baseVariantsOf: integration.syncs.map(\.name))
        for sync in integration.syncs {
            for variant in variants {
                let ref = VariantRef(connection: connection, syncName: sync.name, variant: variant)
                if try await store.variantState(ref) == nil {
                    _ = try await store.createVariant(ref, maximumPerSync: config.server.maxVariantsPerSync, paused: false)
                }
            }
        }

        let process = try ProcessServices(role: .all, config: config, store: store, cipher: cipher, functions: context.functions, logger: logger)
        let provider = DemoShopAPI().application(port: providerPort, logger: logger)
        let reporter = DemoRunReporter(
            store: store, variants: integration.syncs.flatMap { sync in ([Variant.base] + variants).map { VariantRef(connection: connection, syncName: sync.name, variant: $0) } },
            duration: duration.map { .milliseconds(Int64($0 * 1000)) }, output: output,
            readMe: Self.readMe(api: "http://127.0.0.1:\(port)", secret: shownSecret, integration: integration.providerConfigKey, variant: variants.first ?? Variant.base))

        output.line("Tributary demo")
        output.line("  demo shop API (the provider): http://127.0.0.1:\(providerPort)  (API key '\(DemoShopAPI.defaultAPIKey)' in \(DemoShopAPI.apiKeyHeader))")
        output.line("  Tributary API:                http://127.0.0.1:\(port)  (secret key '\(shownSecret)')")
        output.line("  dashboard:                    http://127.0.0.1:\(port)/dashboard  (log in with the secret key)")
        output.line("  records cache:                \(store.path)")
        output.line(
            "  connection '\(connection.connectionId)' of '\(integration.providerConfigKey)': syncs \(integration.syncs.map(\.name).joined(separator: ", ")), variants base, \(variants.joined(separator: ", "))")
        output.line("")
        output.line("Runs as they finish (each variant on its own schedule, every 30 s; the shop changes over time)\(duration == nil ? " — Ctrl-C to stop" : ""):")

        // The reporter ends the group: after --duration, or never (Ctrl-C / SIGTERM stop it).
        let services: [ServiceGroupConfiguration.ServiceConfiguration] =
            [.init(service: provider)] + process.services.map { .init(service: $0) }
            + [.init(service: reporter, successTerminationBehavior: .gracefullyShutdownGroup)]
        var groupConfiguration = ServiceGroupConfiguration(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        groupConfiguration.maximumGracefulShutdownDuration = process.shutdownBudget
        groupConfiguration.maximumCancellationDuration = .seconds(10)
        let group = ServiceGroup(configuration: groupConfiguration)
        try await group.runExplainingPorts([(port, "--port"), (providerPort, "--provider-port")])
        try store.close()
        if duration != nil {
            let missing = reporter.variantsWithoutSuccess()
            guard missing.isEmpty else {
                throw CLIError("These variants did not finish a successful run in time: \(missing.map(\.description).joined(separator: ", ")).")
            }
        }
    }

    /// The commands that read what the demo synced, printed once every variant has run.
    static func readMe(api: String, secret: String, integration: String, variant: String) -> [String] {
        let auth = "-H 'Authorization: Bearer \(secret)'"
        let target = "-H 'Connection-Id: \(DemoConfiguration.connection)' -H 'Provider-Config-Key: \(integration)'"
        return [
            "Read the records (the change feed of one model and variant; page on with &cursor=<next_cursor>):",
            "  curl -s \(auth) \(target) '\(api)/records?model=Order&variant=\(variant)&limit=2'",
            "Every variant's status, schedule and record counts:",
            "  curl -s \(auth) '\(api)/sync/status?syncs=*&provider_config_key=\(integration)&connection_id=\(DemoConfiguration.connection)'",
            "Run one variant now, or call the shop through the proxy with the connection's credentials:",
            "  curl -s \(auth) -H 'Content-Type: application/json' -d '{\"provider_config_key\":\"\(integration)\",\"connection_id\":\"\(DemoConfiguration.connection)\",\"syncs\":[\"orders::\(variant)\"]}' \(api)/sync/trigger",
            "  curl -s \(auth) \(target) '\(api)/proxy/stores/\(variant)/orders?limit=1'",
        ]
    }
}
