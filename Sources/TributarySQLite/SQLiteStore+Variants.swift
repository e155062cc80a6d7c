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
        return try await pool.write { db in
            let now = self.clock()
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

    @discardableResult
    public func setPaused(_ paused: Bool, for variants: [VariantRef]) async throws -> LifecycleOutcome {
        return try await pool.write { db in
            let now = self.clock()
            // Resolve every variant first: one unknown variant changes nothing.
            let pks = try variants.uniqued.map { try self.requireVariant(db, $0).pk }
            var ended: [RunRecord] = []
            for pk in pks {
                // Started again with no next run planned (its run was cut short while paused): run at once.
                try db.execute(
                    sql: "UPDATE sync_variants SET paused = ?, next_run_at = CASE WHEN ? THEN next_run_at ELSE coalesce(next_run_at, ?) END WHERE id = ?",
                    arguments: [paused, paused, now.microseconds, pk])
                if paused { ended += try self.endActiveRuns(db, variantPK: pk, .pause, now: now) }
            }
            return LifecycleOutcome(ended: ended)
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

    @discardableResult
    public func resetVariants(_ variants: [VariantRef], emptyCache: Bool, queuesRuns: Bool) async throws -> LifecycleOutcome {
        return try await pool.write { db in
            let now = self.clock()
            let targets = try variants.uniqued.map { ($0, try self.requireVariant(db, $0).pk) }
            var outcome = LifecycleOutcome()
            for (variant, pk) in targets {
                outcome.ended += try self.endActiveRuns(db, variantPK: pk, .reset(emptyCache: emptyCache), now: now)
                try db.execute(
                    sql: """
                        UPDATE sync_variants SET last_sync_date = NULL, checkpoint = NULL, checkpoint_generation = NULL, deletion_generation = NULL
                        WHERE id = ?
                        """,
                    arguments: [pk])
                if emptyCache {
                    let connectionPK = try self.requireConnectionPK(db, variant.connection)
                    try self.emptyDatasets(db, connectionPK: connectionPK, variant, now: now)
                }
                if queuesRuns {
                    outcome.queued.append(try self.insertQueuedRun(db, variantPK: pk, now: now))
                } else {
                    // Its ended run would have planned the next one: the variant stays on the schedule.
                    try db.execute(sql: "UPDATE sync_variants SET next_run_at = coalesce(next_run_at, ?) WHERE id = ?", arguments: [now.microseconds, pk])
                }
            }
            return outcome
        }
    }

    @discardableResult
    public func deleteVariant(_ variant: VariantRef) async throws -> LifecycleOutcome {
        return try await pool.write { db in
            let now = self.clock()
            let (pk, _) = try self.requireVariant(db, variant)
            let connectionPK = try self.requireConnectionPK(db, variant.connection)
            let ended = try self.endActiveRuns(db, variantPK: pk, .delete, now: now)
            let arguments: StatementArguments = [connectionPK, variant.syncName, variant.variant]
            let datasets = "connection_pk = ? AND sync_name = ? AND variant = ?"
            try self.raiseSequenceFloor(db, datasetsWhere: datasets, arguments)
            try self.purgeDatasets(db, where: datasets, arguments, now: now)
            try db.execute(sql: "DELETE FROM sync_variants WHERE id = ?", arguments: [pk])
            return LifecycleOutcome(ended: ended)
        }
    }

    /// Replaces each dataset of the variant by an empty one that goes on with its change counter (so
    /// clients' cursors stay valid); the old rows' records wait for the purge, unreachable.
    func emptyDatasets(_ db: Database, connectionPK: Int64, _ variant: VariantRef, now: Timestamp) throws {
        let rows = try Row.fetchAll(
            db, sql: "SELECT id, model, last_seq, last_write_at FROM datasets WHERE connection_pk = ? AND sync_name = ? AND variant = ?",
            arguments: [connectionPK, variant.syncName, variant.variant])
        for row in rows {
            let id: Int64 = row["id"]
            try db.execute(sql: "INSERT OR IGNORE INTO dataset_purges(dataset_id, queued_at) VALUES (?, ?)", arguments: [id, now.microseconds])
            try db.execute(sql: "DELETE FROM datasets WHERE id = ?", arguments: [id])
            try db.execute(
                sql: "INSERT INTO datasets(connection_pk, sync_name, model, variant, last_seq, last_write_at, record_count) VALUES (?, ?, ?, ?, ?, ?, 0)",
                arguments: [connectionPK, variant.syncName, row["model"] as String, variant.variant, row["last_seq"] as Int64, row["last_write_at"] as Int64])
        }
    }

    /// Lists the matching datasets for the purge and removes their rows: their records are unreachable from here on.
    func purgeDatasets(_ db: Database, where condition: String, _ arguments: StatementArguments, now: Timestamp) throws {
        try db.execute(
            sql: "INSERT OR IGNORE INTO dataset_purges(dataset_id, queued_at) SELECT id, \(now.microseconds) FROM datasets WHERE \(condition)",
            arguments: arguments)
        try db.execute(sql: "DELETE FROM datasets WHERE \(condition)", arguments: arguments)
    }

    /// Ends the variant's active runs as the change says (``VariantLifecycle``) and returns them as ended.
    func endActiveRuns(_ db: Database, variantPK: Int64, _ change: VariantLifecycle.Change, now: Timestamp) throws -> [RunRecord] {
        let active = try Row.fetchAll(
            db, sql: "SELECT id, status, kind FROM runs WHERE variant_pk = ? AND status IN ('queued', 'running') ORDER BY id", arguments: [variantPK]
        ).map { row in
            VariantLifecycle.ActiveRun(id: row["id"], status: RunStatus(rawValue: row["status"]) ?? .running, kind: RunKind(rawValue: row["kind"]) ?? .initial)
        }
        var ended: [RunRecord] = []
        for ending in VariantLifecycle.endings(for: change, active: active) {
            try db.execute(
                sql: "UPDATE runs SET status = 'cancelled', finished_at = ?, error = ? WHERE id = ?", arguments: [now.microseconds, ending.reason, ending.runId])
            if ending.reopensWebhookTask {
                try db.execute(sql: "UPDATE provider_webhook_tasks SET status = 'pending' WHERE run_id = ? AND status = 'claimed'", arguments: [ending.runId])
            }
            if let run = try fetchRun(db, ending.runId) { ended.append(run) }
        }
        return ended
    }
}

extension Array where Element: Hashable {
    /// The elements in order, each once.
    var uniqued: [Element] {
        var seen = Set<Element>()
        return filter { seen.insert($0).inserted }
    }
}
