import Foundation
import Logging
import PostgresNIO
import ServiceLifecycle
import Synchronization
import TributaryCore
import TributaryStore

/// The scale-out store: one PostgreSQL database shared by any number of API and worker processes.
///
/// It implements the same ``Store`` contract as `SQLiteStore` and passes the same test suite. How it
/// stays correct with many writers:
/// - **Change feed**: a write to a dataset locks the dataset's row (`FOR UPDATE`) for its
///   transaction, so its change sequence values are handed out in commit order — a reader paging by
///   cursor can never see a later sequence committed before an earlier one (no gaps, no skips).
/// - **Run queue**: queueing, claiming, expiring and cancelling runs take one transaction-level
///   advisory lock, so a claim sees every running run of every process when it applies the
///   per-connection limit; the unique index `runs_active` keeps one active run per variant whatever
///   happens. Expiry skips run rows a finishing transaction holds (`FOR UPDATE SKIP LOCKED`).
/// - **Outbox and provider webhooks**: delivery claims are serialised by their own advisory lock
///   (one head per receiver URL); provider webhook tasks are claimed with `FOR UPDATE SKIP LOCKED`.
/// - Deadlocks and serialisation failures (SQLSTATE 40P01, 40001) are retried.
/// - A run change reads the time after taking its locks, so the run history never shows a run starting
///   before the end of the run it waited for; leases are compared on the database's clock.
///
/// The store is a `Service`: its ``run()`` runs postgres-nio's connection pool and must be running
/// (in the process's `ServiceGroup`) while the store is used.
public final class PostgresStore: Store, Service {
    let client: PostgresClient
    let logger: Logger
    let clock: @Sendable () -> Timestamp
    /// Where this store connects, without the password (for logs and start-up lines).
    public let displayLocation: String
    let url: PostgresURL
    /// Microseconds added to the database clock for lease times (tests move the lease clock with it).
    let leaseClockOffset: @Sendable () -> Int64
    /// How long one store call may wait for the database (a connection, then its statements) before
    /// it fails with `store_unavailable` — so an outage never hangs a caller, or a shutdown.
    let operationTimeout: Duration
    /// See ``init(url:maximumConnections:clock:leaseClockOffset:operationTimeout:listenCheck:logger:)``.
    let listenCheck: (every: Duration, within: Duration)
    /// Calls waiting for a connection, watched by ``run()``.
    let waits = ConnectionWaits()
    /// Runs whose first-load insert found an id taken: their later pages of the model go straight
    /// to the upsert (``RunModelMarks``).
    let plainInsertRefusals = RunModelMarks()
    /// Runs whose last page on the full path had most of its records to write (new or changed): their next page of
    /// the model is upserted with its payloads at once, instead of looked up first (``RunModelMarks``).
    let writingPages = RunModelMarks()
    /// Runs whose last page needed no write or was aligned with its rows: their next page of the
    /// model is looked up in one autocommit statement, fenced in SQL (``RunModelMarks``).
    let lookingUpAlone = RunModelMarks()
    /// Runs whose last page looked up had records to write (a few changes, found by the check):
    /// their next page looked up alone sends its payloads too, to be saved whole in the same call
    /// (``RunModelMarks``).
    let changingPages = RunModelMarks()
    /// Runs whose last checked page the check did not align with its rows (``RunModelMarks``).
    let missedChecks = RunModelMarks()
    /// Runs with two pages in a row the check did not align (saved in another order than their rows
    /// hold in the feed): their pages are no longer checked (``RunModelMarks``).
    let unorderedPages = RunModelMarks()
    /// What each dataset's records were saved with by its last run here, and what the runs under
    /// way save: which records of a page are likely to need a write (``StoredHashes``).
    let storedHashes = StoredHashes()
    /// What each run's next first-load page may expect (``PlainInsertHeads``).
    let plainInsertHeads = PlainInsertHeads()
    /// Datasets whose partitions ``run()`` is to analyse (``AnalyzeQueue``).
    let analyzeQueue = AnalyzeQueue()
    /// How many partitions ``run()`` analysed (or tried to) from ``analyzeQueue`` (tests wait for it).
    let partitionsAnalysed = Atomic<Int>(0)
    /// How many pages went in as a first load's plain insert (tests check the path was taken).
    let plainInsertedPages = Atomic<Int>(0)
    /// How many of those went in as one autocommit statement (``PlainInsertHeads``).
    let plainInsertedAlone = Atomic<Int>(0)
    /// How many records the full path sent with their payloads to its upsert (tests check that an
    /// unchanged page sends none).
    let upsertedRecords = Atomic<Int>(0)
    /// How many records' payloads went with their pages' lookups (tests check what a page sent).
    let payloadsSentWithLookups = Atomic<Int>(0)
    /// How many pages were looked up in one autocommit call (tests check the path was taken).
    let pagesLookedUpAlone = Atomic<Int>(0)
    /// How many pages `tributary_check_page` aligned with their rows (``PageLookup``).
    let pagesAligned = Atomic<Int>(0)
    /// How many pages had their records to write upserted in one autocommit call (`tributary_upsert_alone`).
    let pagesUpsertedAlone = Atomic<Int>(0)
    /// How many pages were saved whole, their writes too, in one autocommit call (`tributary_save_guessed`).
    let pagesSavedAlone = Atomic<Int>(0)

    /// The lease clock in SQL: the database's transaction time in microseconds. Every lease (heartbeat,
    /// expiry, fencing) is compared on it, so a process whose own clock is off cannot expire the runs
    /// of another; tests add ``leaseClockOffset``.
    static let databaseNow = "(floor(extract(epoch from now()) * 1000000))::bigint"

    /// Advisory lock keys (transaction-level).
    enum Lock: Int64 {
        case runQueue = 7_320_001
        case deliveries = 7_320_002
        case migrations = 7_320_003
    }

    /// Creates the store. Nothing connects until ``run()`` runs.
    ///
    /// - Parameters:
    ///   - url: the database, as a ``PostgresURL``.
    ///   - maximumConnections: the pool's size for this process (see the operations guide for sizing).
    ///   - clock: the time source for record and run timestamps (tests inject their own). Leases use
    ///     the database's clock instead.
    ///   - leaseClockOffset: microseconds added to the database's clock for leases (tests only).
    ///   - operationTimeout: how long one store call may wait for the database.
    ///   - listenCheck: how often the queue signals' listening connection is checked, and how long
    ///     the check may take (``watchSignals(onListening:_:)``; tests shorten it).
    public init(
        url: PostgresURL, maximumConnections: Int = 10, clock: @escaping @Sendable () -> Timestamp = { Timestamp.now() },
        leaseClockOffset: @escaping @Sendable () -> Int64 = { 0 }, operationTimeout: Duration = .seconds(10),
        listenCheck: (every: Duration, within: Duration) = (.seconds(30), .seconds(10)),
        logger: Logger = Logger(label: "tributary.postgres")
    ) {
        self.leaseClockOffset = leaseClockOffset
        self.operationTimeout = operationTimeout
        self.listenCheck = listenCheck
        var configuration = url.clientConfiguration
        configuration.options.maximumConnections = maximumConnections
        configuration.options.minimumConnections = 0
        client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        self.logger = logger
        self.clock = clock
        displayLocation = url.redacted
        self.url = url
    }

    /// Runs the connection pool, the watch over calls waiting for a connection (``operationTimeout``)
    /// and the analyses of growing datasets' partitions (``analyzeQueue``), until cancelled or
    /// gracefully shut down.
    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.client.run() }
            group.addTask {
                // Deadlines are checked this often: a call times out at most this much late.
                while (try? await Task.sleep(for: Self.deadlineCheck)) != nil { self.waits.expire(now: .now) }
            }
            group.addTask {
                // Ends at a graceful shutdown too, when the pool stops leasing connections.
                await cancelWhenGracefulShutdown {
                    await self.analyzeQueue.drain { dataset in await self.analyzeQueued(dataset) }
                }
                // Never end the group before it is cancelled: at a graceful shutdown the drain ends
                // first, and the pool must finish its own shutdown, not be cancelled.
                while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
            }
            await group.next()
            group.cancelAll()
        }
    }

    /// How often ``run()`` looks for calls past their deadline.
    static let deadlineCheck = Duration.milliseconds(250)

    /// Creates or upgrades the schema over a connection of its own: call it before ``run()`` starts
    /// (as `tributary serve` does) or while it runs; concurrent callers in several processes are safe.
    public func migrate() async throws {
        try await PostgresSchema.migrate(self)
    }

    /// ``migrate()`` for `tributary migrate` itself, which may resume filling this database.
    public func migrateForCopy() async throws {
        try await PostgresSchema.migrate(self, allowingUnfinishedCopy: true)
    }

    // MARK: Transactions

    /// Runs `body` in one transaction on one pooled connection; retried on deadlock or serialisation
    /// failure. Errors thrown by `body` pass through unchanged.
    ///
    /// Cancellation ends the wait for a connection, never a transaction under way: once it has its
    /// connection, a transaction runs to its COMMIT or ROLLBACK (a statement cut off in the middle
    /// could leave the connection in an open transaction, holding its locks, back in the pool). The
    /// caller sees the cancellation when the transaction is over, or after ``cancellationGrace`` at
    /// most (``onConnection(_:)``).
    @discardableResult
    func transaction<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        try await onConnection { connection in
            var attempt = 0
            while true {
                do {
                    try await connection.query("BEGIN", logger: self.logger)
                    do {
                        let value = try await body(connection)
                        try await connection.query("COMMIT", logger: self.logger)
                        return value
                    } catch {
                        // A broken connection is closed by the pool; the original error is what matters.
                        _ = try? await connection.query("ROLLBACK", logger: self.logger)
                        throw error
                    }
                } catch let error as PSQLError where Self.isTransient(error) && attempt < 8 {
                    attempt += 1
                    try await Task.sleep(for: .milliseconds(5 * attempt * attempt))
                }
            }
        }
    }

    /// Statements outside an explicit transaction (reads, and single-statement writes); like a
    /// transaction, not cut off by cancellation once connected.
    @discardableResult
    func read<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        try await onConnection(body)
    }

    /// How long a cancelled caller still waits for its transaction under way to end.
    static let cancellationGrace: Duration = .seconds(2)

    /// Leases a pooled connection and runs `body` on it, in one task of its own (owned: its result is
    /// what the caller waits for) that is cancelled only while it waits for the connection
    /// (``ConnectionGate``) — by the caller's cancellation, or by ``run()``'s watch when it has no
    /// connection within ``operationTimeout`` (the call then fails with `store_unavailable`: the
    /// database is down or unreachable, or the pool is exhausted). Once connected, `body` runs to its
    /// end and is not timed: a long deletion scan is legitimate. A caller cancelled then waits
    /// ``cancellationGrace`` more at most, and then sees the cancellation while `body` goes on alone
    /// to its end (bounded by the session's `lock_timeout`, and rolled back by the server if the
    /// process ends first): a statement waiting on a lock held by a frozen process never holds up a
    /// process that is stopping. Whatever a transaction did is whole — it committed or it did not —
    /// and a run's writes are fenced, so not knowing which is safe.
    private func onConnection<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        // A caller cancelled already asks for nothing (the cancellation handler below would stop the
        // call too, unless an idle connection were leased first).
        try Task.checkCancellation()
        let gate = ConnectionGate()
        let first = FirstResult<T>()
        let timeout = operationTimeout
        let wait = ConnectionWaits.Wait(deadline: .now + timeout) { gate.stop() }
        let key = waits.add(wait)
        defer { waits.remove(key) }
        let work = Task { [client, waits] in
            do {
                let value = try await client.withConnection { connection in
                    // Stopped while it waited: the caller has its answer, and nothing runs.
                    guard gate.connect() else { throw CancellationError() }
                    waits.remove(key)
                    return try await body(connection)
                }
                first.finish(.success(value))
            } catch {
                first.finish(.failure(error))
            }
        }
        gate.hold(work)
        do {
            return try await withTaskCancellationHandler {
                try await first.value()
            } onCancel: {
                gate.stop()
                let grace = Task {
                    guard (try? await Task.sleep(for: Self.cancellationGrace)) != nil else { return }
                    first.finish(.failure(CancellationError()))
                }
                first.onFinish { grace.cancel() }
            }
        } catch where wait.timedOut && gate.stoppedWaiting {
            throw TributaryError(.storeUnavailable, "No database connection within \(timeout) (is the database running and reachable?).")
        } catch where Task.isCancelled || error is CancellationError {
            // The pool answers a cancelled wait with its own error: it is the caller's cancellation.
            throw CancellationError()
        } catch let error as PSQLError {
            throw Self.described(error)
        } catch where String(describing: type(of: error)) == "ConnectionPoolError" {
            throw TributaryError(.storeUnavailable, "The database connection pool cannot serve the call (\(error)).")
        }
    }

    static func isTransient(_ error: PSQLError) -> Bool {
        let state = error.serverInfo?[.sqlState]
        return state == "40P01" || state == "40001"
    }

    static func isUniqueViolation(_ error: any Error) -> Bool {
        (error as? PSQLError)?.serverInfo?[.sqlState] == "23505"
    }

    /// Whether `error` is a unique violation of a record's identity (a partition of `records`).
    static func isTakenRecordId(_ error: any Error) -> Bool {
        guard isUniqueViolation(error), let table = (error as? PSQLError)?.serverInfo?[.tableName] else { return false }
        return table.wholeMatch(of: /records(_p[0-9]+)?/) != nil
    }

    /// postgres-nio's errors print no server message by default; keep the SQLSTATE and message (never bound values).
    static func described(_ error: PSQLError) -> any Error {
        guard let info = error.serverInfo else {
            // No answer from a server: the connection could not be made, or it broke.
            return TributaryError(.storeUnavailable, "The database connection failed (\(error.code)); the call was not applied unless the connection broke after its last statement (a commit, or a write that is one statement) reached the database.")
        }
        return PostgresStoreError(
            sqlState: info[.sqlState] ?? "?", message: info[.message] ?? "\(error.code)", detail: info[.detail])
    }

    // MARK: Shared lookups (inside a transaction)

    func connectionPK(_ db: PostgresConnection, _ ref: ConnectionRef) async throws -> Int64? {
        try await db.one(
            "SELECT id FROM connections WHERE environment = \(ref.environment) AND provider_config_key = \(ref.providerConfigKey) AND connection_id = \(ref.connectionId)",
            logger
        )?.int64("id")
    }

    func requireConnectionPK(_ db: PostgresConnection, _ ref: ConnectionRef) async throws -> Int64 {
        guard let pk = try await connectionPK(db, ref) else { throw StoreMessages.unknownConnection(ref) }
        return pk
    }

    func ensureConnectionPK(_ db: PostgresConnection, _ ref: ConnectionRef, now: Timestamp) async throws -> (Int64, created: Bool) {
        if let pk = try await connectionPK(db, ref) { return (pk, false) }
        // Another process may create it at the same moment: insert-or-nothing, then read.
        if let row = try await db.one(
            """
            INSERT INTO connections(environment, provider_config_key, connection_id, created_at, updated_at)
            VALUES (\(ref.environment), \(ref.providerConfigKey), \(ref.connectionId), \(now.microseconds), \(now.microseconds))
            ON CONFLICT (environment, provider_config_key, connection_id) DO NOTHING RETURNING id
            """, logger)
        {
            return (try row.int64("id"), true)
        }
        return (try await requireConnectionPK(db, ref), false)
    }

    static let variantColumns =
        "id, public_id, paused, frequency, next_run_at, sync_name, variant, last_sync_date, checkpoint, deletion_generation, checkpoint_generation, created_at"
    static let qualifiedVariantColumns = variantColumns.split(separator: ",").map { "v." + $0.trimmingCharacters(in: .whitespaces) }
        .joined(separator: ", ")

    func variantState(_ ref: VariantRef, _ row: PostgresRandomAccessRow) throws -> VariantState {
        var state = VariantState(
            id: try row.string("public_id"),
            ref: ref,
            paused: try row.bool("paused"),
            frequencyOverride: try row.optionalString("frequency"),
            lastSyncDate: try row.optionalInt64("last_sync_date").map(Timestamp.init(microseconds:)),
            checkpoint: try row.optionalString("checkpoint").map { try Checkpoint(json: $0) },
            deletionGeneration: try row.optionalInt64("deletion_generation"),
            checkpointGeneration: try row.optionalInt64("checkpoint_generation"),
            createdAt: Timestamp(microseconds: try row.int64("created_at")))
        state.nextRunAt = try row.optionalInt64("next_run_at").map(Timestamp.init(microseconds:))
        return state
    }

    func variantRow(_ db: PostgresConnection, connectionPK: Int64, _ ref: VariantRef, forUpdate: Bool = false) async throws
        -> (pk: Int64, state: VariantState)?
    {
        guard
            let row = try await db.one(
                """
                SELECT \(unescaped: Self.variantColumns) FROM sync_variants
                WHERE connection_pk = \(connectionPK) AND sync_name = \(ref.syncName) AND variant = \(ref.variant)
                \(unescaped: forUpdate ? "FOR UPDATE" : "")
                """, logger)
        else { return nil }
        return (try row.int64("id"), try variantState(ref, row))
    }

    func insertVariant(_ db: PostgresConnection, connectionPK: Int64, _ ref: VariantRef, paused: Bool = false, now: Timestamp) async throws
        -> (pk: Int64, state: VariantState)?
    {
        let publicId = UUID().uuidString.lowercased()
        guard
            let row = try await db.one(
                """
                INSERT INTO sync_variants(connection_pk, sync_name, variant, created_at, public_id, next_run_at, paused)
                VALUES (\(connectionPK), \(ref.syncName), \(ref.variant), \(now.microseconds), \(publicId), \(now.microseconds), \(paused))
                ON CONFLICT (connection_pk, sync_name, variant) DO NOTHING RETURNING id
                """, logger)
        else { return nil }
        var state = VariantState(id: publicId, ref: ref, paused: paused, createdAt: now)
        state.nextRunAt = now
        return (try row.int64("id"), state)
    }

    /// The variant row, created (with its connection) when missing.
    func ensureVariantRow(_ db: PostgresConnection, _ ref: VariantRef, now: Timestamp) async throws -> (pk: Int64, state: VariantState) {
        let (connectionPK, _) = try await ensureConnectionPK(db, ref.connection, now: now)
        if let row = try await variantRow(db, connectionPK: connectionPK, ref) { return row }
        if let inserted = try await insertVariant(db, connectionPK: connectionPK, ref, now: now) { return inserted }
        // Created by another process between the two statements.
        guard let row = try await variantRow(db, connectionPK: connectionPK, ref) else { throw StoreMessages.unknownVariant(ref) }
        return row
    }

    /// The variant's row, found by its names in one round trip (the connection joined in).
    func lookupVariant(_ db: PostgresConnection, _ ref: VariantRef, forUpdate: Bool = false) async throws -> (pk: Int64, state: VariantState)? {
        guard
            let row = try await db.one(
                """
                SELECT \(unescaped: Self.qualifiedVariantColumns) FROM sync_variants v JOIN connections c ON c.id = v.connection_pk
                WHERE c.environment = \(ref.connection.environment) AND c.provider_config_key = \(ref.connection.providerConfigKey)
                    AND c.connection_id = \(ref.connection.connectionId) AND v.sync_name = \(ref.syncName) AND v.variant = \(ref.variant)
                \(unescaped: forUpdate ? "FOR UPDATE OF v" : "")
                """, logger)
        else { return nil }
        return (try row.int64("id"), try variantState(ref, row))
    }

    /// The variant with row id `variantPK`: its names and state, in one round trip.
    func variant(_ db: PostgresConnection, variantPK: Int64) async throws -> (ref: VariantRef, state: VariantState) {
        guard
            let row = try await db.one(
                """
                SELECT c.environment, c.provider_config_key, c.connection_id, \(unescaped: Self.qualifiedVariantColumns)
                FROM sync_variants v JOIN connections c ON c.id = v.connection_pk WHERE v.id = \(variantPK)
                """, logger)
        else { throw TributaryError(.unknownVariant, "Variant \(variantPK) does not exist.") }
        let ref = try variantRef(row)
        return (ref, try variantState(ref, row))
    }

    func requireVariant(_ db: PostgresConnection, _ ref: VariantRef, forUpdate: Bool = false) async throws -> (pk: Int64, state: VariantState) {
        guard let found = try await lookupVariant(db, ref, forUpdate: forUpdate) else { throw StoreMessages.unknownVariant(ref) }
        return found
    }

    func variantRef(_ db: PostgresConnection, variantPK: Int64) async throws -> VariantRef {
        guard
            let row = try await db.one(
                """
                SELECT c.environment, c.provider_config_key, c.connection_id, v.sync_name, v.variant
                FROM sync_variants v JOIN connections c ON c.id = v.connection_pk WHERE v.id = \(variantPK)
                """, logger)
        else { throw TributaryError(.unknownVariant, "Variant \(variantPK) does not exist.") }
        return try variantRef(row)
    }

    /// The names of a variant in a row holding its connection's names and its `sync_name` and `variant`.
    func variantRef(_ row: PostgresRandomAccessRow) throws -> VariantRef {
        VariantRef(
            connection: ConnectionRef(
                environment: try row.string("environment"), providerConfigKey: try row.string("provider_config_key"),
                connectionId: try row.string("connection_id")),
            syncName: try row.string("sync_name"), variant: try row.string("variant"))
    }

    /// Takes a transaction-level advisory lock (released at commit or rollback).
    func lock(_ db: PostgresConnection, _ lock: Lock) async throws {
        try await db.query("SELECT pg_advisory_xact_lock(\(lock.rawValue))", logger: logger)
    }

    /// Raises the floor new datasets start their change sequence from, before datasets are deleted,
    /// so a cursor issued for a deleted dataset never skips changes of a re-created one.
    func raiseSequenceFloor(_ db: PostgresConnection, connectionPK: Int64, variant: VariantRef?) async throws {
        if let variant {
            try await db.query(
                """
                UPDATE store_meta SET value = GREATEST(value, COALESCE((SELECT MAX(last_seq) FROM datasets WHERE connection_pk = \(connectionPK)
                    AND sync_name = \(variant.syncName) AND variant = \(variant.variant)), 0)) WHERE key = 'seq_floor'
                """, logger: logger)
        } else {
            try await db.query(
                """
                UPDATE store_meta SET value = GREATEST(value, COALESCE((SELECT MAX(last_seq) FROM datasets WHERE connection_pk = \(connectionPK)), 0))
                WHERE key = 'seq_floor'
                """, logger: logger)
        }
    }
}

/// A database error, with PostgreSQL's SQLSTATE and message (bound values are never included).
public struct PostgresStoreError: Error, CustomStringConvertible {
    /// PostgreSQL's SQLSTATE; nil for the store's own checks.
    public var sqlState: String?
    public var message: String
    public var detail: String?

    public init(sqlState: String?, message: String, detail: String? = nil) {
        self.sqlState = sqlState
        self.message = message
        self.detail = detail
    }

    public var description: String {
        (sqlState.map { "PostgreSQL error \($0): " } ?? "") + message + (detail.map { " (\($0))" } ?? "")
    }
}
