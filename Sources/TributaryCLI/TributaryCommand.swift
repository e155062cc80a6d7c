import ArgumentParser

/// `tributary`: the root command.
struct TributaryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tributary",
        abstract: "Tributary keeps third-party API data in sync for every customer connection.",
        subcommands: [ServeCommand.self, DemoCommand.self, DryrunCommand.self, ValidateCommand.self, RecordsCommand.self],
        defaultSubcommand: nil)
}

/// Options shared by commands that read `tributary.yaml` and open the database.
struct ConfigOptions: ParsableArguments {
    @Option(name: .long, help: "Configuration file.")
    var config: String = "tributary.yaml"

    @Option(name: .long, help: "SQLite database file (default: database.path from the configuration).")
    var database: String?

    @Option(name: .long, help: "Environment (default: the first one in the configuration).")
    var environment: String?
}
