import ArgumentParser
import TributaryCore

/// `tributary validate`: checks a configuration file and summarises it.
struct ValidateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate", abstract: "Check tributary.yaml and list what it declares.")

    @Option(name: .long, help: "Configuration file.")
    var config: String = "tributary.yaml"

    func run() async throws {
        let output = CLIContext.current.output
        let functions = CLIContext.current.functions
        let loaded: TributaryConfig
        do {
            loaded = try ConfigFile.load(config)
        } catch let error as ConfigError {
            for issue in error.issues { output.line(issue.description) }
            throw ExitCode(1)
        }
        output.line("\(config) is valid.")
        output.line("environments: \(loaded.environments.map(\.name).joined(separator: ", "))")
        var missing: [String] = []
        for integration in loaded.integrations {
            output.line("integration \(integration.providerConfigKey) (auth: \(integration.auth.typeName))")
            for sync in integration.syncs {
                let known = functions.function(named: sync.function) != nil
                if !known { missing.append("\(integration.providerConfigKey)/\(sync.name) → \(sync.function)") }
                output.line(
                    "  sync \(sync.name): function \(sync.function)\(known ? "" : " (NOT REGISTERED)"), models \(sync.models.joined(separator: ", ")), \(sync.syncType.rawValue), \(sync.frequency.text)\(sync.trackDeletes ? ", tracks deletes" : "")")
            }
        }
        if !missing.isEmpty {
            output.line("These syncs use functions this binary does not register: \(missing.joined(separator: "; ")).")
            throw ExitCode(1)
        }
    }
}
