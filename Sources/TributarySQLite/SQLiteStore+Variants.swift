import Foundation
import GRDB
import TributaryCore
import TributaryStore

extension SQLiteStore {
    @discardableResult
    public func ensureVariant(_ variant: VariantRef) async throws -> VariantState {
        let now = clock()
        return try await pool.write { db in try self.ensureVariantRow(db, variant, now: now).state }
    }

    public func variantState(_ variant: VariantRef) async throws -> VariantState? {
        try await pool.read { db in try self.lookupVariant(db, variant)?.state }
    }

    public func variants(of connection: ConnectionRef) async throws -> [VariantState] {
        try await pool.read { db in
            guard let pk = try self.connectionPK(db, connection) else { return [] }
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT \(Self.variantColumns) FROM sync_variants WHERE connection_pk = ?
                    ORDER BY sync_name, CASE WHEN variant = 'base' THEN 0 ELSE 1 END, variant
                    """,
                arguments: [pk])
            return try rows.map { row in
                try self.variantState(VariantRef(connection: connection, syncName: row["sync_name"], variant: row["variant"]), row)
            }
        }
    }

    public func createVariant(_ variant: VariantRef, maximumPerSync: Int, paused: Bool) async throws -> VariantState {
        let now = clock()
        return try await pool.write { db in
            let connectionPK = try self.requireConnectionPK(db, variant.connection)
            if try self.variantRow(db, connectionPK: connectionPK, variant) != nil {
                throw StoreMessages.variantExists(variant)
            }
            let existing = try Int.fetchOne(
                db, sql: "SELECT COUNT(*) FROM sync_variants WHERE connection_pk = ? AND sync_name = ?",
                arguments: [connectionPK, variant.syncName]) ?? 0
            guard existing < maximumPerSync else {
                throw StoreMessages.variantsCapped(maximumPerSync)
            }
            var (pk, state) = try self.insertVariant(db, connectionPK: connectionPK, variant, now: now)
            if paused {
                try db.execute(sql: "UPDATE sync_variants SET paused = 1 WHERE id = ?", arguments: [pk])
                state.paused = true
            }
            return state
        }
    }

    public func setPaused(_ paused: Bool, for variant: VariantRef) async throws {
        try await pool.write { db in
            let (pk, _) = try self.requireVariant(db, variant)
            // Started again with no next run planned (its run was cut short while paused): run at once.
            try db.execute(
                sql: "UPDATE sync_variants SET paused = ?, next_run_at = CASE WHEN ? THEN next_run_at ELSE coalesce(next_run_at, ?) END WHERE id = ?",
                arguments: [paused, paused, self.clock().microseconds, pk])
        }
    }

    public func setFrequency(_ frequency: String?, for variant: VariantRef) async throws {
        try await pool.write { db in
            let (pk, _) = try self.requireVariant(db, variant)
            try db.execute(sql: "UPDATE sync_variants SET frequency = ? WHERE id = ?", arguments: [frequency, pk])
        }
    }

    public func setNextRun(_ time: Timestamp, for variant: VariantRef) async throws {
        try await pool.write { db in
            guard let (pk, _) = try self.lookupVariant(db, variant) else { return }
            try db.execute(sql: "UPDATE sync_variants SET next_run_at = ? WHERE id = ?", arguments: [time.microseconds, pk])
        }
    }

    public func nextScheduledRun(after time: Timestamp) async throws -> Timestamp? {
        try await pool.read { db in
            // Served by the partial index sync_variants_due(next_run_at) WHERE paused = 0.
            try Int64.fetchOne(db, sql: "SELECT MIN(next_run_at) FROM sync_variants WHERE paused = 0 AND next_run_at > ?", arguments: [time.microseconds])
                .map(Timestamp.init(microseconds:))
        }
    }

    public func dueVariants(at now: Timestamp, limit: Int) async throws -> [VariantState] {
        try await pool.read { db in
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT c.environment, c.provider_config_key, c.connection_id, \(Self.qualifiedVariantColumns)
                    FROM sync_variants v JOIN connections c ON c.id = v.connection_pk
                    WHERE v.paused = 0 AND v.next_run_at IS NOT NULL AND v.next_run_at <= ?
                        AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.variant_pk = v.id AND r.status IN ('queued', 'running') AND r.kind <> 'WEBHOOK')
                    ORDER BY v.next_run_at LIMIT ?
                    """,
                arguments: [now.microseconds, limit])
            return try rows.map { row in
                let connection = ConnectionRef(environment: row["environment"], providerConfigKey: row["provider_config_key"], connectionId: row["connection_id"])
                return try self.variantState(VariantRef(connection: connection, syncName: row["sync_name"], variant: row["variant"]), row)
            }
        }
    }

    public func saveCheckpoint(_ checkpoint: Checkpoint, for variant: VariantRef) async throws {
        try await pool.write { db in
            // Never creates the variant: a late write of a run whose variant was deleted must not bring it back.
            let (pk, _) = try self.requireVariant(db, variant)
            try db.execute(sql: "UPDATE sync_variants SET checkpoint = ? WHERE id = ?", arguments: [checkpoint.json, pk])
        }
    }

    public func clearCheckpoint(for variant: VariantRef) async throws {
        try await pool.write { db in
            guard let (pk, _) = try self.lookupVariant(db, variant) else { return }
            try db.execute(sql: "UPDATE sync_variants SET checkpoint = NULL WHERE id = ?", arguments: [pk])
        }
    }

    public func resetVariant(_ variant: VariantRef, emptyCache: Bool) async throws {
        try await pool.write { db in
            let (pk, _) = try self.requireVariant(db, variant)
            try db.execute(
                sql: "UPDATE sync_variants SET last_sync_date = NULL, checkpoint = NULL, deletion_generation = NULL WHERE id = ?",
                arguments: [pk])
            if emptyCache {
                let connectionPK = try self.requireConnectionPK(db, variant.connection)
                let arguments: StatementArguments = [connectionPK, variant.syncName, variant.variant]
                try db.execute(
                    sql: """
                        DELETE FROM records WHERE dataset_id IN
                            (SELECT id FROM datasets WHERE connection_pk = ? AND sync_name = ? AND variant = ?)
                        """,
                    arguments: arguments)
                // Keep the dataset rows: their sequence counters keep running, so clients' cursors stay valid.
                try db.execute(
                    sql: "UPDATE datasets SET record_count = 0 WHERE connection_pk = ? AND sync_name = ? AND variant = ?",
                    arguments: arguments)
            }
        }
    }

    public func deleteVariant(_ variant: VariantRef) async throws {
        try await pool.write { db in
            let (pk, _) = try self.requireVariant(db, variant)
            let connectionPK = try self.requireConnectionPK(db, variant.connection)
            let arguments: StatementArguments = [connectionPK, variant.syncName, variant.variant]
            let datasets = "connection_pk = ? AND sync_name = ? AND variant = ?"
            try self.raiseSequenceFloor(db, datasetsWhere: datasets, arguments)
            try db.execute(sql: "DELETE FROM records WHERE dataset_id IN (SELECT id FROM datasets WHERE \(datasets))", arguments: arguments)
            try db.execute(sql: "DELETE FROM datasets WHERE \(datasets)", arguments: arguments)
            try db.execute(sql: "DELETE FROM sync_variants WHERE id = ?", arguments: [pk])
        }
    }
}
