import Foundation
import NIOCore
import PostgresNIO
import TributaryCore
import TributaryStore

/// The write side of `tributary migrate` (and the read side of its `--verify`): rows copied in
/// batches, each batch committed with its bookkeeping, so an interrupted copy resumes after the
/// last batch it committed. The bookkeeping stays in `tributary_copy` and `tributary_copy_tables`.
extension PostgresStore {
    /// The target's columns of `table` and how each is written (empty: no such table).
    public func copyColumnTypes(_ table: CopyTable) async throws -> [(name: String, type: CopyColumnType)] {
        try await read { db in
            try await db.all(
                """
                SELECT column_name, data_type FROM information_schema.columns
                WHERE table_schema = current_schema() AND table_name = \(table.name) ORDER BY ordinal_position
                """, self.logger
            ).map { row in
                let type: CopyColumnType
                switch try row.string("data_type") {
                case "bigint", "integer", "smallint": type = .integer
                case "boolean": type = .boolean
                case "bytea": type = .bytes
                case "jsonb", "json": type = .json
                case "double precision", "real", "numeric": type = .real
                default: type = .text
                }
                return (try row.string("column_name"), type)
            }
        }
    }

    /// Whether the store holds any data of its own (connections, runs, records or webhooks).
    public func holdsData() async throws -> Bool {
        try await read { db in
            try await db.one(
                """
                SELECT (EXISTS (SELECT 1 FROM connections) OR EXISTS (SELECT 1 FROM runs) OR EXISTS (SELECT 1 FROM datasets)
                    OR EXISTS (SELECT 1 FROM webhook_deliveries) OR EXISTS (SELECT 1 FROM action_runs)) AS held
                """, self.logger)?.bool("held") ?? false
        }
    }

    /// An earlier copy's bookkeeping (nil: none was begun here).
    public func copyProgress() async throws -> CopyProgress? {
        try await transaction { db in
            try await Self.createCopyTables(db, self.logger)
            guard let head = try await db.one("SELECT source, fingerprint, finished_at FROM tributary_copy WHERE id = 1", self.logger) else { return nil }
            var progress = CopyProgress(
                source: try head.string("source"), fingerprint: try head.string("fingerprint"), finished: try head.optionalInt64("finished_at") != nil)
            for row in try await db.all("SELECT table_name, last_text, last_integer, done FROM tributary_copy_tables", self.logger) {
                let name = try row.string("table_name")
                if try row.bool("done") { progress.finishedTables.insert(name) }
                if let number = try row.optionalInt64("last_integer") {
                    progress.lastKeys[name] = .integer(number)
                } else if let text = try row.optionalString("last_text") {
                    progress.lastKeys[name] = .text(text)
                }
            }
            return progress
        }
    }

    /// Records that a copy of `source` begins.
    public func beginCopy(source: String, fingerprint: String) async throws {
        try await transaction { db in
            try await Self.createCopyTables(db, self.logger)
            try await db.query(
                "INSERT INTO tributary_copy(id, source, fingerprint, started_at) VALUES (1, \(source), \(fingerprint), \(Timestamp.now().microseconds))",
                logger: self.logger)
        }
    }

    /// Inserts `rows` of `table` and records the last key copied, in one transaction; with `done`, the
    /// table is marked copied.
    public func importRows(_ table: CopyTable, columns: [(name: String, type: CopyColumnType)], rows: [[CopyValue]], done: Bool) async throws {
        let lastKey = rows.last.flatMap { table.keyValue(of: $0, columns: columns.map(\.name)) }
        // PostgreSQL takes at most 65535 bound values a statement: wide tables go in several.
        let perStatement = max(1, 65_535 / max(1, columns.count))
        let statements = try stride(from: 0, to: rows.count, by: perStatement).map { start in
            try Self.insertStatement(table, columns: columns, rows: Array(rows[start..<min(rows.count, start + perStatement)]))
        }
        try await transaction { db in
            for statement in statements { try await db.query(statement, logger: self.logger) }
            var lastInteger: Int64? = nil
            var lastText: String? = nil
            switch lastKey {
            case .integer(let number)?: lastInteger = number
            case .text(let text)?: lastText = text
            default: break
            }
            try await db.query(
                """
                INSERT INTO tributary_copy_tables(table_name, last_integer, last_text, done) VALUES (\(table.name), \(lastInteger), \(lastText), \(done))
                ON CONFLICT (table_name) DO UPDATE SET
                    last_integer = coalesce(EXCLUDED.last_integer, tributary_copy_tables.last_integer),
                    last_text = coalesce(EXCLUDED.last_text, tributary_copy_tables.last_text), done = EXCLUDED.done
                """, logger: self.logger)
        }
    }

    /// Ends the copy: every id sequence moves past the copied ids (new rows never collide with copied
    /// ones), the planner's statistics are refreshed, and the copy is marked finished.
    /// - Parameter highWaterMarks: per table, the highest id the source ever handed out (deleted rows
    ///   included): the sequences start past those too.
    public func finishCopy(highWaterMarks: [String: Int64] = [:]) async throws {
        try await transaction { db in
            for table in CopyTable.all where table.integerKey && table.key == "id" {
                let mark = highWaterMarks[table.name] ?? 0
                // A dataset id still named by a pending purge or by records is never handed out again.
                let extra = table.name == "datasets" ? ", (SELECT coalesce(max(dataset_id), 0) FROM dataset_purges), (SELECT coalesce(max(dataset_id), 0) FROM records)" : ""
                try await db.query(
                    """
                    SELECT setval(s, GREATEST((SELECT coalesce(max(id), 0) FROM \(unescaped: table.name)), \(mark), 1\(unescaped: extra)))
                    FROM pg_get_serial_sequence(\(table.name), 'id') AS s WHERE s IS NOT NULL
                    """, logger: self.logger)
            }
            try await db.query(
                "SELECT setval('records_id_seq', GREATEST((SELECT coalesce(max(id), 0) FROM records), \(highWaterMarks["records"] ?? 0), 1))",
                logger: self.logger)
            try await db.query("UPDATE tributary_copy SET finished_at = \(Timestamp.now().microseconds) WHERE id = 1", logger: self.logger)
        }
        try await read { db in try await db.query("ANALYZE", logger: self.logger) }
    }

    /// Every row of `table` read once, streamed over a connection of its own (no statement deadline:
    /// a large table takes as long as it takes), into an order-independent checksum (for `--verify`).
    public func copyChecksum(_ table: CopyTable, columns: [(name: String, type: CopyColumnType)]) async throws -> TableChecksum {
        let sql = "SELECT \(columns.map { Self.quoted($0.name) + ($0.type == .json ? "::text" : "") }.joined(separator: ", ")) FROM \(Self.quoted(table.name))"
        let connection = try await PostgresConnection.connect(configuration: try url.connectionConfiguration(), id: 1, logger: logger)
        do {
            var checksum = TableChecksum()
            let types = columns.map(\.type)
            for try await row in try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger) {
                try Task.checkCancellation()
                let values: [CopyValue] = try zip(columns, row.makeRandomAccess()).map { column, cell in
                    switch column.type {
                    case .integer: return try cell.decode(Int64?.self).map(CopyValue.integer) ?? .null
                    case .boolean: return try cell.decode(Bool?.self).map { .integer($0 ? 1 : 0) } ?? .null
                    case .bytes: return try cell.decode(ByteBuffer?.self).map { .blob(Array($0.readableBytesView)) } ?? .null
                    case .real: return try cell.decode(Double?.self).map(CopyValue.real) ?? .null
                    case .text, .json: return try cell.decode(String?.self).map(CopyValue.text) ?? .null
                    }
                }
                checksum.add(values, types: types)
            }
            try await connection.close()
            return checksum
        } catch {
            try? await connection.close()
            throw error
        }
    }

    static func createCopyTables(_ db: PostgresConnection, _ logger: Logger) async throws {
        try await db.query(
            """
            CREATE TABLE IF NOT EXISTS tributary_copy (
                id BIGINT PRIMARY KEY, source TEXT NOT NULL, fingerprint TEXT NOT NULL, started_at BIGINT NOT NULL, finished_at BIGINT)
            """, logger: logger)
        try await db.query(
            """
            CREATE TABLE IF NOT EXISTS tributary_copy_tables (
                table_name TEXT PRIMARY KEY, last_integer BIGINT, last_text TEXT, done BOOLEAN NOT NULL DEFAULT false)
            """, logger: logger)
    }

    /// One multi-row INSERT with every value bound (JSON as text cast to `jsonb`); `store_meta` rows
    /// replace the new database's own.
    static func insertStatement(_ table: CopyTable, columns: [(name: String, type: CopyColumnType)], rows: [[CopyValue]]) throws -> PostgresQuery {
        var binds = PostgresBindings(capacity: rows.count * columns.count)
        var tuples: [String] = []
        tuples.reserveCapacity(rows.count)
        var index = 0
        for row in rows {
            var placeholders: [String] = []
            for (value, column) in zip(row, columns) {
                index += 1
                try bind(value, as: column.type, into: &binds)
                placeholders.append(column.type == .json ? "$\(index)::jsonb" : "$\(index)")
            }
            tuples.append("(" + placeholders.joined(separator: ", ") + ")")
        }
        var sql = "INSERT INTO \(quoted(table.name)) (\(columns.map { quoted($0.name) }.joined(separator: ", "))) VALUES " + tuples.joined(separator: ", ")
        if table.name == "store_meta" { sql += " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value" }
        return PostgresQuery(unsafeSQL: sql, binds: binds)
    }

    /// Binds `value` as the column's type; a value of another kind than the column holds is an error
    /// naming it, never a silent conversion.
    static func bind(_ value: CopyValue, as type: CopyColumnType, into binds: inout PostgresBindings) throws {
        switch (value, type) {
        case (.null, _): binds.appendNull()
        case (.integer(let number), .integer): binds.append(number)
        case (.integer(let number), .boolean): binds.append(number != 0)
        case (.integer(let number), .real): binds.append(Double(number))
        case (.integer(let number), .text): binds.append(String(number))
        case (.real(let number), .real): binds.append(number)
        case (.text(let text), .text), (.text(let text), .json): binds.append(text)
        case (.blob(let bytes), .text), (.blob(let bytes), .json):
            guard let text = String(validating: bytes, as: UTF8.self) else {
                throw TributaryError(.invalidRecord, "A value that is not UTF-8 text cannot be written to a \(type.rawValue) column.")
            }
            binds.append(text)
        case (.blob(let bytes), .bytes): binds.append(ByteBuffer(bytes: bytes))
        case (.text(let text), .bytes): binds.append(ByteBuffer(string: text))
        default:
            throw TributaryError(.invalidRecord, "A value of another kind (\(value.kind)) cannot be written to a \(type.rawValue) column.")
        }
    }

    static func quoted(_ identifier: String) -> String {
        "\"" + identifier.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}
