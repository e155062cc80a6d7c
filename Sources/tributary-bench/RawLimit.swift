import GRDB
import GRDBSQLite
import Logging
import NIOCore
import PostgresNIO
import TributaryCore
import TributaryPostgres
import TributarySQLite

/// The raw limit a suite compares against: the same JSON written to (or read from) the same kind of
/// database with a plain prepared statement — a `(id, payload)` table, no change tracking, no feed.
protocol RawLimit: Sendable {
    /// Creates the table (dropping an old one).
    func create() async throws
    /// Upserts one page of `(id, payload JSON)` in one transaction.
    func upsert(_ rows: [(id: String, payload: String)]) async throws
    /// Runs a query whose first column is a payload as text, reading every row; returns how many rows and bytes.
    func select(_ sql: String) async throws -> (rows: Int, bytes: Int)
    func close() async throws
}

/// SQLite: `INSERT OR REPLACE` through one cached statement, WAL, `synchronous = NORMAL`, the
/// store's page size and log file limit, like the store.
final class RawSQLite: RawLimit {
    let pool: DatabasePool

    init(path: String) throws {
        var configuration = Configuration()
        configuration.prepareDatabase { db in try SQLiteStore.applyFileSettings(db) }
        pool = try DatabasePool(path: path, configuration: configuration)
    }

    func create() async throws {
        try await pool.write { db in
            try db.execute(sql: "DROP TABLE IF EXISTS raw_records; CREATE TABLE raw_records (id TEXT PRIMARY KEY, payload TEXT NOT NULL)")
        }
    }

    func upsert(_ rows: [(id: String, payload: String)]) async throws {
        try await pool.write { db in
            // `sqlite3_*` calls on the cached statement, as the store binds its records: no argument
            // array per row (GRDB's `execute(arguments:)` took ~20% longer: 199–217k rows/s against 252–256k).
            let statement = try db.cachedStatement(sql: "INSERT OR REPLACE INTO raw_records(id, payload) VALUES (?, ?)").sqliteStatement
            for row in rows {
                Self.bind(row.id, at: 1, to: statement)
                Self.bind(row.payload, at: 2, to: statement)
                let code = sqlite3_step(statement)
                sqlite3_reset(statement)
                guard code == SQLITE_DONE else {
                    throw DatabaseError(resultCode: ResultCode(rawValue: code), message: String(cString: sqlite3_errmsg(db.sqliteConnection)))
                }
            }
        }
    }

    private static let transient = unsafeBitCast(OpaquePointer(bitPattern: -1), to: sqlite3_destructor_type.self)

    private static func bind(_ text: String, at index: Int32, to statement: OpaquePointer) {
        var text = text
        text.withUTF8 { utf8 in
            _ = sqlite3_bind_text(statement, index, utf8.baseAddress, Int32(utf8.count), transient)
        }
    }

    func select(_ sql: String) async throws -> (rows: Int, bytes: Int) {
        try await pool.read { db in
            var rows = 0
            var bytes = 0
            let statement = try db.makeStatement(sql: sql)
            let cursor = try Row.fetchCursor(statement)
            while let row = try cursor.next() {
                rows += 1
                bytes += (row[0] as String).utf8.count
            }
            return (rows, bytes)
        }
    }

    /// Copies the whole log into the file, which keeps its size (`RESTART` checkpoint: the next
    /// write starts the log over, as the store's does once its checkpointer has caught up).
    func checkpoint() async throws {
        _ = try await pool.writeWithoutTransaction { try $0.checkpoint(.restart) }
    }

    /// The writer's automatic checkpoint: every `pages` log pages at a commit (SQLite's default
    /// 1,000), or never (0).
    func automaticCheckpoint(every pages: Int) async throws {
        try await pool.writeWithoutTransaction { try $0.execute(sql: "PRAGMA wal_autocheckpoint = \(pages)") }
    }

    func close() async throws { try pool.close() }
}

/// PostgreSQL: one `INSERT … SELECT FROM unnest($ids, $payloads) ON CONFLICT DO UPDATE` per page
/// over one connection, into a `text` column like the store's.
final class RawPostgres: RawLimit {
    let connection: PostgresConnection
    let logger: Logger

    init(url: PostgresURL, logger: Logger) async throws {
        self.logger = logger
        connection = try await PostgresConnection.connect(configuration: try url.connectionConfiguration(), id: 2, logger: logger)
    }

    func create() async throws {
        try await connection.query("DROP TABLE IF EXISTS raw_records", logger: logger)
        try await connection.query("CREATE TABLE raw_records (id text PRIMARY KEY, payload text NOT NULL)", logger: logger)
    }

    func upsert(_ rows: [(id: String, payload: String)]) async throws {
        let ids = rows.map(\.id)
        let payloads = rows.map(\.payload)
        try await connection.query(
            """
            INSERT INTO raw_records(id, payload) SELECT i.id, i.payload FROM unnest(\(ids)::text[], \(payloads)::text[]) AS i(id, payload)
            ON CONFLICT (id) DO UPDATE SET payload = excluded.payload
            """, logger: logger)
    }

    /// Creates the table ``copy(_:)`` writes to (dropping an old one): `(id, payload)` like `raw_records`.
    func createCopyTable() async throws {
        try await connection.query("DROP TABLE IF EXISTS raw_copy", logger: logger)
        try await connection.query("CREATE TABLE raw_copy (id text PRIMARY KEY, payload text NOT NULL)", logger: logger)
    }

    /// Writes one page of new rows with `COPY … FROM STDIN` (text format), one statement: the
    /// fastest way into a PostgreSQL table.
    func copy(_ rows: [(id: String, payload: String)]) async throws {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(rows.reduce(0) { $0 + $1.id.utf8.count + $1.payload.utf8.count + 8 })
        for row in rows {
            Self.appendCopyText(row.id, to: &buffer)
            buffer.writeInteger(UInt8(ascii: "\t"))
            Self.appendCopyText(row.payload, to: &buffer)
            buffer.writeInteger(UInt8(ascii: "\n"))
        }
        try await connection.copyFrom(table: "raw_copy", columns: ["id", "payload"], logger: logger) { writer in
            try await writer.write(buffer)
        }
    }

    /// `text` as a field of COPY's text format: backslash, tab, newline and carriage return escaped;
    /// the runs between them copied whole.
    static func appendCopyText(_ text: String, to buffer: inout ByteBuffer) {
        var text = text
        text.withUTF8 { bytes in
            var start = 0
            for index in bytes.indices {
                let escaped: StaticString
                switch bytes[index] {
                case UInt8(ascii: "\\"): escaped = "\\\\"
                case UInt8(ascii: "\t"): escaped = "\\t"
                case UInt8(ascii: "\n"): escaped = "\\n"
                case UInt8(ascii: "\r"): escaped = "\\r"
                default: continue
                }
                buffer.writeBytes(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[start..<index])))
                buffer.writeStaticString(escaped)
                start = index + 1
            }
            buffer.writeBytes(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[start...])))
        }
    }

    func select(_ sql: String) async throws -> (rows: Int, bytes: Int) {
        var rows = 0
        var bytes = 0
        for try await payload in try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger).decode(String.self) {
            rows += 1
            bytes += payload.utf8.count
        }
        return (rows, bytes)
    }

    func close() async throws { try await connection.close() }
}

extension BenchStores {
    /// The raw limit beside a suite's store: its own SQLite file (or the store's, with `sameDatabase`),
    /// or the suite's PostgreSQL database.
    func rawLimit(_ location: BenchLocation, sameDatabase: Bool = false) async throws -> any RawLimit {
        switch location {
        case .sqlite(let path): try RawSQLite(path: sameDatabase ? path : path.replacingOccurrences(of: ".sqlite", with: "-raw.sqlite"))
        case .postgres(let url): try await RawPostgres(url: url, logger: logger)
        }
    }
}
