import ArgumentParser
import Logging
import TributaryCore
import TributarySQLite
import TributaryStore

/// `tributary records`: reads a dataset's change feed from the local database.
struct RecordsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "records", abstract: "Print records of one model and variant from the local database, in change order.")

    @Option(name: .long, help: "Integration (provider_config_key).")
    var integration: String

    @Option(name: .long, help: "Connection id.")
    var connection: String

    @Option(name: .long, help: "Model.")
    var model: String

    @Option(name: .long, help: "Variant.")
    var variant: String = Variant.base

    @Option(name: .long, help: "Start after this cursor.")
    var cursor: String?

    @Option(name: .long, help: "At most this many records (1…10000).")
    var limit: Int = 100

    @Option(name: .long, help: "Comma list of added, updated, deleted.")
    var filter: String?

    @OptionGroup var options: ConfigOptions

    func run() async throws {
        let output = CLIContext.current.output
        let config = try options.load(output: output).config
        let environment = try ConfigFile.environment(options.environment, in: config)
        var actions: Set<RecordAction>? = nil
        if let filter {
            actions = []
            for part in filter.split(separator: ",") {
                guard let action = RecordAction(filterValue: part) else {
                    throw ValidationError("--filter takes added, updated and deleted, not '\(part)'.")
                }
                actions?.insert(action)
            }
        }
        let query = try ChangeQuery(
            dataset: DatasetRef(
                connection: ConnectionRef(environment: environment.name, providerConfigKey: integration, connectionId: connection),
                model: model, variant: variant),
            cursor: try cursor.map { try FeedCursor(encoded: $0) }, limit: limit, actions: actions)
        let selection = try await StoreSelection.open(options.database, config: config.database, logger: Logger(label: "tributary.records"))
        let page = try await selection.use { store in try await store.changes(query) }
        for record in page.records { output.line(String(decoding: record.renderedJSON(), as: UTF8.self)) }
        output.line("next_cursor: \(page.nextCursor?.encoded ?? "null")")
    }
}
