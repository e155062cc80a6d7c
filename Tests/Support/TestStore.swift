import Foundation
@_exported import TributaryChaos
import Synchronization
import Logging
import PostgresNIO
import TributaryCore
import TributaryPostgres
import TributarySQLite
import TributaryStore

/// The stores the store and engine tests run against: SQLite always, PostgreSQL when
/// `TRIBUTARY_TEST_POSTGRES_URL` names a server (`scripts/throwaway-postgres` starts one and sets it;
/// `.ci/run` always does).
public enum StoreKind: String, Sendable, CaseIterable, CustomStringConvertible {
    case sqlite
    case postgres

    /// The server tests create their databases on, if any.
    public static let postgresURL: PostgresURL? = {
        guard let text = ProcessInfo.processInfo.environment["TRIBUTARY_TEST_POSTGRES_URL"], !text.isEmpty else { return nil }
        do {
            return try PostgresURL(text)
        } catch {
            fatalError("TRIBUTARY_TEST_POSTGRES_URL: \(error)")
        }
    }()

    /// The kinds to run each store test with.
    public static let available: [StoreKind] = postgresURL == nil ? [.sqlite] : [.sqlite, .postgres]

    public var description: String { rawValue }
}

/// A fresh, migrated store for one test: a new SQLite file in a new temporary directory, or a new
/// database on the test PostgreSQL server. Everything is released with the fixture.
public final class TestStore: Sendable {
    public let kind: StoreKind
    /// The directory the test may use for its own files (the SQLite file lives here too).
    public let directory: URL
    public let store: any Store
    /// The SQLite file, or the PostgreSQL URL of the test's database — what a child process is given.
    public let location: String
    private let runners: Runners

    /// Creates the store.
    /// - Parameter clock: the store's time source (tests that control time pass their own).
    public init(_ kind: StoreKind, clock: (@Sendable () -> Timestamp)? = nil) async throws {
        self.kind = kind
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        runners = Runners()
        switch kind {
        case .sqlite:
            location = directory.appendingPathComponent("store.sqlite").path
        case .postgres:
            guard let server = StoreKind.postgresURL else { throw TestStoreError("TRIBUTARY_TEST_POSTGRES_URL is not set") }
            let name = "t_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
            try await Self.createDatabase(name, template: try await Template.shared.name(on: server), on: server)
            location = server.with(database: name).asString
        }
        store = try await Self.open(kind, location, clock: clock, runners: runners)
    }

    /// Another store instance on the same database — a restarted process, or a second process sharing it.
    public func reopen(clock: (@Sendable () -> Timestamp)? = nil) async throws -> any Store {
        try await Self.open(kind, location, clock: clock, runners: runners)
    }

    deinit {
        runners.cancelAll()
        if let sqlite = store as? SQLiteStore { try? sqlite.close() }
        try? FileManager.default.removeItem(at: directory)
    }

    private static func open(_ kind: StoreKind, _ location: String, clock: (@Sendable () -> Timestamp)?, runners: Runners) async throws -> any Store {
        let now = clock ?? { Timestamp.now() }
        switch kind {
        case .sqlite:
            let store = try SQLiteStore(path: location, clock: now)
            try await store.migrate()
            return store
        case .postgres:
            var logger = Logger(label: "tributary.postgres")
            logger.logLevel = .error
            // Leases are compared on the database's clock: a test that moves its clock moves the lease clock by as much.
            let offset: @Sendable () -> Int64
            if let clock {
                offset = { clock().microseconds - Timestamp.now().microseconds }
            } else {
                offset = { 0 }
            }
            let store = PostgresStore(url: try PostgresURL(location), maximumConnections: 8, clock: now, leaseClockOffset: offset, logger: logger)
            try await store.migrate()
            // The pool runs for as long as the fixture lives (cancelled in deinit).
            runners.add(Task { await store.run() })
            return store
        }
    }

    static func createDatabase(_ name: String, template: String? = nil, on server: PostgresURL) async throws {
        let connection = try await PostgresConnection.connect(
            configuration: try server.connectionConfiguration(), id: 1, logger: Logger(label: "tributary.tests"))
        do {
            // Identifiers cannot be bound; the name is generated above (letters, digits, underscore).
            try await connection.query(
                PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)" + (template.map { " TEMPLATE \($0)" } ?? "")), logger: Logger(label: "tributary.tests"))
        } catch {
            try? await connection.close()
            throw error
        }
        try await connection.close()
    }
}

/// A migrated database made once per test process; each test's database is a copy of it (much
/// cheaper than migrating every time).
private actor Template {
    static let shared = Template()
    private var made: Task<String, any Error>?

    func name(on server: PostgresURL) async throws -> String {
        if let made { return try await made.value }
        let task = Task<String, any Error> {
            let name = "tributary_template_\(ProcessInfo.processInfo.processIdentifier)_\(UInt32.random(in: 0...UInt32.max))"
            try await TestStore.createDatabase(name, on: server)
            var logger = Logger(label: "tributary.postgres")
            logger.logLevel = .error
            // Migrated over its own connection, which is closed again: a template must have no connections when copied.
            try await PostgresStore(url: server.with(database: name), logger: logger).migrate()
            return name
        }
        made = task
        return try await task.value
    }
}

/// The tasks running PostgreSQL pools of a fixture's stores.
private final class Runners: Sendable {
    private let tasks = Mutex<[Task<Void, Never>]>([])
    func add(_ task: Task<Void, Never>) { tasks.withLock { $0.append(task) } }
    func cancelAll() { tasks.withLock { for task in $0 { task.cancel() } } }
}

struct TestStoreError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

extension PostgresURL {
    /// The URL as text (tests hand it to child processes).
    public var asString: String {
        "postgres://\(username)\(password.map { ":\($0)" } ?? "")@\(host):\(port)/\(database)?sslmode=\(tls.rawValue)"
    }
}

extension Store {
    /// Runs `body` with the lease of a run of its own on `variant` (created when missing, as `dryrun`
    /// does), then ends that run as cancelled — which changes no variant state. For tests of the
    /// records cache that are not about runs; every record write needs a lease.
    public func inRun<T: Sendable>(of variant: VariantRef, _ body: (RunLease) async throws -> T) async throws -> T {
        let started = try await startRun(variant, RunStart(tracksDeletes: false))
        do {
            let value = try await body(started.lease)
            _ = try await completeRun(started.lease, RunCompletion(outcome: .cancelled(reason: "test write")))
            return value
        } catch {
            _ = try? await completeRun(started.lease, RunCompletion(outcome: .cancelled(reason: "test write")))
            throw error
        }
    }

    /// `saveRecords` in a run of its own (``inRun(of:_:)``).
    @discardableResult
    public func saveRecords(_ records: [PreparedRecord], model: String, of variant: VariantRef) async throws -> ModelResult {
        try await inRun(of: variant) { try await saveRecords(records, model: model, for: $0) }
    }

    /// `updateRecords` in a run of its own.
    @discardableResult
    public func updateRecords(_ patches: [RecordPatch], model: String, of variant: VariantRef) async throws -> ModelResult {
        try await inRun(of: variant) { try await updateRecords(patches, model: model, for: $0) }
    }

    /// `deleteRecords` in a run of its own.
    @discardableResult
    public func deleteRecords(ids: [String], model: String, of variant: VariantRef) async throws -> ModelResult {
        try await inRun(of: variant) { try await deleteRecords(ids: ids, model: model, for: $0) }
    }

    /// `saveCheckpoint` in a run of its own (outside any deletion window).
    public func saveCheckpoint(_ checkpoint: Checkpoint, for variant: VariantRef) async throws {
        try await inRun(of: variant) { try await saveCheckpoint(checkpoint, for: $0) }
    }

    /// Pauses or resumes one variant.
    @discardableResult
    public func setPaused(_ paused: Bool, for variant: VariantRef) async throws -> LifecycleOutcome {
        try await setPaused(paused, for: [variant])
    }
}

extension TestStore {
    /// Counts rows straight from the database (``StoreCensus``).
    public func census() async throws -> StoreCensus {
        try await StoreCensus.take(kind == .sqlite ? .sqlite(path: location) : .postgres(url: location))
    }
}
