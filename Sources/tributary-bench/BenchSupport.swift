#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Foundation
import Logging
import PostgresNIO
import TributaryCore
import TributaryPostgres
import TributarySQLite
import TributaryStore

/// Options every suite takes.
struct BenchOptions: ParsableArguments {
    @Option(help: "Records per dataset (suites that sync records).") var records = 100_000
    @Option(help: "Records per page.") var pageSize = 1000
    @Option(help: "Directory for SQLite files (a fresh subdirectory, removed afterwards).") var directory = NSTemporaryDirectory()
    @Option(help: "A postgres:// URL: also run the suite on PostgreSQL (a fresh database there, dropped afterwards).") var database: String?
    @Option(help: "Write the results as JSON to this file.") var json: String?
    @Option(help: "Measure only this store (sqlite or postgres; postgres needs --database).") var only: BenchStoreKind?

    func validate() throws {
        if only == .postgres, database == nil { throw ValidationError("--only postgres needs a --database URL") }
    }

    func postgresServer() throws -> PostgresURL? {
        guard let database else { return nil }
        do {
            return try PostgresURL(database)
        } catch {
            throw ValidationError("--database: \(error)")
        }
    }
}

/// Where a suite's store lives.
enum BenchLocation: Sendable {
    case sqlite(String)
    case postgres(PostgresURL)
}

/// Which store a suite measures.
enum BenchStoreKind: String, Sendable, ExpressibleByArgument {
    case sqlite
    case postgres
}

/// Fresh stores for a suite: a SQLite file in a temporary directory, or a new database on the
/// PostgreSQL server given with `--database` (created for the suite, dropped after).
struct BenchStores: Sendable {
    let directory: URL
    let server: PostgresURL?
    let logger: Logger
    let only: BenchStoreKind?

    init(options: BenchOptions) throws {
        only = options.only
        directory = URL(fileURLWithPath: options.directory).appendingPathComponent("tributary-bench-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        server = try options.postgresServer()
        var logger = Logger(label: "bench")
        logger.logLevel = .error
        self.logger = logger
    }

    /// SQLite, then PostgreSQL when a server was given (or only the one `--only` names).
    var kinds: [BenchStoreKind] {
        if let only { return [only] }
        return server == nil ? [.sqlite] : [.sqlite, .postgres]
    }

    /// For servers stopped by cancellation at the end of a measurement (their shutdown complaints are noise here).
    var quietLogger: Logger {
        var logger = logger
        logger.logLevel = .critical
        return logger
    }

    func removeFiles() { try? FileManager.default.removeItem(at: directory) }

    /// Where the SQLite file named `name` lives.
    func sqlitePath(named name: String) -> String { directory.appendingPathComponent("\(name).sqlite").path }

    /// Removes the SQLite file named `name` with its `-wal` and `-shm` (a million orders take about a gigabyte).
    func removeSQLiteFiles(named name: String) {
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: sqlitePath(named: name) + suffix) }
    }

    /// Runs `body` with a fresh, migrated store of `kind` named `name`, and where it lives (for
    /// raw-limit queries on the same database).
    func withStore<T: Sendable>(
        _ kind: BenchStoreKind, name: String, clock: (@Sendable () -> Timestamp)? = nil,
        _ body: @Sendable (_ store: any Store, _ location: BenchLocation) async throws -> T
    ) async throws -> T {
        let now = clock ?? { Timestamp.now() }
        switch kind {
        case .sqlite:
            let path = sqlitePath(named: name)
            let store = try SQLiteStore(path: path, clock: now)
            defer { try? store.close() }
            try await store.migrate()
            return try await body(store, .sqlite(path))
        case .postgres:
            guard let server else { throw ValidationError("no --database URL given") }
            let database = "tributary_bench_\(name.replacingOccurrences(of: "-", with: "_"))_\(getpid())"
            try await administer(server, "DROP DATABASE IF EXISTS \(database)")
            try await administer(server, "CREATE DATABASE \(database)")
            let url = server.with(database: database)
            let store = PostgresStore(url: url, maximumConnections: 8, clock: now, logger: logger)
            try await store.migrate()
            let result = try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await store.run() }
                defer { group.cancelAll() }
                return try await body(store, .postgres(url))
            }
            try await administer(server, "DROP DATABASE IF EXISTS \(database) WITH (FORCE)")
            return result
        }
    }

    /// Runs one administrative statement (identifiers cannot be bound: names are generated here).
    private func administer(_ server: PostgresURL, _ sql: String) async throws {
        let connection = try await PostgresConnection.connect(configuration: try server.connectionConfiguration(), id: 1, logger: logger)
        do {
            try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger)
        } catch {
            try? await connection.close()
            throw error
        }
        try await connection.close()
    }
}

/// Measurements of this process.
func elapsed(_ start: ContinuousClock.Instant) -> Double {
    (ContinuousClock.now - start).inSeconds
}

/// Times `body` on the continuous clock.
func timed<T>(_ body: () async throws -> T) async rethrows -> (seconds: Double, value: T) {
    let start = ContinuousClock.now
    let value = try await body()
    return (elapsed(start), value)
}

func rate(_ count: Int, _ seconds: Double) -> Int { seconds > 0 ? Int(Double(count) / seconds) : 0 }

func percent(_ part: Double, of whole: Double) -> String { whole > 0 ? String(format: "%.0f%%", part / whole * 100) : "-" }

/// A printed table plus its rows as JSON.
struct BenchReport {
    let suite: String
    var header: [String]
    var rows: [[String]] = []
    var notes: [String] = []
    var figures: JSONObject = [:]
    /// Whether `--records` and `--page-size` go into the JSON (not for the scheduler suite).
    var usesRecordOptions = true

    init(suite: String, header: [String]) {
        self.suite = suite
        self.header = header
    }

    mutating func add(_ row: [String]) { rows.append(row) }

    /// Records a figure for the JSON file under `store.key`.
    mutating func figure(_ store: BenchStoreKind, _ key: String, _ value: Double) {
        figure(store.rawValue, key, value)
    }

    /// Records a figure for the JSON file under `group.key` (a figure of no store: `client`).
    mutating func figure(_ group: String, _ key: String, _ value: Double) {
        var figures = self.figures[group]?.objectValue ?? [:]
        figures[key] = .number(JSONNumber((value * 1000).rounded() / 1000))
        self.figures[group] = .object(figures)
    }

    func print(options: BenchOptions) throws {
        var widths = header.map(\.count)
        for row in rows { for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, cell in
                i == 0 ? cell.padding(toLength: widths[i], withPad: " ", startingAt: 0) : String(repeating: " ", count: max(0, widths[i] - cell.count)) + cell
            }.joined(separator: "  ")
        }
        Swift.print("\n\(suite)")
        Swift.print(line(header))
        Swift.print(line(widths.map { String(repeating: "-", count: $0) }))
        for row in rows { Swift.print(line(row)) }
        for note in notes { Swift.print(note) }
        if let path = options.json {
            var object = figures
            object["suite"] = .string(suite)
            if usesRecordOptions {
                object["records"] = .number(JSONNumber(options.records))
                object["page_size"] = .number(JSONNumber(options.pageSize))
            }
            try Data(JSONWriter.string(.object(object), canonical: true).utf8).write(to: URL(fileURLWithPath: path))
        }
    }
}

extension RunRecord {
    /// `succeeded +added ~updated -deleted` of the bench's `Order` model, for a table cell.
    var summary: String {
        let r = results["Order"] ?? ModelResult()
        return "\(status.rawValue) +\(r.added) ~\(r.updated) -\(r.deleted)"
    }
}

/// Formats seconds for a table cell.
func seconds(_ value: Double) -> String { String(format: "%.2f s", value) }
