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
            if !paused { try await self.notify(db, .variantsDue) }
            return state
        }
    }

    @discardableResult
    public func setPaused(_ paused: Bool, for variants: [VariantRef]) async throws -> LifecycleOutcome {
        return try await transaction { db in
            try await self.lock(db, .runQueue)
            let now = self.clock()
            // Resolve every variant first: one unknown variant changes nothing.
            var pks: [Int64] = []
            for variant in variants.uniqued { pks.append(try await self.requireVariant(db, variant).pk) }
            var ended: [RunRecord] = []
            if !paused,
                try await db.one("SELECT count(*) AS n FROM sync_variants WHERE id = ANY(\(pks)::int8[]) AND paused", self.logger)?.int64("n") ?? 0 > 0
            {
                // Only a resume tells the schedulers: a start of started variants changes nothing.
                try await self.notify(db, .variantsDue)
            }
            for pk in pks {
                if paused { ended += try await self.endActiveRuns(db, variantPK: pk, .pause, now: now) }
                // Started again with no next run planned (its run was cut short while paused): run at once.
                try await db.query(
                    """
                    UPDATE sync_variants SET paused = \(paused),
                        next_run_at = CASE WHEN \(paused) THEN next_run_at ELSE coalesce(next_run_at, \(now.microseconds)) END
                    WHERE id = \(pk)
                    """, logger: self.logger)
            }
            return LifecycleOutcome(ended: ended)
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

    @discardableResult
    public func resetVariants(_ variants: [VariantRef], emptyCache: Bool, queuesRuns: Bool) async throws -> LifecycleOutcome {
        return try await transaction { db in
            try await self.lock(db, .runQueue)
            let now = self.clock()
            var targets: [(VariantRef, Int64)] = []
            for variant in variants.uniqued { targets.append((variant, try await self.requireVariant(db, variant).pk)) }
            var outcome = LifecycleOutcome()
            for (variant, pk) in targets {
                outcome.ended += try await self.endActiveRuns(db, variantPK: pk, .reset(emptyCache: emptyCache), now: now)
                try await db.query(
                    """
                    UPDATE sync_variants SET last_sync_date = NULL, checkpoint = NULL, checkpoint_generation = NULL, deletion_generation = NULL
                    WHERE id = \(pk)
                    """, logger: self.logger)
                if emptyCache {
                    let connectionPK = try await self.requireConnectionPK(db, variant.connection)
                    try await self.emptyDatasets(db, connectionPK: connectionPK, variant, now: now)
                }
                if queuesRuns {
                    let id = try await self.insertRun(db, variantPK: pk, status: .queued, kind: .initial, now: now, leaseSeconds: 0)
                    outcome.queued.append(try await self.fetchRun(db, id)!)
                } else {
                    // Its ended run would have planned the next one: the variant stays on the schedule.
                    try await db.query(
                        "UPDATE sync_variants SET next_run_at = coalesce(next_run_at, \(now.microseconds)) WHERE id = \(pk)", logger: self.logger)
                }
            }
            if !outcome.queued.isEmpty { try await self.notify(db, .runsQueued) }
            return outcome
        }
    }

    @discardableResult
    public func deleteVariant(_ variant: VariantRef) async throws -> LifecycleOutcome {
        return try await transaction { db in
            try await self.lock(db, .runQueue)
            let now = self.clock()
            let (pk, _) = try await self.requireVariant(db, variant)
            let ended = try await self.endActiveRuns(db, variantPK: pk, .delete, now: now)
            try await db.query("SELECT id FROM sync_variants WHERE id = \(pk) FOR UPDATE", logger: self.logger)
            let connectionPK = try await self.requireConnectionPK(db, variant.connection)
            try await self.raiseSequenceFloor(db, connectionPK: connectionPK, variant: variant)
            try await self.purgeDatasets(
                db, ids: try await self.lockDatasets(db, connectionPK: connectionPK, syncName: variant.syncName, variant: variant.variant), now: now)
            try await db.query("DELETE FROM sync_variants WHERE id = \(pk)", logger: self.logger)
            return LifecycleOutcome(ended: ended)
        }
    }

    /// Locks the datasets of one variant (or, with nil names, of the whole connection) like a writer does.
    func lockDatasets(_ db: PostgresConnection, connectionPK: Int64, syncName: String?, variant: String?) async throws -> [Int64] {
        if let syncName, let variant {
            return try await db.all(
                """
                SELECT id FROM datasets WHERE connection_pk = \(connectionPK) AND sync_name = \(syncName) AND variant = \(variant) ORDER BY id FOR UPDATE
                """, logger
            ).map { try $0.int64("id") }
        }
        return try await db.all("SELECT id FROM datasets WHERE connection_pk = \(connectionPK) ORDER BY id FOR UPDATE", logger).map { try $0.int64("id") }
    }

    /// Replaces each dataset of the variant by an empty one that goes on with its change counter (so
    /// clients' cursors stay valid); the old rows' records wait for the purge, unreachable.
    func emptyDatasets(_ db: PostgresConnection, connectionPK: Int64, _ variant: VariantRef, now: Timestamp) async throws {
        let rows = try await db.all(
            """
            SELECT id, model, last_seq, last_write_at FROM datasets
            WHERE connection_pk = \(connectionPK) AND sync_name = \(variant.syncName) AND variant = \(variant.variant) ORDER BY id FOR UPDATE
            """, logger)
        for row in rows {
            let id = try row.int64("id")
            try await purgeDatasets(db, ids: [id], now: now)
            try await db.query(
                """
                INSERT INTO datasets(connection_pk, sync_name, model, variant, last_seq, last_write_at, record_count)
                VALUES (\(connectionPK), \(variant.syncName), \(try row.string("model")), \(variant.variant), \(try row.int64("last_seq")),
                    \(try row.int64("last_write_at")), 0)
                """, logger: logger)
        }
    }

    /// Lists the datasets for the purge and removes their rows: their records are unreachable from here on.
    func purgeDatasets(_ db: PostgresConnection, ids: [Int64], now: Timestamp) async throws {
        guard !ids.isEmpty else { return }
        try await db.query(
            """
            INSERT INTO dataset_purges(dataset_id, queued_at) SELECT unnest(\(ids)::int8[]), \(now.microseconds) ON CONFLICT DO NOTHING
            """, logger: logger)
        try await db.query("DELETE FROM datasets WHERE id = ANY(\(ids)::int8[])", logger: logger)
    }

    /// Locks and ends the variant's active runs as the change says (``VariantLifecycle``) and returns
    /// them as ended. Run rows are locked before anything else (the order every writer keeps).
    func endActiveRuns(_ db: PostgresConnection, variantPK: Int64, _ change: VariantLifecycle.Change, now: Timestamp) async throws -> [RunRecord] {
        let active = try await db.all(
            "SELECT id, status, kind FROM runs WHERE variant_pk = \(variantPK) AND status IN ('queued', 'running') ORDER BY id FOR UPDATE", logger
        ).map { row in
            VariantLifecycle.ActiveRun(
                id: try row.int64("id"), status: RunStatus(rawValue: try row.string("status")) ?? .running,
                kind: RunKind(rawValue: try row.string("kind")) ?? .initial)
        }
        var ended: [RunRecord] = []
        for ending in VariantLifecycle.endings(for: change, active: active) {
            try await db.query(
                "UPDATE runs SET status = 'cancelled', finished_at = \(now.microseconds), error = \(ending.reason) WHERE id = \(ending.runId)",
                logger: logger)
            if ending.reopensWebhookTask {
                try await db.query(
                    "UPDATE provider_webhook_tasks SET status = 'pending' WHERE run_id = \(ending.runId) AND status = 'claimed'", logger: logger)
            }
            if let run = try await fetchRun(db, ending.runId) { ended.append(run) }
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
