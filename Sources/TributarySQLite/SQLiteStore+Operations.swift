import GRDB
import TributaryCore
import TributaryStore

extension SQLiteStore {
    public func operationsSnapshot() async throws -> OperationsSnapshot {
        try await pool.read { db in
            // Served by the partial indexes runs_active_by_variant and webhook_deliveries_pending_age.
            let runs = try Row.fetchAll(
                db,
                sql: """
                    SELECT c.environment, c.provider_config_key, v.sync_name, r.status, count(*) AS n FROM runs r
                    JOIN sync_variants v ON v.id = r.variant_pk JOIN connections c ON c.id = v.connection_pk
                    WHERE r.status IN ('queued', 'running') GROUP BY 1, 2, 3, 4
                    """
            ).map { row in (environment: row[0] as String, integration: row[1] as String, sync: row[2] as String, status: row[3] as String, count: row[4] as Int) }
            let outbox = try Row.fetchAll(
                db,
                sql: "SELECT environment, count(*), min(created_at) FROM webhook_deliveries WHERE status = 'pending' GROUP BY environment ORDER BY environment"
            ).map { row in
                OperationsSnapshot.Outbox(environment: row[0], pending: row[1], oldestPendingAt: (row[2] as Int64?).map(Timestamp.init(microseconds:)))
            }
            return OperationsSnapshot(runs: OperationsSnapshot.activeRuns(runs), outbox: outbox)
        }
    }

    public func activity(_ query: ActivityQuery) async throws -> [RunRecord] {
        // Each filter given narrows the list; an absent one is left out of the statement.
        let filters: [(condition: String, value: (any DatabaseValueConvertible)?)] = [
            ("c.environment = ?", query.environment), ("r.status = ?", query.status?.rawValue), ("c.provider_config_key = ?", query.integration),
            ("v.sync_name = ?", query.sync), ("c.connection_id = ?", query.connectionId), ("r.started_at >= ?", query.since?.microseconds),
            ("r.started_at < ?", query.until?.microseconds), ("r.id < ?", query.beforeId),
        ]
        var conditions: [String] = []
        var arguments: [any DatabaseValueConvertible] = []
        for case let (condition, value?) in filters {
            conditions.append(condition)
            arguments.append(value)
        }
        arguments.append(query.limit)
        let sql = """
            SELECT r.*, c.provider_config_key AS a_integration, c.connection_id AS a_connection, v.sync_name AS a_sync, v.variant AS a_variant
            FROM runs r JOIN sync_variants v ON v.id = r.variant_pk JOIN connections c ON c.id = v.connection_pk
            WHERE \(conditions.joined(separator: " AND ")) ORDER BY r.id DESC LIMIT ?
            """
        guard let statementArguments = StatementArguments(arguments) else { return [] }
        return try await pool.read { db in
            try Row.fetchAll(db, sql: sql, arguments: statementArguments).map { row in
                let variant = VariantRef(
                    connection: ConnectionRef(environment: query.environment, providerConfigKey: row["a_integration"], connectionId: row["a_connection"]),
                    syncName: row["a_sync"], variant: row["a_variant"])
                return try self.runRecord(row, variant: variant)
            }
        }
    }

    public func runsPerHour(environment: String, since: Timestamp) async throws -> [HourlyRuns] {
        try await pool.read { db in
            // Served by runs_finished(finished_at).
            try Row.fetchAll(
                db,
                sql: """
                    SELECT r.finished_at / 3600000000 AS hour, count(*) AS finished, sum(r.status = 'failed') AS failed FROM runs r
                    JOIN sync_variants v ON v.id = r.variant_pk JOIN connections c ON c.id = v.connection_pk
                    WHERE r.finished_at >= ? AND c.environment = ? GROUP BY hour ORDER BY hour
                    """,
                arguments: [since.microseconds, environment]
            ).map { HourlyRuns(hour: $0["hour"], finished: $0["finished"], failed: $0["failed"]) }
        }
    }

    public func outboxFlow(environment: String, since: Timestamp) async throws -> OutboxFlow {
        try await pool.read { db in
            let pending = try Int.fetchOne(db, sql: "SELECT count(*) FROM webhook_deliveries WHERE environment = ? AND status = 'pending'", arguments: [environment]) ?? 0
            func perHour(_ column: String) throws -> [Int64: Int] {
                var hours: [Int64: Int] = [:]
                for row in try Row.fetchAll(
                    db,
                    sql: "SELECT \(column) / 3600000000 AS hour, count(*) AS n FROM webhook_deliveries WHERE environment = ? AND \(column) >= ? GROUP BY hour",
                    arguments: [environment, since.microseconds])
                {
                    hours[row["hour"]] = row["n"]
                }
                return hours
            }
            return OutboxFlow(pendingNow: pending, createdPerHour: try perHour("created_at"), endedPerHour: try perHour("ended_at"))
        }
    }
}
