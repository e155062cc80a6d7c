import Logging
import ServiceLifecycle
import TributaryCore
import TributaryPostgres
import TributarySQLite
import TributaryStore

/// The store a command uses: the SQLite file (the default), or PostgreSQL when `--database` is a
/// `postgres://` URL or the configuration sets `database.url`.
struct StoreSelection {
    let store: any Store
    /// The PostgreSQL pool, which must run as a service while the store is used.
    let service: (any Service)?
    /// Where the data lives, without secrets (for start-up lines).
    let location: String
    private let sqlite: SQLiteStore?


    /// Whether ``open(_:config:logger:)`` would open PostgreSQL for these settings.
    static func choosesPostgres(_ database: String?, config: DatabaseConfig) -> Bool {
        if let database { return database.hasPrefix("postgres://") || database.hasPrefix("postgresql://") }
        return config.url != nil
    }

    /// Opens and migrates the store.
    static func open(_ database: String?, config: DatabaseConfig, logger: Logger) async throws -> StoreSelection {
        let selection: StoreSelection
        if let database, !database.hasPrefix("postgres://"), !database.hasPrefix("postgresql://") {
            selection = try sqlite(database)
        } else if let url = try database.map({ text in
            do { return try PostgresURL(text) } catch { throw CLIError("--database \(error)") }
        }) ?? config.url {
            let store = PostgresStore(url: url, maximumConnections: config.maxConnections, logger: logger)
            selection = StoreSelection(store: store, service: store, location: "PostgreSQL \(store.displayLocation)", sqlite: nil)
        } else {
            selection = try sqlite(config.path)
        }
        try await migrate(selection, logger: logger)
        return selection
    }

    /// How long a starting process waits for an unreachable database before it gives up.
    static let databaseWait: Duration = .seconds(60)

    /// Migrates; a database that cannot be reached yet (restarting, failing over) is waited for — a
    /// process started during an outage comes up when the database does, for a while.
    private static func migrate(_ selection: StoreSelection, logger: Logger) async throws {
        let deadline = ContinuousClock.now + databaseWait
        while true {
            do {
                try await selection.store.migrate()
                return
            } catch let error as TributaryError where error.code == .storeUnavailable && ContinuousClock.now < deadline {
                logger.warning("the database cannot be reached yet; trying again", metadata: ["error": "\(error.message)"])
                try await Task.sleep(for: .seconds(1))
            }
        }
    }

    private static func sqlite(_ path: String) throws -> StoreSelection {
        let store = try SQLiteStore(path: path)
        return StoreSelection(store: store, service: nil, location: store.path, sqlite: store)
    }

    /// Runs `body` with the store usable (a one-shot command: the PostgreSQL pool runs beside it).
    func use<T>(_ body: (any Store) async throws -> T) async throws -> T {
        defer { close() }
        guard let service else { return try await body(store) }
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await service.run() }
            defer { group.cancelAll() }
            return try await body(store)
        }
    }

    /// Closes the SQLite file (the PostgreSQL pool ends with its service).
    func close() {
        try? sqlite?.close()
    }
}
