import Logging
import PostgresNIO
import Testing
import TributaryCore
@testable import TributaryPostgres
import TributaryTestSupport

/// A connection of its own to a PostgreSQL fixture's database, for statements the store would not make.
struct PostgresDatabase {
    let connection: PostgresConnection
    let logger: Logger

    func run(_ sql: String) async throws { try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger) }

    /// The first column of the first row `sql` selects (an `int8`), or -1 for no row.
    func integer(_ sql: String) async throws -> Int {
        for try await value in try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger).decode(Int.self) { return value }
        return -1
    }

    /// The first column of every row `sql` selects, decoded as `T`.
    func column<T: PostgresDecodable & Sendable>(_ sql: String, as type: T.Type) async throws -> [T] {
        var values: [T] = []
        for try await value in try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger).decode(T.self) { values.append(value) }
        return values
    }
}

extension TestStore {
    /// Runs `body` on a ``PostgresDatabase`` connection to this fixture's database, closed after it
    /// whatever happens (a PostgreSQL fixture only).
    func onDatabase<T>(_ body: (PostgresDatabase) async throws -> T) async throws -> T {
        var logger = Logger(label: "tests")
        logger.logLevel = .error
        let connection = try await PostgresConnection.connect(configuration: try PostgresURL(location).connectionConfiguration(), id: 1, logger: logger)
        do {
            let result = try await body(PostgresDatabase(connection: connection, logger: logger))
            try await connection.close()
            return result
        } catch {
            try? await connection.close()
            throw error
        }
    }

    /// Autovacuum kept off this fixture's record partitions, so that only the store analyses them:
    /// an analysis of autovacuum's in between would pass a test's checks of the store's own, or,
    /// at the default statistics target, fail one of its target.
    func withoutAutovacuum() async throws {
        try await onDatabase { database in
            for index in 0..<PostgresSchema.recordPartitions {
                try await database.run("ALTER TABLE records_p\(index) SET (autovacuum_enabled = false)")
            }
            let off = try await database.integer(
                "SELECT count(*)::int8 FROM pg_class WHERE relname LIKE 'records\\_p%' AND 'autovacuum_enabled=false' = ANY (reloptions)")
            #expect(off == PostgresSchema.recordPartitions)
        }
    }
}
