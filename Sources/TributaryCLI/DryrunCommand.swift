import ArgumentParser
import Logging
import TributaryCore
import TributaryEngine
import TributarySQLite
import TributaryStore

/// `tributary dryrun`: runs one sync once against a local SQLite file and prints what changed —
/// the loop for developing a sync function (like `nango dryrun`).
struct DryrunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dryrun",
        abstract: "Run a sync once for one connection and variant against a local SQLite file, and print the per-model results.")

    @Argument(help: "The sync to run.")
    var sync: String

    @Option(name: .long, help: "Connection id (created in the local database if missing).")
    var connection: String

    @Option(name: .long, help: "Variant.")
    var variant: String = Variant.base

    @Option(name: .long, help: "Integration (provider_config_key); needed only when several integrations have a sync of this name.")
    var integration: String?

    @Option(name: .long, help: "Set the connection's metadata to this JSON object before the run.")
    var metadata: String?

    @Option(name: .long, help: "Store these credentials (sealed) on the connection before the run, e.g. '{\"type\":\"API_KEY\",\"api_key\":\"…\"}'.")
    var credentials: String?

    @Flag(name: .long, help: "Clear lastSyncDate and the checkpoint before the run.")
    var reset = false

    @Flag(name: .long, help: "With --reset, also empty the variant's records first.")
    var emptyCache = false

    @Flag(name: .long, help: "Print debug logs.")
    var verbose = false

    @Flag(name: .long, help: "Use the fixed, public development key for credentials when TRIBUTARY_ENCRYPTION_KEY is not set, also on PostgreSQL (a local SQLite file needs no flag). Never in production.")
    var insecureDevKey = false

    @OptionGroup var options: ConfigOptions

    func validate() throws {
        do {
            try Variant.validate(variant)
        } catch {
            throw ValidationError(error.message)
        }
        if emptyCache, !reset { throw ValidationError("--empty-cache needs --reset.") }
    }

    func run() async throws {
        let context = CLIContext.current
        let output = context.output
        let config = try options.load(output: output).config
        let environment = try ConfigFile.environment(options.environment, in: config)
        let candidates = config.integrations(in: environment.name).filter {
            $0.sync(named: sync) != nil && (integration == nil || $0.providerConfigKey == integration)
        }
        guard let chosen = candidates.first, let syncConfig = chosen.sync(named: sync) else {
            let known = config.integrations(in: environment.name).flatMap { i in i.syncs.map { "\(i.providerConfigKey)/\($0.name)" } }
            throw CLIError("No sync '\(sync)'\(integration.map { " in integration '\($0)'" } ?? "") in environment '\(environment.name)' (known: \(known.joined(separator: ", "))).")
        }
        guard candidates.count == 1 else {
            throw CLIError("Several integrations have a sync '\(sync)': \(candidates.map(\.providerConfigKey).joined(separator: ", ")). Pick one with --integration.")
        }

        // The public development key only for a local SQLite file (or when asked): on a shared database it
        // would seal real credentials with a key everyone knows, or fail to open the ones sealed properly.
        // Decided before the database is opened (and migrated).
        let cipher: CredentialCipher
        if let fromEnvironment = try EncryptionKey.cipherFromEnvironment() {
            cipher = fromEnvironment
        } else if !StoreSelection.choosesPostgres(options.database, config: config.database) || insecureDevKey {
            cipher = .insecureDevelopment
        } else {
            throw CLIError(
                "TRIBUTARY_ENCRYPTION_KEY is not set and the database is PostgreSQL: set the key the servers use, or pass --insecure-dev-key for a development database.")
        }
        let selection = try await StoreSelection.open(options.database, config: config.database, logger: Logger(label: "tributary.dryrun"))
        try await selection.use { store in
            let ref = VariantRef(
                connection: ConnectionRef(environment: environment.name, providerConfigKey: chosen.providerConfigKey, connectionId: connection),
                syncName: sync, variant: variant)
            try await store.ensureVariant(ref)
            if let metadata {
                guard case .object(let object)? = try? JSONParser.parse(metadata) else {
                    throw CLIError("--metadata must be a JSON object, e.g. '{\"threshold\": 100}'.")
                }
                try await store.setMetadata(object, of: [ref.connection])
            }
            if reset { try await store.resetVariants([ref], emptyCache: emptyCache, queuesRuns: false) }
            if let credentials {
                guard case .object(let object)? = try? JSONParser.parse(credentials) else {
                    throw CLIError("--credentials must be a JSON object, e.g. '{\"type\": \"API_KEY\", \"api_key\": \"…\"}'.")
                }
                do {
                    let (type, sealed) = try ConnectionCredentials.seal(object, for: chosen.auth, integration: chosen.providerConfigKey, cipher: cipher)
                    try await store.updateCredentials(sealed, type: type, of: ref.connection)
                } catch let error as TributaryError {
                    throw CLIError("--credentials: \(error.message)")
                }
            }

            var logger = Logger(label: "tributary.dryrun")
            logger.logLevel = verbose ? .debug : .warning
            // Provider calls use the connection's stored credentials (--credentials, or imported through the API into this database).
            let http = OutboundHTTP()
            let providers = ProviderAccess(config: config, store: store, cipher: cipher, http: http, logger: logger)
            let executor = SyncExecutor(store: store, functions: context.functions, providers: providers, logger: logger)
            let run: RunRecord
            do {
                run = try await executor.run(ref, sync: syncConfig)
            } catch {
                try? await http.shutdown()
                throw error
            }
            try await http.shutdown()
            let counts = try await store.recordCounts(of: ref)
            output.line(RunPrinter.summary(run))
            for line in RunPrinter.table(run, counts: counts) { output.line(line) }
            for entry in try await store.logs(ofRun: run.id, limit: 200) {
                output.line("[\(entry.level.rawValue)] \(entry.message)")
            }
            output.line("database: \(selection.location)")
            if run.status != .succeeded {
                if let error = run.error { output.line("error: \(error)") }
                throw ExitCode(1)
            }
        }
    }
}
