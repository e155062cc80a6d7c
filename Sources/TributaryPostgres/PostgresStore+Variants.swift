import PostgresNIO
import TributaryCore
import TributaryStore

extension PostgresStore {
    @discardableResult
    public func ensureVariant(_ variant: VariantRef) async throws -> VariantState {
        let now = clock()
        return try await transaction { db in try await self.ensureVariantRow(db, variant, now: now).state }
    }

    public func variantState(_ variant: VariantRef) async throws -> VariantState? {
        try await read { db in try await self.lookupVariant(db, variant)?.state }
    }

    public func variants(of connection: ConnectionRef) async throws -> [VariantState] {
        try await read { db in
            guard let pk = try await self.connectionPK(db, connection) else { return [] }
            return try await db.all(
                """
                SELECT \(unescaped: Self.variantColumns) FROM sync_variants WHERE connection_pk = \(pk)
                ORDER BY sync_name COLLATE "C", CASE WHEN variant = 'base' THEN 0 ELSE 1 END, variant COLLATE "C"
                """, self.logger
            ).map { row in
                try self.variantState(VariantRef(connection: connection, syncName: try row.string("sync_name"), variant: try row.string("variant")), row)
            }
        }
    }

    public func createVariant(_ variant: VariantRef, maximumPerSync: Int, paused: Bool) async throws -> VariantState {
        let now = clock()
        return try await transaction { db in
            let connectionPK = try await self.requireConnectionPK(db, variant.connection)
            // The connection row lock serialises variant creation per connection, so the cap holds across processes.
            try await db.query("SELECT id FROM connections WHERE id = \(connectionPK) FOR UPDATE", logger: self.logger)
            if try await self.variantRow(db, connectionPK: connectionPK, variant) != nil { throw StoreMessages.variantExists(variant) }
            let existing =
                try await db.one(
                    "SELECT count(*) AS n FROM sync_variants WHERE connection_pk = \(connectionPK) AND sync_name = \(variant.syncName)", self.logger
                )?.int64("n") ?? 0
            guard existing < maximumPerSync else { throw StoreMessages.variantsCapped(maximumPerSync) }
            guard let (_, state) = try await self.insertVariant(db, connectionPK: connectionPK, variant, paused: paused, now: now) else {
                throw StoreMessages.variantExists(variant)
            }
            return state
        }
    }

    public func setPaused(_ paused: Bool, for variant: VariantRef) async throws {
        let now = clock()
        try await transaction { db in
            let (pk, _) = try await self.requireVariant(db, variant)
            // Started again with no next run planned (its run was cut short while paused): run at once.
            try await db.query(
                """
                UPDATE sync_variants SET paused = \(paused),
                    next_run_at = CASE WHEN \(paused) THEN next_run_at ELSE coalesce(next_run_at, \(now.microseconds)) END
                WHERE id = \(pk)
                """, logger: self.logger)
        }
    }

    public func setFrequency(_ frequency: String?, for variant: VariantRef) async throws {
        try await transaction { db in
            let (pk, _) = try await self.requireVariant(db, variant)
            try await db.query("UPDATE sync_variants SET frequency = \(frequency) WHERE id = \(pk)", logger: self.logger)
        }
    }

    public func setNextRun(_ time: Timestamp, for variant: VariantRef) async throws {
        try await transaction { db in
            guard let (pk, _) = try await self.lookupVariant(db, variant) else { return }
            try await db.query("UPDATE sync_variants SET next_run_at = \(time.microseconds) WHERE id = \(pk)", logger: self.logger)
        }
    }

    public func nextScheduledRun(after time: Timestamp) async throws -> Timestamp? {
        try await read { db in
            try await db.one(
                "SELECT MIN(next_run_at) AS next FROM sync_variants WHERE NOT paused AND next_run_at > \(time.microseconds)", self.logger
            )?.optionalInt64("next").map(Timestamp.init(microseconds:))
        }
    }

    public func dueVariants(at now: Timestamp, limit: Int) async throws -> [VariantState] {
        try await read { db in
            try await db.all(
                """
                SELECT c.environment, c.provider_config_key, c.connection_id, \(unescaped: Self.qualifiedVariantColumns)
                FROM sync_variants v JOIN connections c ON c.id = v.connection_pk
                WHERE NOT v.paused AND v.next_run_at IS NOT NULL AND v.next_run_at <= \(now.microseconds)
                    AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.variant_pk = v.id AND r.status IN ('queued', 'running') AND r.kind <> 'WEBHOOK')
                ORDER BY v.next_run_at LIMIT \(Int64(limit))
                """, self.logger
            ).map { row in
                let connection = ConnectionRef(
                    environment: try row.string("environment"), providerConfigKey: try row.string("provider_config_key"),
                    connectionId: try row.string("connection_id"))
                return try self.variantState(
                    VariantRef(connection: connection, syncName: try row.string("sync_name"), variant: try row.string("variant")), row)
            }
        }
    }

    public func saveCheckpoint(_ checkpoint: Checkpoint, for variant: VariantRef) async throws {
        let json = checkpoint.json
        try await transaction { db in
            // Never creates the variant: a late write of a run whose variant was deleted must not bring it back.
            let (pk, _) = try await self.requireVariant(db, variant)
            try await db.query("UPDATE sync_variants SET checkpoint = \(json) WHERE id = \(pk)", logger: self.logger)
        }
    }

    public func clearCheckpoint(for variant: VariantRef) async throws {
        try await transaction { db in
            guard let (pk, _) = try await self.lookupVariant(db, variant) else { return }
            try await db.query("UPDATE sync_variants SET checkpoint = NULL WHERE id = \(pk)", logger: self.logger)
        }
    }

    public func resetVariant(_ variant: VariantRef, emptyCache: Bool) async throws {
        try await transaction { db in
            let (pk, _) = try await self.requireVariant(db, variant, forUpdate: true)
            try await db.query(
                "UPDATE sync_variants SET last_sync_date = NULL, checkpoint = NULL, deletion_generation = NULL WHERE id = \(pk)",
                logger: self.logger)
            if emptyCache {
                let connectionPK = try await self.requireConnectionPK(db, variant.connection)
                // Lock the datasets like a writer does, so no batch interleaves with the emptying.
                let datasets = try await db.all(
                    """
                    SELECT id FROM datasets WHERE connection_pk = \(connectionPK) AND sync_name = \(variant.syncName) AND variant = \(variant.variant)
                    ORDER BY id FOR UPDATE
                    """, self.logger
                ).map { try $0.int64("id") }
                // Keep the dataset rows: their sequence counters keep running, so clients' cursors stay valid.
                try await db.query("DELETE FROM records WHERE dataset_id = ANY(\(datasets))", logger: self.logger)
                try await db.query("UPDATE datasets SET record_count = 0 WHERE id = ANY(\(datasets))", logger: self.logger)
            }
        }
    }

    public func deleteVariant(_ variant: VariantRef) async throws {
        try await transaction { db in
            let (pk, _) = try await self.requireVariant(db, variant, forUpdate: true)
            let connectionPK = try await self.requireConnectionPK(db, variant.connection)
            try await self.raiseSequenceFloor(db, connectionPK: connectionPK, variant: variant)
            let datasets = try await db.all(
                """
                SELECT id FROM datasets WHERE connection_pk = \(connectionPK) AND sync_name = \(variant.syncName) AND variant = \(variant.variant)
                ORDER BY id FOR UPDATE
                """, self.logger
            ).map { try $0.int64("id") }
            try await db.query("DELETE FROM records WHERE dataset_id = ANY(\(datasets))", logger: self.logger)
            try await db.query("DELETE FROM datasets WHERE id = ANY(\(datasets))", logger: self.logger)
            try await db.query("DELETE FROM sync_variants WHERE id = \(pk)", logger: self.logger)
        }
    }
}
