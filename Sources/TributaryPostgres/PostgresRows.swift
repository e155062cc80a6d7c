import Foundation
import Logging
import PostgresNIO

// Small helpers over postgres-nio for the store's queries: collect rows, read columns by name.

extension PostgresConnection {
    /// All rows of a query.
    func all(_ query: PostgresQuery, _ logger: Logger) async throws -> [PostgresRandomAccessRow] {
        var rows: [PostgresRandomAccessRow] = []
        for try await row in try await self.query(query, logger: logger) { rows.append(row.makeRandomAccess()) }
        return rows
    }

    /// The first row of a query, or nil.
    func one(_ query: PostgresQuery, _ logger: Logger) async throws -> PostgresRandomAccessRow? {
        try await all(query, logger).first
    }

    /// Runs a statement ending in `RETURNING …` and counts the rows it touched.
    func count(_ query: PostgresQuery, _ logger: Logger) async throws -> Int {
        var count = 0
        for try await _ in try await self.query(query, logger: logger) { count += 1 }
        return count
    }
}

extension PostgresRandomAccessRow {
    func int64(_ column: String) throws -> Int64 { try self[column].decode(Int64.self) }
    func optionalInt64(_ column: String) throws -> Int64? { try self[column].decode(Int64?.self) }
    func int(_ column: String) throws -> Int { Int(try self[column].decode(Int64.self)) }
    func optionalInt(_ column: String) throws -> Int? { try self[column].decode(Int64?.self).map { Int($0) } }
    func string(_ column: String) throws -> String { try self[column].decode(String.self) }
    func optionalString(_ column: String) throws -> String? { try self[column].decode(String?.self) }
    func bool(_ column: String) throws -> Bool { try self[column].decode(Bool.self) }
    func bytes(_ column: String) throws -> [UInt8] { Array(try self[column].decode(Data.self)) }
    func optionalBytes(_ column: String) throws -> [UInt8]? { try self[column].decode(Data?.self).map { Array($0) } }
}

/// A row's cells read in order, for the hot read path of the change feed: no generic tuple decoding
/// (its runtime metadata lookups cost more per row than the reads themselves), and text read as
/// bytes without a `String` in between. Other types and formats go through postgres-nio's decoding.
struct RowCells {
    private var cells: PostgresRow.Iterator
    /// Columns read so far.
    private var read = 0

    init(_ row: PostgresRow) {
        cells = row.makeIterator()
    }

    /// What a row did not hold, naming the column.
    struct Missing: Error, CustomStringConvertible {
        var description: String
    }

    private mutating func next() throws -> PostgresCell {
        guard let cell = cells.next() else { throw Missing(description: "the row has no column \(read + 1)") }
        read += 1
        return cell
    }

    mutating func int64() throws -> Int64 {
        let cell = try next()
        guard let value = try Self.int64(cell) else { throw Missing(description: "column \(cell.columnIndex + 1) (\(cell.columnName)) is NULL") }
        return value
    }

    mutating func optionalInt64() throws -> Int64? {
        try Self.int64(try next())
    }

    mutating func string() throws -> String {
        let cell = try next()
        if let bytes = Self.text(cell) { return String(buffer: bytes) }
        return try cell.decode(String.self)
    }

    /// A text column's UTF-8 bytes.
    mutating func textBytes() throws -> [UInt8] {
        let cell = try next()
        if let bytes = Self.text(cell) { return Array(bytes.readableBytesView) }
        return Array(try cell.decode(String.self).utf8)
    }

    private static func int64(_ cell: PostgresCell) throws -> Int64? {
        guard var bytes = cell.bytes else { return nil }
        if cell.format == .binary, cell.dataType == .int8, bytes.readableBytes == 8, let value = bytes.readInteger(as: Int64.self) { return value }
        return try cell.decode(Int64.self)
    }

    /// A text or varchar cell's bytes, which are its UTF-8 text in either format; nil for NULL and
    /// other types (postgres-nio's decoding then answers, or refuses).
    private static func text(_ cell: PostgresCell) -> ByteBuffer? {
        cell.dataType == .text || cell.dataType == .varchar ? cell.bytes : nil
    }
}
