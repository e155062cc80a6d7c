import Foundation
import GRDB
import Logging
import PostgresNIO
import TributaryCore

/// Where a store's database is, for counting straight from its tables.
public enum StoreLocation: Sendable, Hashable {
    case sqlite(path: String)
    case postgres(url: String)
}

/// What can be counted in a store's tables directly (beside the store's own API), to check that
/// nothing is left behind and every variant is scheduled: the rows of every table, records whose
/// dataset no longer exists (waiting for the purge, or — a bug — left over), datasets of variants
/// that no longer exist, variants off the schedule, variants with two active runs.
public struct StoreCensus: Sendable, Equatable {
    public var connections = 0
    public var variants = 0
    public var datasets = 0
    public var records = 0
    public var runs = 0
    /// Records whose dataset row is gone.
    public var orphanRecords = 0
    /// Datasets listed for the purge.
    public var pendingPurges = 0
    /// Seen ranges of deletion windows (none once every window closed).
    public var seenRanges = 0
    /// Datasets whose variant no longer exists.
    public var datasetsWithoutVariant = 0
    /// Started (not paused) variants with neither an active run nor a planned next run: off the schedule.
    public var unscheduledVariants = 0
    /// Variants with more than one active (queued or running) run that is not a provider webhook execution.
    public var variantsWithSeveralActiveRuns = 0

    public init() {}

    /// Counts the tables of the database at `location`.
    public static func take(_ location: StoreLocation) async throws -> StoreCensus {
        var census = StoreCensus()
        switch location {
        case .sqlite(let path):
            let sqls = queries(paused: "0").map(\.1)
            let queue = try DatabaseQueue(path: path)
            defer { try? queue.close() }
            let counts = try await queue.read { db in try sqls.map { try Int.fetchOne(db, sql: $0) ?? 0 } }
            for ((path, _), count) in zip(queries(paused: "0"), counts) { census[keyPath: path] = count }
        case .postgres(let url):
            let logger = Logger(label: "tributary.census")
            let connection = try await PostgresConnection.connect(configuration: try PostgresURL(url).connectionConfiguration(), id: 2, logger: logger)
            do {
                for (path, sql) in queries(paused: "false") {
                    for try await count in try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger).decode(Int64.self) {
                        census[keyPath: path] = Int(count)
                    }
                }
            } catch {
                try? await connection.close()
                throw error
            }
            try await connection.close()
        }
        return census
    }

    static func queries(paused falsehood: String) -> [(WritableKeyPath<StoreCensus, Int>, String)] {
        [
            (\.connections, "SELECT count(*) FROM connections"),
            (\.variants, "SELECT count(*) FROM sync_variants"),
            (\.datasets, "SELECT count(*) FROM datasets"),
            (\.records, "SELECT count(*) FROM records"),
            (\.runs, "SELECT count(*) FROM runs"),
            (\.orphanRecords, "SELECT count(*) FROM records r WHERE NOT EXISTS (SELECT 1 FROM datasets d WHERE d.id = r.dataset_id)"),
            (\.pendingPurges, "SELECT count(*) FROM dataset_purges"),
            (\.seenRanges, "SELECT count(*) FROM seen_ranges"),
            (
                \.datasetsWithoutVariant,
                """
                SELECT count(*) FROM datasets d WHERE NOT EXISTS (SELECT 1 FROM sync_variants v
                    WHERE v.connection_pk = d.connection_pk AND v.sync_name = d.sync_name AND v.variant = d.variant)
                """
            ),
            (
                \.unscheduledVariants,
                """
                SELECT count(*) FROM sync_variants v WHERE v.paused = \(falsehood) AND v.next_run_at IS NULL
                    AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.variant_pk = v.id AND r.status IN ('queued', 'running') AND r.kind <> 'WEBHOOK')
                """
            ),
            (
                \.variantsWithSeveralActiveRuns,
                "SELECT count(*) FROM (SELECT variant_pk FROM runs WHERE status IN ('queued', 'running') AND kind <> 'WEBHOOK' GROUP BY variant_pk HAVING count(*) > 1) s"
            ),
        ]
    }
}
