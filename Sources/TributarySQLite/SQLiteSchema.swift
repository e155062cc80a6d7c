import GRDB

/// The embedded store's schema, as GRDB migrations. Append new migrations; never edit old ones.
enum SQLiteSchema {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-foundation") { db in
            try db.execute(
                sql: """
                    CREATE TABLE store_meta (
                        key TEXT PRIMARY KEY,
                        value INTEGER NOT NULL
                    );
                    INSERT INTO store_meta(key, value) VALUES ('seq_floor', 0);

                    CREATE TABLE connections (
                        id INTEGER PRIMARY KEY,
                        environment TEXT NOT NULL,
                        provider_config_key TEXT NOT NULL,
                        connection_id TEXT NOT NULL,
                        metadata TEXT NOT NULL DEFAULT '{}',
                        created_at INTEGER NOT NULL,
                        updated_at INTEGER NOT NULL,
                        UNIQUE (environment, provider_config_key, connection_id)
                    );

                    CREATE TABLE sync_variants (
                        id INTEGER PRIMARY KEY,
                        connection_pk INTEGER NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
                        sync_name TEXT NOT NULL,
                        variant TEXT NOT NULL,
                        last_sync_date INTEGER,
                        checkpoint TEXT,
                        deletion_generation INTEGER,
                        created_at INTEGER NOT NULL,
                        UNIQUE (connection_pk, sync_name, variant)
                    );

                    -- One row per (connection, model, variant): the change-feed counter and counts.
                    CREATE TABLE datasets (
                        id INTEGER PRIMARY KEY,
                        connection_pk INTEGER NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
                        sync_name TEXT NOT NULL,
                        model TEXT NOT NULL,
                        variant TEXT NOT NULL,
                        last_seq INTEGER NOT NULL,
                        last_write_at INTEGER NOT NULL DEFAULT 0,
                        record_count INTEGER NOT NULL DEFAULT 0,
                        UNIQUE (connection_pk, model, variant)
                    );
                    CREATE INDEX datasets_by_variant ON datasets(connection_pk, sync_name, variant);

                    -- The records cache. seq orders the change feed (one value per write transaction,
                    -- rowid breaks ties); seen_generation drives deletion detection.
                    CREATE TABLE records (
                        id INTEGER PRIMARY KEY,
                        dataset_id INTEGER NOT NULL,
                        external_id TEXT NOT NULL,
                        hash INTEGER NOT NULL,
                        seq INTEGER NOT NULL,
                        first_seen_at INTEGER NOT NULL,
                        updated_at INTEGER NOT NULL,
                        deleted_at INTEGER,
                        seen_generation INTEGER NOT NULL DEFAULT 0,
                        payload TEXT NOT NULL
                    );
                    CREATE UNIQUE INDEX records_identity ON records(dataset_id, external_id);
                    CREATE INDEX records_feed ON records(dataset_id, seq);

                    CREATE TABLE runs (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        variant_pk INTEGER NOT NULL REFERENCES sync_variants(id) ON DELETE CASCADE,
                        status TEXT NOT NULL,
                        kind TEXT NOT NULL,
                        started_at INTEGER NOT NULL,
                        heartbeat_at INTEGER NOT NULL,
                        lease_seconds INTEGER NOT NULL,
                        finished_at INTEGER,
                        deletion_generation INTEGER,
                        results TEXT NOT NULL DEFAULT '{}',
                        error TEXT
                    );
                    CREATE INDEX runs_by_variant ON runs(variant_pk, id);

                    CREATE TABLE run_logs (
                        id INTEGER PRIMARY KEY,
                        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
                        at INTEGER NOT NULL,
                        level TEXT NOT NULL,
                        message TEXT NOT NULL
                    );
                    CREATE INDEX run_logs_by_run ON run_logs(run_id, id);
                    """)
        }
        migrator.registerMigration("v2-api") { db in
            try db.execute(
                sql: """
                    ALTER TABLE connections ADD COLUMN credentials_type TEXT NOT NULL DEFAULT 'NONE';
                    ALTER TABLE connections ADD COLUMN credentials BLOB;
                    ALTER TABLE connections ADD COLUMN connection_config TEXT NOT NULL DEFAULT '{}';
                    ALTER TABLE sync_variants ADD COLUMN public_id TEXT;
                    ALTER TABLE sync_variants ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE sync_variants ADD COLUMN frequency TEXT;
                    UPDATE sync_variants SET public_id = lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' ||
                        substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) ||
                        substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)));
                    CREATE UNIQUE INDEX sync_variants_public_id ON sync_variants(public_id);
                    CREATE INDEX connections_by_environment ON connections(environment, provider_config_key, connection_id);
                    """)
        }
        migrator.registerMigration("v3-schedules") { db in
            try db.execute(
                sql: """
                    ALTER TABLE sync_variants ADD COLUMN next_run_at INTEGER;
                    UPDATE sync_variants SET next_run_at = created_at;
                    CREATE INDEX sync_variants_due ON sync_variants(next_run_at) WHERE paused = 0;
                    """)
        }
        migrator.registerMigration("v4-retries") { db in
            try db.execute(
                sql: """
                    ALTER TABLE runs ADD COLUMN retryable INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE runs ADD COLUMN retry_after_ms INTEGER;
                    """)
        }
        migrator.registerMigration("v5-run-queue") { db in
            // Runs can now wait in the store (status 'queued') for a worker; a variant has at most one
            // active run, which the unique index enforces for every process sharing the database.
            try db.execute(
                sql: """
                    ALTER TABLE runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
                    UPDATE runs SET status = 'expired', error = 'Superseded by a later run of the variant.'
                        WHERE status = 'running' AND id NOT IN (SELECT max(id) FROM runs WHERE status = 'running' GROUP BY variant_pk);
                    CREATE UNIQUE INDEX runs_active ON runs(variant_pk) WHERE status IN ('queued', 'running');
                    CREATE INDEX runs_queued ON runs(id) WHERE status = 'queued';
                    CREATE INDEX runs_running ON runs(variant_pk) WHERE status = 'running';
                    """)
        }
        migrator.registerMigration("v6-webhooks") { db in
            // Webhooks to the app wait in an outbox written by the transaction that finishes their run;
            // provider webhooks wait as tasks until a worker ran their handler. A provider webhook
            // execution is a run of kind 'WEBHOOK' that runs beside the variant's own runs, so the
            // one-active-run rule leaves it out.
            try db.execute(
                sql: """
                    CREATE TABLE webhook_deliveries (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        idempotency_key TEXT NOT NULL UNIQUE,
                        environment TEXT NOT NULL,
                        url TEXT NOT NULL,
                        body BLOB NOT NULL,
                        status TEXT NOT NULL,
                        attempts INTEGER NOT NULL DEFAULT 0,
                        last_error TEXT,
                        last_status_code INTEGER,
                        created_at INTEGER NOT NULL,
                        next_attempt_at INTEGER,
                        locked_until INTEGER,
                        delivered_at INTEGER,
                        run_id INTEGER,
                        provider_config_key TEXT NOT NULL,
                        connection_id TEXT NOT NULL,
                        sync_name TEXT NOT NULL,
                        variant TEXT NOT NULL,
                        model TEXT NOT NULL,
                        success INTEGER NOT NULL
                    );
                    CREATE INDEX webhook_deliveries_pending ON webhook_deliveries(url, id) WHERE status = 'pending';
                    CREATE INDEX webhook_deliveries_by_environment ON webhook_deliveries(environment, id);

                    CREATE TABLE provider_webhook_tasks (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        variant_pk INTEGER NOT NULL REFERENCES sync_variants(id) ON DELETE CASCADE,
                        type TEXT,
                        payload BLOB NOT NULL,
                        status TEXT NOT NULL,
                        attempts INTEGER NOT NULL DEFAULT 0,
                        run_id INTEGER,
                        received_at INTEGER NOT NULL
                    );
                    CREATE INDEX provider_webhook_tasks_open ON provider_webhook_tasks(id) WHERE status IN ('pending', 'claimed');
                    CREATE INDEX provider_webhook_tasks_by_run ON provider_webhook_tasks(run_id);

                    DROP INDEX runs_active;
                    CREATE UNIQUE INDEX runs_active ON runs(variant_pk) WHERE status IN ('queued', 'running') AND kind <> 'WEBHOOK';
                    """)
        }
        migrator.registerMigration("v7-run-worker") { db in
            // Which worker process claimed a run (several processes share one database).
            try db.execute(sql: "ALTER TABLE runs ADD COLUMN worker TEXT")
        }
        migrator.registerMigration("v8-record-payloads") { db in
            // Payloads move to their own table, keyed by the record's rowid: a record row is now ~60
            // bytes, so an unchanged record seen by a full refresh (seen_generation) and deletion
            // detection rewrite and scan small rows instead of whole payloads (docs/BENCHMARKS.md).
            try db.execute(
                sql: """
                    CREATE TABLE record_payloads (record_id INTEGER PRIMARY KEY, payload TEXT NOT NULL);
                    INSERT INTO record_payloads(record_id, payload) SELECT id, payload FROM records;
                    ALTER TABLE records DROP COLUMN payload;
                    CREATE TRIGGER records_payload_cleanup AFTER DELETE ON records
                    BEGIN
                        DELETE FROM record_payloads WHERE record_id = old.id;
                    END;
                    """)
        }
        migrator.registerMigration("v9-run-integrity") { db in
            // Runs are fenced by a lease: `attempts` is the token of the attempt holding a run, which
            // is re-leased (queued again, same row) when it is interrupted (`expiries` counts the lease
            // expiries among those interruptions), keeping its first start and
            // its counts. A checkpoint remembers the deletion window it was saved in. Deleted and
            // emptied datasets are purged in chunks after the transaction that hid them, so dataset
            // ids must never be reused (AUTOINCREMENT). OAuth refreshes take a lock on the connection.
            try db.execute(
                sql: """
                    ALTER TABLE runs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
                    UPDATE runs SET attempts = 1 WHERE status <> 'queued';
                    ALTER TABLE runs ADD COLUMN expiries INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE sync_variants ADD COLUMN checkpoint_generation INTEGER;
                    UPDATE sync_variants SET checkpoint_generation = deletion_generation WHERE checkpoint IS NOT NULL;
                    UPDATE sync_variants SET next_run_at = CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)
                        WHERE paused = 0 AND next_run_at IS NULL
                        AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.variant_pk = sync_variants.id AND r.status IN ('queued', 'running') AND r.kind <> 'WEBHOOK');

                    CREATE TABLE datasets_v9 (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        connection_pk INTEGER NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
                        sync_name TEXT NOT NULL,
                        model TEXT NOT NULL,
                        variant TEXT NOT NULL,
                        last_seq INTEGER NOT NULL,
                        last_write_at INTEGER NOT NULL DEFAULT 0,
                        record_count INTEGER NOT NULL DEFAULT 0,
                        UNIQUE (connection_pk, model, variant)
                    );
                    INSERT INTO datasets_v9(id, connection_pk, sync_name, model, variant, last_seq, last_write_at, record_count)
                        SELECT id, connection_pk, sync_name, model, variant, last_seq, last_write_at, record_count FROM datasets;
                    DROP TABLE datasets;
                    ALTER TABLE datasets_v9 RENAME TO datasets;
                    CREATE INDEX datasets_by_variant ON datasets(connection_pk, sync_name, variant);

                    CREATE TABLE dataset_purges (dataset_id INTEGER PRIMARY KEY, queued_at INTEGER NOT NULL);

                    ALTER TABLE connections ADD COLUMN refresh_holder TEXT;
                    ALTER TABLE connections ADD COLUMN refresh_until INTEGER;

                    CREATE INDEX provider_webhook_tasks_by_variant ON provider_webhook_tasks(variant_pk, id) WHERE status IN ('pending', 'claimed');
                    """)
        }
        migrator.registerMigration("v10-retention") { db in
            // The history cleanup finds what ended before its cutoffs through these.
            try db.execute(
                sql: """
                    CREATE INDEX runs_finished ON runs(finished_at) WHERE finished_at IS NOT NULL;
                    CREATE INDEX webhook_deliveries_ended ON webhook_deliveries(created_at) WHERE status <> 'pending';
                    CREATE INDEX provider_webhook_tasks_ended ON provider_webhook_tasks(received_at) WHERE status NOT IN ('pending', 'claimed');
                    """)
        }
        migrator.registerMigration("v11-end-users") { db in
            // Nango's end user and tags of a connection (filterable in GET /connections).
            try db.execute(
                sql: """
                    ALTER TABLE connections ADD COLUMN end_user TEXT;
                    ALTER TABLE connections ADD COLUMN tags TEXT NOT NULL DEFAULT '{}';
                    """)
        }
        migrator.registerMigration("v12-pruning") { db in
            // Nango's payload pruning: when a record's payload was dropped (PATCH /records/prune).
            try db.execute(
                sql: """
                    ALTER TABLE records ADD COLUMN pruned_at INTEGER;
                    """)
        }
        migrator.registerMigration("v13-actions") { db in
            // Action executions (POST /action/trigger): synchronous ones as a record, async ones as a
            // durable task claimed by workers under a lease (`attempts` is the fencing token).
            try db.execute(
                sql: """
                    CREATE TABLE action_runs (
                        id TEXT PRIMARY KEY,
                        connection_pk INTEGER NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
                        action_name TEXT NOT NULL,
                        is_async INTEGER NOT NULL,
                        status TEXT NOT NULL,
                        input BLOB NOT NULL,
                        output BLOB,
                        output_bytes INTEGER,
                        failure TEXT,
                        attempts INTEGER NOT NULL DEFAULT 0,
                        max_retries INTEGER NOT NULL DEFAULT 0,
                        retryable_failures INTEGER NOT NULL DEFAULT 0,
                        expiries INTEGER NOT NULL DEFAULT 0,
                        lease_seconds INTEGER NOT NULL,
                        heartbeat_at INTEGER,
                        next_attempt_at INTEGER,
                        created_at INTEGER NOT NULL,
                        started_at INTEGER,
                        finished_at INTEGER,
                        worker TEXT
                    );
                    CREATE INDEX action_runs_queued ON action_runs(next_attempt_at) WHERE status = 'queued';
                    CREATE INDEX action_runs_running ON action_runs(heartbeat_at) WHERE status = 'running';
                    CREATE INDEX action_runs_by_connection ON action_runs(connection_pk, created_at);
                    CREATE INDEX action_runs_finished ON action_runs(finished_at) WHERE finished_at IS NOT NULL;
                    CREATE TABLE action_logs (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        action_id TEXT NOT NULL REFERENCES action_runs(id) ON DELETE CASCADE,
                        at INTEGER NOT NULL,
                        level TEXT NOT NULL,
                        message TEXT NOT NULL
                    );
                    CREATE INDEX action_logs_by_action ON action_logs(action_id, id);
                    """)
        }
        migrator.registerMigration("v14-connect") { db in
            // Connect sessions: only the hashes of their token and OAuth state are kept; the PKCE
            // verifier is sealed like credentials. On-event function runs, kept by the connection's
            // names so they outlive it. `refresh_refused`: the credentials whose refused refresh the
            // app was told about (once per version).
            try db.execute(sql: SQLiteStore.connectSessionsTable)
        }
        migrator.registerMigration("v15-activity") { db in
            // The dashboard's activity page and charts: when a webhook delivery ended (delivered or given
            // up; before this, given-up ones count as ended when created). /metrics: active runs and the
            // pending outbox read through partial indexes. `queued_at`: when a run was queued (its
            // `started_at` becomes its first start), for `overlap: run_after` and the queue-wait figure.
            try db.execute(
                sql: """
                    ALTER TABLE webhook_deliveries ADD COLUMN ended_at INTEGER;
                    UPDATE webhook_deliveries SET ended_at = coalesce(delivered_at, created_at) WHERE status <> 'pending';
                    CREATE INDEX webhook_deliveries_created ON webhook_deliveries(environment, created_at);
                    CREATE INDEX webhook_deliveries_ended_at ON webhook_deliveries(environment, ended_at) WHERE ended_at IS NOT NULL;
                    CREATE INDEX webhook_deliveries_pending_age ON webhook_deliveries(environment, created_at) WHERE status = 'pending';
                    CREATE INDEX runs_active_by_variant ON runs(variant_pk) WHERE status IN ('queued', 'running');
                    ALTER TABLE runs ADD COLUMN queued_at INTEGER;
                    UPDATE runs SET queued_at = started_at WHERE status = 'queued';
                    CREATE INDEX runs_started ON runs(started_at);
                    """)
        }
        migrator.registerMigration("v16-seen-ranges") { db in
            // A full refresh's deletion window records a run of unchanged records as one verified
            // span of feed positions (seq, id) instead of a seen stamp per record (SeenRange):
            // a window's ranges are disjoint; an older window's are dropped when the next adds its own.
            try db.execute(
                sql: """
                    CREATE TABLE seen_ranges (
                        dataset_id INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
                        lo_seq INTEGER NOT NULL,
                        lo_id INTEGER NOT NULL,
                        hi_seq INTEGER NOT NULL,
                        hi_id INTEGER NOT NULL,
                        generation INTEGER NOT NULL,
                        PRIMARY KEY (dataset_id, generation, lo_seq, lo_id)
                    ) WITHOUT ROWID;
                    """)
        }
        return migrator
    }
}

extension DatabaseMigrator {
    /// A migration the file records as applied that this version does not know (the first by
    /// name), or nil: a newer Tributary migrated it.
    func unknownMigration(in db: Database) throws -> String? {
        try appliedIdentifiers(db).subtracting(migrations).sorted().first
    }
}
