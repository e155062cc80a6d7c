import Foundation
import GRDB
import TributaryCore
import TributaryStore

/// The embedded store: one SQLite file in WAL mode, through GRDB.
///
/// Writes go through GRDB's single writer (one transaction per call), and read the time inside the
/// write, so a change is never stamped earlier than a change it waited for; reads use snapshot-isolated
/// reader connections, so the change feed never sees half a batch. Blocking SQLite work runs on
/// GRDB's dispatch queues, never on the cooperative thread pool.
public final class SQLiteStore: Store {
    /// The lease time of every run is compared on this machine's clock (one SQLite file is shared by
    /// processes of one machine only).
    let pool: DatabasePool
    let clock: @Sendable () -> Timestamp
    /// The file this store opened.
    public let path: String
    /// Copies the writer's log into the database file, beside the writer.
    let checkpointer: WALCheckpointer
    /// Runs a task's jobs on the writer's own thread, between writes: a declarative sync's writing
    /// side runs on it while it is the only one (``WriteExecutor``), so it goes on the moment its
    /// write commits — instead of waiting for a thread of the shared pool, busy with the pages being
    /// read (end to end 5–9% faster at the median, docs/BENCHMARKS.md, twelfth round). Only for tasks
    /// that do little but write: their work holds up every write, and a synchronous GRDB write from
    /// it (`close()`, `migrate()`) would stop the process (see ``WriterQueueExecutor``).
    public let writeExecutor: (any WriteExecutor)?
    /// Under which id the writer's WAL hook finds ``checkpointer``.
    private let checkpointerId: Int

    /// The page size (bytes) of a database file this store creates. In a first load, the writer and
    /// the checkpointer spend about a third of their time in the kernel, writing pages — two writes
    /// per page into the log at each commit, a read and a write per page at each checkpoint: 8 KiB
    /// pages halve those calls, for a million-record sync ~9% faster end to end, with the re-save,
    /// incremental and feed benchmarks unchanged (docs/BENCHMARKS.md, twelfth round). 16 KiB pages
    /// were as fast for a first load but made the incremental run, which writes a few random pages
    /// per changed record, slower.
    public static let pageSize = 8192

    /// The settings every connection to the store's file gets first (in `prepareDatabase`, before a
    /// pool turns WAL on): ``pageSize`` for a file created now — an existing file keeps the size it
    /// was created with, SQLite ignores the pragma then — and the log file's limit
    /// (`WALCheckpointer/logFileLimit`) on a connection that writes; `synchronous = NORMAL` on every
    /// connection. The benchmarks' raw limit applies them too.
    public static func applyFileSettings(_ db: Database) throws {
        if !db.configuration.readonly {
            try db.execute(sql: "PRAGMA page_size = \(pageSize)")
            // A log file larger than this is cut back when the log restarts (WALCheckpointer.logFileLimit).
            try db.execute(sql: "PRAGMA journal_size_limit = \(WALCheckpointer.logFileLimit)")
        }
        try db.execute(sql: "PRAGMA synchronous = NORMAL")
    }

    /// Opens (creating if needed) the database at `path`. Call ``migrate()`` before use.
    ///
    /// - Parameters:
    ///   - path: the SQLite file.
    ///   - clock: the time source for record and run timestamps (tests inject their own).
    public init(path: String, clock: @escaping @Sendable () -> Timestamp = { Timestamp.now() }) throws {
        var configuration = Configuration()
        configuration.busyMode = .timeout(30)
        configuration.maximumReaderCount = 4
        let checkpointerId = WALCheckpointer.nextId()
        configuration.prepareDatabase { db in
            try Self.applyFileSettings(db)
            // 2 MiB per connection (writer, readers, checkpointer). The OS's page cache holds the file
            // anyway: 8 MiB made no measurable difference to the load, re-save, feed or incremental
            // benchmarks, and cost about 12 MiB of peak RSS in a million-record sync.
            try db.execute(sql: "PRAGMA cache_size = -2048")
            try db.execute(sql: "PRAGMA temp_store = MEMORY")
            // The writer's log is checkpointed beside it, not by it.
            if !db.configuration.readonly { WALCheckpointer.install(on: db, id: checkpointerId) }
        }
        // The writer connection's queue targets this one; the write executor runs jobs on it too.
        let writerTarget = DispatchQueue(label: "tributary.sqlite-writer", qos: .userInitiated)  // GRDB's default for its queues
        configuration.writeTargetQueue = writerTarget
        writeExecutor = WriterQueueExecutor(queue: writerTarget)
        pool = try DatabasePool(path: path, configuration: configuration)
        checkpointer = try WALCheckpointer(path: path)
        WALCheckpointer.register(checkpointer, as: checkpointerId)
        self.checkpointerId = checkpointerId
        self.clock = clock
        self.path = path
    }

    deinit {
        WALCheckpointer.unregister(checkpointerId)
    }

    public func migrate() async throws {
        // A file a newer Tributary migrated is refused: this version would not know its tables
        // (a deletion window's seen ranges, say, and would delete the records they cover).
        if let unknown = try await pool.read({ db in try SQLiteSchema.migrator.unknownMigration(in: db) }) {
            throw TributaryError(
                .storeUnavailable,
                "The database was migrated by a newer Tributary (migration '\(unknown)' is unknown to this version); upgrade this process instead.")
        }
        // Runs once at start-up; GRDB's migrator takes the writer itself.
        try SQLiteSchema.migrator.migrate(pool)
    }

    /// Closes the database connections.
    public func close() throws {
        defer {
            // No commit can ask for a checkpoint any more; one under way ends before the connection closes.
            WALCheckpointer.unregister(checkpointerId)
            try? checkpointer.close()
        }
        try pool.close()
    }

    // MARK: Shared lookups (inside a transaction)

    func connectionPK(_ db: Database, _ ref: ConnectionRef) throws -> Int64? {
        try Int64.fetchOne(
            db, sql: "SELECT id FROM connections WHERE environment = ? AND provider_config_key = ? AND connection_id = ?",
            arguments: [ref.environment, ref.providerConfigKey, ref.connectionId])
    }

    func requireConnectionPK(_ db: Database, _ ref: ConnectionRef) throws -> Int64 {
        guard let pk = try connectionPK(db, ref) else {
            throw StoreMessages.unknownConnection(ref)
        }
        return pk
    }

    func ensureConnectionPK(_ db: Database, _ ref: ConnectionRef, now: Timestamp) throws -> (Int64, created: Bool) {
        if let pk = try connectionPK(db, ref) { return (pk, false) }
        try db.execute(
            sql: """
                INSERT INTO connections(environment, provider_config_key, connection_id, metadata, created_at, updated_at)
                VALUES (?, ?, ?, '{}', ?, ?)
                """,
            arguments: [ref.environment, ref.providerConfigKey, ref.connectionId, now.microseconds, now.microseconds])
        return (db.lastInsertedRowID, true)
    }

    /// The variant row, created when missing.
    func ensureVariantRow(_ db: Database, _ ref: VariantRef, now: Timestamp) throws -> (pk: Int64, state: VariantState) {
        let (connectionPK, _) = try ensureConnectionPK(db, ref.connection, now: now)
        if let row = try variantRow(db, connectionPK: connectionPK, ref) { return row }
        return try insertVariant(db, connectionPK: connectionPK, ref, now: now)
    }

    func insertVariant(_ db: Database, connectionPK: Int64, _ ref: VariantRef, now: Timestamp) throws -> (pk: Int64, state: VariantState) {
        let publicId = UUID().uuidString.lowercased()
        try db.execute(
            sql: "INSERT INTO sync_variants(connection_pk, sync_name, variant, created_at, public_id, next_run_at) VALUES (?, ?, ?, ?, ?, ?)",
            arguments: [connectionPK, ref.syncName, ref.variant, now.microseconds, publicId, now.microseconds])
        var state = VariantState(id: publicId, ref: ref, createdAt: now)
        state.nextRunAt = now
        return (db.lastInsertedRowID, state)
    }

    func variantRow(_ db: Database, connectionPK: Int64, _ ref: VariantRef) throws -> (pk: Int64, state: VariantState)? {
        guard
            let row = try Row.fetchOne(
                db,
                sql: """
                    SELECT \(Self.variantColumns) FROM sync_variants WHERE connection_pk = ? AND sync_name = ? AND variant = ?
                    """,
                arguments: [connectionPK, ref.syncName, ref.variant])
        else { return nil }
        return (row["id"], try variantState(ref, row))
    }

    static let variantColumns =
        "id, public_id, paused, frequency, next_run_at, sync_name, variant, last_sync_date, checkpoint, deletion_generation, checkpoint_generation, created_at"
    /// ``variantColumns`` prefixed with `v.`, for queries that join `sync_variants v`.
    static let qualifiedVariantColumns = variantColumns.split(separator: ",").map { "v." + $0.trimmingCharacters(in: .whitespaces) }
        .joined(separator: ", ")

    func variantState(_ ref: VariantRef, _ row: Row) throws -> VariantState {
        let checkpointJSON: String? = row["checkpoint"]
        var state = VariantState(
            id: row["public_id"] ?? "",
            ref: ref,
            paused: row["paused"] as Bool? ?? false,
            frequencyOverride: row["frequency"],
            lastSyncDate: (row["last_sync_date"] as Int64?).map(Timestamp.init(microseconds:)),
            checkpoint: try checkpointJSON.map { try Checkpoint(json: $0) },
            deletionGeneration: row["deletion_generation"],
            checkpointGeneration: row["checkpoint_generation"],
            createdAt: Timestamp(microseconds: row["created_at"]))
        state.nextRunAt = (row["next_run_at"] as Int64?).map(Timestamp.init(microseconds:))
        return state
    }

    func lookupVariant(_ db: Database, _ ref: VariantRef) throws -> (pk: Int64, state: VariantState)? {
        guard let connectionPK = try connectionPK(db, ref.connection) else { return nil }
        return try variantRow(db, connectionPK: connectionPK, ref)
    }

    func requireVariant(_ db: Database, _ ref: VariantRef) throws -> (pk: Int64, state: VariantState) {
        guard let found = try lookupVariant(db, ref) else {
            throw StoreMessages.unknownVariant(ref)
        }
        return found
    }

    /// Raises the floor new datasets start their change sequence from, before datasets are deleted,
    /// so a cursor issued for a deleted dataset never skips changes of a re-created one.
    func raiseSequenceFloor(_ db: Database, datasetsWhere condition: String, _ arguments: StatementArguments) throws {
        try db.execute(
            sql: """
                UPDATE store_meta SET value = MAX(value, COALESCE((SELECT MAX(last_seq) FROM datasets WHERE \(condition)), 0))
                WHERE key = 'seq_floor'
                """,
            arguments: arguments)
    }
}
