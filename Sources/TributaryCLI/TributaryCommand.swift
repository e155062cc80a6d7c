#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import ArgumentParser
import TributaryCore

/// `tributary`: the root command.
struct TributaryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tributary",
        abstract: "Tributary keeps third-party API data in sync for every customer connection.",
        subcommands: [
            ServeCommand.self, DemoCommand.self, DemoProviderCommand.self, DryrunCommand.self, ValidateCommand.self, RecordsCommand.self, BackupCommand.self, MigrateCommand.self,
        ],
        defaultSubcommand: nil)
}

/// Options shared by commands that read `tributary.yaml` and open the database.
struct ConfigOptions: ParsableArguments {
    @Option(name: .long, help: "Configuration file.")
    var config: String = "tributary.yaml"

    @Option(name: .long, help: "SQLite database file, or a postgres:// URL (default: database.url, else database.path, from the configuration).")
    var database: String?

    @Option(name: .long, help: "Environment (default: the first one in the configuration).")
    var environment: String?

    /// The configuration file, or the built-in demo configuration when the default file does not exist.
    func load(output: CLIOutput) throws -> (config: TributaryConfig, usesDemo: Bool) {
        let isDefault = config == "tributary.yaml"
        let usesDemo = isDefault && !FileManager.default.fileExists(atPath: config)
        return (try ConfigFile.loadOrDemo(config, isDefault: isDefault, output: output), usesDemo)
    }
}
