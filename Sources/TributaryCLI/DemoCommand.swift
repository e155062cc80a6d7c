#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import ArgumentParser
import Logging
import TributaryCore
import TributaryDemo
import TributaryEngine
import TributarySQLite
import TributaryStore

/// `tributary demo`: the newcomer's first command. Creates a demo connection with the `base`
/// variant and two store variants, and runs the demo syncs for each variant in rounds, printing
/// what changed — records flowing into the embedded SQLite cache, no setup needed.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo", abstract: "Run the built-in demo: a fake shop synced for three variants into a local SQLite file.")

    @Option(name: .long, help: "How many rounds of runs.")
    var rounds: Int = 3

    @Option(name: .long, help: "Seconds between rounds.")
    var interval: Double = 15

    @Option(name: .long, help: "SQLite database file.")
    var database: String = "tributary-demo.sqlite"

    @Option(name: .long, parsing: .upToNextOption, help: "Variants to create besides base.")
    var variants: [String] = ["store-eu", "store-us"]

    func validate() throws {
        guard rounds >= 1 else { throw ValidationError("--rounds must be at least 1.") }
        guard interval >= 0 else { throw ValidationError("--interval must not be negative.") }
        for variant in variants {
            do { try Variant.validate(variant) } catch { throw ValidationError(error.message) }
            if Variant.isBase(variant) { throw ValidationError("'base' is created automatically; name other variants.") }
        }
    }

    func run() async throws {
        let context = CLIContext.current
        let output = context.output
        let config = try ConfigLoader.parse(
            yaml: DemoSyncs.configurationYAML, file: "<built-in demo configuration>", environment: ProcessInfo.processInfo.environment)
        guard let integration = config.integrations.first, let environment = config.environments.first else { return }
        let store = try SQLiteStore(path: database)
        try await store.migrate()
        var logger = Logger(label: "tributary.demo")
        logger.logLevel = .warning
        let executor = SyncExecutor(store: store, functions: context.functions, logger: logger)
        let connection = ConnectionRef(environment: environment.name, providerConfigKey: integration.providerConfigKey, connectionId: "demo-connection")
        output.line("Tributary demo: integration '\(integration.providerConfigKey)', connection '\(connection.connectionId)', database \(database)")
        output.line("Variants: base (store 'main'), \(variants.joined(separator: ", ")) — each its own records, checkpoint and lastSyncDate.")
        for round in 1...rounds {
            output.line("")
            output.line("— round \(round) of \(rounds) —")
            for sync in integration.syncs {
                for variant in [Variant.base] + variants {
                    let ref = VariantRef(connection: connection, syncName: sync.name, variant: variant)
                    let run = try await executor.run(ref, sync: sync)
                    let counts = try await store.recordCounts(of: ref)
                    let results = sync.models.map { model -> String in
                        let r = run.results[model] ?? ModelResult()
                        return "\(model): +\(r.added) ~\(r.updated) -\(r.deleted) (\(counts[model] ?? 0) records)"
                    }.joined(separator: ", ")
                    output.line("\(sync.name)::\(variant) \(run.status.rawValue) [\(run.kind.rawValue)] \(results)")
                    if let error = run.error { output.line("  error: \(error)") }
                }
            }
            if round < rounds, interval > 0 {
                output.line("(waiting \(interval) s: the demo shop gets new orders, status changes and drops old orders)")
                try await Task.sleep(for: .milliseconds(Int(interval * 1000)))
            }
        }
        output.line("")
        output.line("The first two entries of the Order change feed of variant \(variants.first ?? Variant.base):")
        let page = try await store.changes(
            try ChangeQuery(dataset: DatasetRef(connection: connection, model: "Order", variant: variants.first ?? Variant.base), limit: 2))
        for record in page.records { output.line(String(decoding: record.renderedJSON(), as: UTF8.self)) }
        output.line("")
        output.line("Read more: swift run tributary records --database \(database) --integration \(integration.providerConfigKey) --connection \(connection.connectionId) --model Order --variant \(variants.first ?? Variant.base) --limit 5")
    }
}
