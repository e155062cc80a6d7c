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
