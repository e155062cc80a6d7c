import PostgresNIO
import TributaryCore
import TributaryStore

extension PostgresStore {
    public func operationsSnapshot() async throws -> OperationsSnapshot {
        try await read { db in
            let runs = try await db.all(
                """
                SELECT c.environment, c.provider_config_key, v.sync_name, r.status, count(*) AS n FROM runs r
                JOIN sync_variants v ON v.id = r.variant_pk JOIN connections c ON c.id = v.connection_pk
                WHERE r.status IN ('queued', 'running') GROUP BY 1, 2, 3, 4
                """, self.logger
            ).map { row in
                (environment: try row.string("environment"), integration: try row.string("provider_config_key"), sync: try row.string("sync_name"),
                 status: try row.string("status"), count: try row.int("n"))
            }
            let outbox = try await db.all(
                """
                SELECT environment, count(*) AS n, min(created_at) AS oldest FROM webhook_deliveries WHERE status = 'pending'
                GROUP BY environment ORDER BY environment
                """, self.logger
            ).map { row in
                OperationsSnapshot.Outbox(
                    environment: try row.string("environment"), pending: try row.int("n"), oldestPendingAt: try row.optionalInt64("oldest").map(Timestamp.init(microseconds:)))
            }
            return OperationsSnapshot(runs: OperationsSnapshot.activeRuns(runs), outbox: outbox)
        }
    }

    public func activity(_ query: ActivityQuery) async throws -> [RunRecord] {
        // Absent filters compare a column with itself (NULL = no filter), so the statement stays one.
        try await read { db in
            try await db.all(
                """
                SELECT r.*, c.provider_config_key AS a_integration, c.connection_id AS a_connection, v.sync_name AS a_sync, v.variant AS a_variant
                FROM runs r JOIN sync_variants v ON v.id = r.variant_pk JOIN connections c ON c.id = v.connection_pk
                WHERE c.environment = \(query.environment)
                    AND (\(query.status?.rawValue)::text IS NULL OR r.status = \(query.status?.rawValue))
                    AND (\(query.integration)::text IS NULL OR c.provider_config_key = \(query.integration))
                    AND (\(query.sync)::text IS NULL OR v.sync_name = \(query.sync))
                    AND (\(query.connectionId)::text IS NULL OR c.connection_id = \(query.connectionId))
                    AND (\(query.since?.microseconds)::bigint IS NULL OR r.started_at >= \(query.since?.microseconds))
                    AND (\(query.until?.microseconds)::bigint IS NULL OR r.started_at < \(query.until?.microseconds))
                    AND (\(query.beforeId)::bigint IS NULL OR r.id < \(query.beforeId))
                ORDER BY r.id DESC LIMIT \(Int64(query.limit))
                """, self.logger
            ).map { row in
                let variant = VariantRef(
                    connection: ConnectionRef(
                        environment: query.environment, providerConfigKey: try row.string("a_integration"), connectionId: try row.string("a_connection")),
                    syncName: try row.string("a_sync"), variant: try row.string("a_variant"))
                return try self.runRecord(row, variant: variant)
            }
        }
    }

    public func runsPerHour(environment: String, since: Timestamp) async throws -> [HourlyRuns] {
        try await read { db in
            try await db.all(
                """
                SELECT r.finished_at / 3600000000 AS hour, count(*) AS finished, count(*) FILTER (WHERE r.status = 'failed') AS failed FROM runs r
                JOIN sync_variants v ON v.id = r.variant_pk JOIN connections c ON c.id = v.connection_pk
                WHERE r.finished_at >= \(since.microseconds) AND c.environment = \(environment) GROUP BY 1 ORDER BY 1
                """, self.logger
            ).map { HourlyRuns(hour: try $0.int64("hour"), finished: try $0.int("finished"), failed: try $0.int("failed")) }
        }
    }

    public func outboxFlow(environment: String, since: Timestamp) async throws -> OutboxFlow {
        try await read { db in
            let pending = try await db.one(
                "SELECT count(*) AS n FROM webhook_deliveries WHERE environment = \(environment) AND status = 'pending'", self.logger)
            var created: [Int64: Int] = [:]
            for row in try await db.all(
                """
                SELECT created_at / 3600000000 AS hour, count(*) AS n FROM webhook_deliveries
                WHERE environment = \(environment) AND created_at >= \(since.microseconds) GROUP BY 1
                """, self.logger)
            {
                created[try row.int64("hour")] = try row.int("n")
            }
            var ended: [Int64: Int] = [:]
            for row in try await db.all(
                """
                SELECT ended_at / 3600000000 AS hour, count(*) AS n FROM webhook_deliveries
                WHERE environment = \(environment) AND ended_at >= \(since.microseconds) GROUP BY 1
                """, self.logger)
            {
                ended[try row.int64("hour")] = try row.int("n")
            }
            return OutboxFlow(pendingNow: try pending?.int("n") ?? 0, createdPerHour: created, endedPerHour: ended)
        }
    }
}
