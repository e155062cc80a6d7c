import Foundation
import PostgresNIO
import TributaryCore

/// The scale-out store's schema as numbered migrations. Append new migrations; never edit old ones.
///
/// `migrate()` applies the missing ones in one transaction under an advisory lock, so processes
/// starting together never race, and a process that finds the schema newer than it knows refuses to
/// start (an old binary must not write into a newer schema).
enum PostgresSchema {
    /// Records are hash-partitioned by dataset (one dataset = one connection, model and variant), so
    /// a dataset's records, its change-feed index and its deletion scans stay in one partition.
    static let recordPartitions = 16

    static let migrations: [(name: String, sql: String)] = [
        (
            "v1-schema",
            """
            CREATE TABLE store_meta (
                key TEXT PRIMARY KEY,
                value BIGINT NOT NULL
            );
            INSERT INTO store_meta(key, value) VALUES ('seq_floor', 0);

            CREATE TABLE connections (
                id BIGSERIAL PRIMARY KEY,
                environment TEXT NOT NULL,
                provider_config_key TEXT NOT NULL,
                connection_id TEXT NOT NULL,
                metadata JSONB NOT NULL DEFAULT '{}',
                connection_config JSONB NOT NULL DEFAULT '{}',
                credentials_type TEXT NOT NULL DEFAULT 'NONE',
                credentials BYTEA,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                UNIQUE (environment, provider_config_key, connection_id)
            );

            CREATE TABLE sync_variants (
                id BIGSERIAL PRIMARY KEY,
                connection_pk BIGINT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
                sync_name TEXT NOT NULL,
                variant TEXT NOT NULL,
                public_id TEXT NOT NULL UNIQUE,
                paused BOOLEAN NOT NULL DEFAULT false,
                frequency TEXT,
                next_run_at BIGINT,
                last_sync_date BIGINT,
                checkpoint TEXT,
                deletion_generation BIGINT,
                created_at BIGINT NOT NULL,
                UNIQUE (connection_pk, sync_name, variant)
            );
            CREATE INDEX sync_variants_due ON sync_variants(next_run_at) WHERE NOT paused;

            -- One row per (connection, model, variant): the change-feed counter and counts. Writers lock
            -- this row for their transaction, which orders the dataset's change sequence by commit.
            CREATE TABLE datasets (
                id BIGSERIAL PRIMARY KEY,
                connection_pk BIGINT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
                sync_name TEXT NOT NULL,
                model TEXT NOT NULL,
                variant TEXT NOT NULL,
                last_seq BIGINT NOT NULL,
                last_write_at BIGINT NOT NULL DEFAULT 0,
                record_count BIGINT NOT NULL DEFAULT 0,
                UNIQUE (connection_pk, model, variant)
            );
            CREATE INDEX datasets_by_variant ON datasets(connection_pk, sync_name, variant);

            -- The records cache. seq orders the change feed (one value per write transaction, id breaks
            -- ties); seen_generation drives deletion detection.
            CREATE SEQUENCE records_id_seq;
            CREATE TABLE records (
                id BIGINT NOT NULL DEFAULT nextval('records_id_seq'),
                dataset_id BIGINT NOT NULL,
                external_id TEXT NOT NULL,
                hash BIGINT NOT NULL,
                seq BIGINT NOT NULL,
                first_seen_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                deleted_at BIGINT,
                seen_generation BIGINT NOT NULL DEFAULT 0,
                payload JSONB NOT NULL,  -- TEXT since v4-text-payloads
                PRIMARY KEY (dataset_id, external_id)
            ) PARTITION BY HASH (dataset_id);
            \(partitions)
            CREATE INDEX records_feed ON records(dataset_id, seq, id);

            CREATE TABLE runs (
                id BIGSERIAL PRIMARY KEY,
                variant_pk BIGINT NOT NULL REFERENCES sync_variants(id) ON DELETE CASCADE,
                status TEXT NOT NULL,
                kind TEXT NOT NULL,
                started_at BIGINT NOT NULL,
                heartbeat_at BIGINT NOT NULL,
                lease_seconds BIGINT NOT NULL,
                finished_at BIGINT,
                deletion_generation BIGINT,
                results TEXT NOT NULL DEFAULT '{}',
                error TEXT,
                retryable BOOLEAN NOT NULL DEFAULT false,
                retry_after_ms BIGINT,
                cancel_requested BOOLEAN NOT NULL DEFAULT false,
                worker TEXT
            );
            CREATE INDEX runs_by_variant ON runs(variant_pk, id);
            -- At most one queued or running run per variant, for every process sharing the database.
            CREATE UNIQUE INDEX runs_active ON runs(variant_pk) WHERE status IN ('queued', 'running') AND kind <> 'WEBHOOK';
            CREATE INDEX runs_queued ON runs(id) WHERE status = 'queued';
            CREATE INDEX runs_running ON runs(variant_pk) WHERE status = 'running';

            CREATE TABLE run_logs (
                id BIGSERIAL PRIMARY KEY,
                run_id BIGINT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
                at BIGINT NOT NULL,
                level TEXT NOT NULL,
                message TEXT NOT NULL
            );
            CREATE INDEX run_logs_by_run ON run_logs(run_id, id);

            CREATE TABLE webhook_deliveries (
                id BIGSERIAL PRIMARY KEY,
                idempotency_key TEXT NOT NULL UNIQUE,
                environment TEXT NOT NULL,
                url TEXT NOT NULL,
                body BYTEA NOT NULL,
                status TEXT NOT NULL,
                attempts BIGINT NOT NULL DEFAULT 0,
                last_error TEXT,
                last_status_code BIGINT,
                created_at BIGINT NOT NULL,
                next_attempt_at BIGINT,
                locked_until BIGINT,
                delivered_at BIGINT,
                run_id BIGINT,
                provider_config_key TEXT NOT NULL,
                connection_id TEXT NOT NULL,
                sync_name TEXT NOT NULL,
                variant TEXT NOT NULL,
                model TEXT NOT NULL,
                success BOOLEAN NOT NULL
            );
            CREATE INDEX webhook_deliveries_pending ON webhook_deliveries(url, id) WHERE status = 'pending';
            CREATE INDEX webhook_deliveries_by_environment ON webhook_deliveries(environment, id);

            CREATE TABLE provider_webhook_tasks (
                id BIGSERIAL PRIMARY KEY,
                variant_pk BIGINT NOT NULL REFERENCES sync_variants(id) ON DELETE CASCADE,
                type TEXT,
                payload BYTEA NOT NULL,
                status TEXT NOT NULL,
                attempts BIGINT NOT NULL DEFAULT 0,
                run_id BIGINT,
                received_at BIGINT NOT NULL
            );
            CREATE INDEX provider_webhook_tasks_open ON provider_webhook_tasks(id) WHERE status IN ('pending', 'claimed');
            CREATE INDEX provider_webhook_tasks_by_run ON provider_webhook_tasks(run_id);
            """
        ),
        (
            "v2-run-integrity",
            // Runs are fenced by a lease: `attempts` is the token of the attempt holding a run, which is
            // re-leased (queued again, same row) when it is interrupted (`expiries` counts the lease
            // expiries among those; the column defaults avoid rewriting the run history), keeping its first start and its
            // counts. A checkpoint remembers the deletion window it was saved in. Deleted and emptied
            // datasets are purged in chunks after the transaction that hid them. OAuth refreshes take a
            // lock on the connection. A variant dropped off the schedule by the old two-step finish runs.
            """
            ALTER TABLE runs ADD COLUMN attempts BIGINT NOT NULL DEFAULT 1;
            UPDATE runs SET attempts = 0 WHERE status = 'queued';
            ALTER TABLE runs ALTER COLUMN attempts SET DEFAULT 0;
            ALTER TABLE runs ADD COLUMN expiries BIGINT NOT NULL DEFAULT 0;
            ALTER TABLE sync_variants ADD COLUMN checkpoint_generation BIGINT;
            UPDATE sync_variants SET checkpoint_generation = deletion_generation WHERE checkpoint IS NOT NULL;
            UPDATE sync_variants v SET next_run_at = \(PostgresStore.databaseNow)
                WHERE NOT v.paused AND v.next_run_at IS NULL
                AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.variant_pk = v.id AND r.status IN ('queued', 'running') AND r.kind <> 'WEBHOOK');
            CREATE TABLE dataset_purges (dataset_id BIGINT PRIMARY KEY, queued_at BIGINT NOT NULL);
            ALTER TABLE connections ADD COLUMN refresh_holder TEXT;
            ALTER TABLE connections ADD COLUMN refresh_until BIGINT;
            CREATE INDEX provider_webhook_tasks_by_variant ON provider_webhook_tasks(variant_pk, id) WHERE status IN ('pending', 'claimed');
            """
        ),
        (
            "v3-retention",
            // The history cleanup finds what ended before its cutoffs through these.
            """
            CREATE INDEX runs_finished ON runs(finished_at) WHERE finished_at IS NOT NULL;
            CREATE INDEX webhook_deliveries_ended ON webhook_deliveries(created_at) WHERE status <> 'pending';
            CREATE INDEX provider_webhook_tasks_ended ON provider_webhook_tasks(received_at) WHERE status NOT IN ('pending', 'claimed');
            """
        ),
        (
            "v4-text-payloads",
            // Payloads are stored as the canonical JSON text their hash was computed from, as SQLite
            // stores them: jsonb refused a `\u0000` in any string (failing the whole batch on every
            // run) and rewrote number forms, so an unchanged record read back as changed.
            """
            ALTER TABLE records ALTER COLUMN payload TYPE TEXT USING payload::text;
            """
        ),
        (
            "v5-end-users",
            // Nango's end user and tags of a connection (filterable in GET /connections).
            """
            ALTER TABLE connections ADD COLUMN end_user JSONB;
            ALTER TABLE connections ADD COLUMN tags JSONB NOT NULL DEFAULT '{}';
            """
        ),
        (
            "v6-pruning",
            // Nango's payload pruning: when a record's payload was dropped (PATCH /records/prune). The
            // partial index lets a save tell cheaply whether a dataset has pruned records at all.
            """
            ALTER TABLE records ADD COLUMN pruned_at BIGINT;
            CREATE INDEX records_pruned ON records(dataset_id) WHERE pruned_at IS NOT NULL;
            """
        ),
        (
            "v7-actions",
            // Action executions (POST /action/trigger): synchronous ones as a record, async ones as a
            // durable task claimed by workers under a lease (`attempts` is the fencing token).
            """
            CREATE TABLE action_runs (
                id TEXT PRIMARY KEY,
                connection_pk BIGINT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
                action_name TEXT NOT NULL,
                is_async BOOLEAN NOT NULL,
                status TEXT NOT NULL,
                input BYTEA NOT NULL,
                output BYTEA,
                output_bytes BIGINT,
                failure TEXT,
                attempts BIGINT NOT NULL DEFAULT 0,
                max_retries BIGINT NOT NULL DEFAULT 0,
                retryable_failures BIGINT NOT NULL DEFAULT 0,
                expiries BIGINT NOT NULL DEFAULT 0,
                lease_seconds BIGINT NOT NULL,
                heartbeat_at BIGINT,
                next_attempt_at BIGINT,
                created_at BIGINT NOT NULL,
                started_at BIGINT,
                finished_at BIGINT,
                worker TEXT
            );
            CREATE INDEX action_runs_queued ON action_runs(next_attempt_at) WHERE status = 'queued';
            CREATE INDEX action_runs_running ON action_runs(heartbeat_at) WHERE status = 'running';
            CREATE INDEX action_runs_by_connection ON action_runs(connection_pk, created_at);
            CREATE INDEX action_runs_finished ON action_runs(finished_at) WHERE finished_at IS NOT NULL;
            CREATE TABLE action_logs (
                id BIGSERIAL PRIMARY KEY,
                action_id TEXT NOT NULL REFERENCES action_runs(id) ON DELETE CASCADE,
                at BIGINT NOT NULL,
                level TEXT NOT NULL,
                message TEXT NOT NULL
            );
            CREATE INDEX action_logs_by_action ON action_logs(action_id, id);
            """
        ),
        (
            "v8-connect",
            // Connect sessions: only the hashes of their token and OAuth state are kept; the PKCE
            // verifier is sealed like credentials. On-event function runs, kept by the connection's
            // names so they outlive it. `refresh_refused`: the credentials whose refused refresh the
            // app was told about (once per version).
            """
            CREATE TABLE connect_sessions (
                token_hash TEXT PRIMARY KEY,
                environment TEXT NOT NULL,
                end_user TEXT,
                tags TEXT,
                allowed_integrations TEXT,
                config_defaults TEXT NOT NULL,
                reconnect_provider_config_key TEXT,
                reconnect_connection_id TEXT,
                created_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL,
                used_at BIGINT,
                oauth_state_hash TEXT UNIQUE,
                oauth_browser_hash TEXT,
                oauth_provider_config_key TEXT,
                oauth_verifier BYTEA,
                oauth_started_at BIGINT
            );
            CREATE INDEX connect_sessions_expiry ON connect_sessions(expires_at);
            ALTER TABLE connections ADD COLUMN refresh_refused TEXT;
            CREATE TABLE connection_event_runs (
                id TEXT PRIMARY KEY,
                environment TEXT NOT NULL,
                provider_config_key TEXT NOT NULL,
                connection_id TEXT NOT NULL,
                event TEXT NOT NULL,
                function TEXT NOT NULL,
                failure TEXT,
                logs TEXT NOT NULL,
                started_at BIGINT NOT NULL,
                finished_at BIGINT NOT NULL
            );
            CREATE INDEX connection_event_runs_by_environment ON connection_event_runs(environment, finished_at);
            CREATE INDEX connection_event_runs_by_connection ON connection_event_runs(environment, provider_config_key, connection_id, finished_at);
            """
        ),
        (
            "v9-activity",
            // The dashboard's activity page and charts: when a webhook delivery ended (delivered or given
            // up; before this, given-up ones count as ended when created), runs per hour by finish time,
            // and the environment's runs newest first. /metrics: active runs and the pending outbox read
            // through partial indexes. `queued_at`: when a run was queued (its `started_at` becomes its
            // first start), for `overlap: run_after` and the queue-wait figure.
            """
            ALTER TABLE webhook_deliveries ADD COLUMN ended_at BIGINT;
            UPDATE webhook_deliveries SET ended_at = coalesce(delivered_at, created_at) WHERE status <> 'pending';
            CREATE INDEX webhook_deliveries_created ON webhook_deliveries(environment, created_at);
            CREATE INDEX webhook_deliveries_ended_at ON webhook_deliveries(environment, ended_at) WHERE ended_at IS NOT NULL;
            CREATE INDEX webhook_deliveries_pending_age ON webhook_deliveries(environment, created_at) WHERE status = 'pending';
            CREATE INDEX runs_active_by_variant ON runs(variant_pk) WHERE status IN ('queued', 'running');
            ALTER TABLE runs ADD COLUMN queued_at BIGINT;
            UPDATE runs SET queued_at = started_at WHERE status = 'queued';
            CREATE INDEX runs_started ON runs(started_at);
            """
        ),
        (
            "v10-seen-ranges",
            // A full refresh's deletion window records a run of unchanged records as one verified
            // span of feed positions (seq, id) instead of a seen stamp per record (SeenRange):
            // a window's ranges are disjoint; an older window's are dropped when the next adds its own.
            """
            CREATE TABLE seen_ranges (
                dataset_id BIGINT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
                lo_seq BIGINT NOT NULL,
                lo_id BIGINT NOT NULL,
                hi_seq BIGINT NOT NULL,
                hi_id BIGINT NOT NULL,
                generation BIGINT NOT NULL,
                PRIMARY KEY (dataset_id, generation, lo_seq, lo_id)
            );
            """
        ),
        (
            "v11-page-lookup",
            // A page saved into a dataset that holds records is looked up first by its ids and
            // hashes (PostgresStore.lookUpPage): its seen ranges recorded, its unchanged records
            // not yet seen and in no range stamped, and the 1-based positions of the records that
            // need a write (new, changed, re-added, pruned) returned. A function, so each server
            // session plans the statement once and keeps the plan (a generic one after five calls)
            // instead of parsing and planning ~5 KB of SQL for every page, without any session
            // state in the client (PgBouncer in transaction mode stays possible).
            """
            CREATE FUNCTION tributary_look_up_page(p_dataset BIGINT, p_generation BIGINT, p_ids TEXT[], p_hashes BIGINT[], p_min_records BIGINT)
            RETURNS BIGINT[] LANGUAGE plpgsql AS $$
            DECLARE
                writes BIGINT[];
            BEGIN
                WITH incoming AS (
                    SELECT i.external_id, i.hash, i.ord FROM unnest(p_ids, p_hashes) WITH ORDINALITY AS i(external_id, hash, ord)),
                scanned AS (
                    SELECT s.* FROM (SELECT seq, id FROM records WHERE dataset_id = p_dataset AND external_id = p_ids[1]) f
                    CROSS JOIN LATERAL (
                        SELECT seq, id, external_id, hash, deleted_at, pruned_at, seen_generation FROM records r
                        WHERE r.dataset_id = p_dataset AND (r.seq, r.id) >= (f.seq, f.id) ORDER BY r.seq, r.id LIMIT cardinality(p_ids)) s),
                looked AS (
                    SELECT i.ord, i.external_id, coalesce(s.seq, l.seq) AS seq, coalesce(s.id, l.id) AS id, s.id IS NOT NULL AS scanned,
                        coalesce(s.hash = i.hash AND s.deleted_at IS NULL AND s.pruned_at IS NULL,
                            l.hash = i.hash AND l.deleted_at IS NULL AND l.pruned_at IS NULL, false) AS unchanged,
                        coalesce(s.seen_generation, l.seen_generation) < p_generation AS unseen
                    FROM incoming i LEFT JOIN scanned s ON s.external_id = i.external_id
                    LEFT JOIN LATERAL (
                        SELECT seq, id, hash, deleted_at, pruned_at, seen_generation FROM records
                        WHERE s.id IS NULL AND dataset_id = p_dataset AND external_id = i.external_id LIMIT 1) l ON true),
                present AS (SELECT * FROM looked WHERE id IS NOT NULL),
                whole AS (
                    SELECT f.seq AS lo_seq, f.id AS lo_id, l.seq AS hi_seq, l.id AS hi_id, (SELECT count(*) FROM present) AS n
                    FROM (SELECT seq, id FROM present ORDER BY seq, id LIMIT 1) f, (SELECT seq, id FROM present ORDER BY seq DESC, id DESC LIMIT 1) l
                    WHERE (SELECT count(*) FROM present WHERE unchanged AND unseen) >= p_min_records),
                -- Every present record read by the scan, and every scanned row one of them: the span
                -- from the first to the last is exactly the scanned rows, no count needed.
                whole_ok AS (
                    SELECT lo_seq, lo_id, hi_seq, hi_id FROM whole c
                    WHERE CASE WHEN c.n = (SELECT count(*) FROM scanned) AND NOT EXISTS (SELECT 1 FROM present WHERE NOT scanned) THEN true
                        ELSE (SELECT count(*) FROM (SELECT 1 FROM records r WHERE r.dataset_id = p_dataset
                    AND (r.seq, r.id) >= (c.lo_seq, c.lo_id) AND (r.seq, r.id) <= (c.hi_seq, c.hi_id) LIMIT c.n + 1) x) = c.n END
                        AND NOT coalesce((SELECT (s.hi_seq, s.hi_id) >= (c.lo_seq, c.lo_id) FROM seen_ranges s
                    WHERE s.dataset_id = p_dataset AND s.generation = p_generation AND (s.lo_seq, s.lo_id) <= (c.hi_seq, c.hi_id)
                    ORDER BY s.lo_seq DESC, s.lo_id DESC LIMIT 1), false)),
                by_sequence AS (
                    SELECT c.lo_seq, c.lo_id, c.hi_seq, c.hi_id, (SELECT count(*) FROM (SELECT 1 FROM records r WHERE r.dataset_id = p_dataset
                    AND (r.seq, r.id) >= (c.lo_seq, c.lo_id) AND (r.seq, r.id) <= (c.hi_seq, c.hi_id) LIMIT c.n + 1) x) = c.n AND NOT coalesce((SELECT (s.hi_seq, s.hi_id) >= (c.lo_seq, c.lo_id) FROM seen_ranges s
                    WHERE s.dataset_id = p_dataset AND s.generation = p_generation AND (s.lo_seq, s.lo_id) <= (c.hi_seq, c.hi_id)
                    ORDER BY s.lo_seq DESC, s.lo_id DESC LIMIT 1), false) AS usable
                    FROM (
                        SELECT seq AS lo_seq, min(id) AS lo_id, seq AS hi_seq, max(id) AS hi_id, count(*) AS n FROM present
                        GROUP BY seq HAVING count(*) >= p_min_records) c
                    WHERE EXISTS (SELECT 1 FROM whole) AND NOT EXISTS (SELECT 1 FROM whole_ok)),
                by_rows AS (
                    SELECT c.lo_seq, c.lo_id, c.hi_seq, c.hi_id FROM (
                        SELECT seq AS lo_seq, min(id) AS lo_id, seq AS hi_seq, max(id) AS hi_id, count(*) AS n FROM (
                            SELECT seq, id, id - row_number() OVER (PARTITION BY seq ORDER BY id) AS run FROM present
                            WHERE seq IN (SELECT lo_seq FROM by_sequence WHERE NOT usable)) t
                        GROUP BY seq, run HAVING count(*) >= p_min_records) c
                    -- A run without a gap in its row ids is the span that just failed.
                    WHERE NOT EXISTS (SELECT 1 FROM by_sequence b WHERE b.lo_seq = c.lo_seq AND b.lo_id = c.lo_id AND b.hi_id = c.hi_id)
                        AND (SELECT count(*) FROM (SELECT 1 FROM records r WHERE r.dataset_id = p_dataset
                    AND (r.seq, r.id) >= (c.lo_seq, c.lo_id) AND (r.seq, r.id) <= (c.hi_seq, c.hi_id) LIMIT c.n + 1) x) = c.n AND NOT coalesce((SELECT (s.hi_seq, s.hi_id) >= (c.lo_seq, c.lo_id) FROM seen_ranges s
                    WHERE s.dataset_id = p_dataset AND s.generation = p_generation AND (s.lo_seq, s.lo_id) <= (c.hi_seq, c.hi_id)
                    ORDER BY s.lo_seq DESC, s.lo_id DESC LIMIT 1), false)),
                chosen AS (
                    SELECT * FROM whole_ok
                    UNION ALL SELECT lo_seq, lo_id, hi_seq, hi_id FROM by_sequence WHERE usable
                    UNION ALL SELECT * FROM by_rows),
                stale AS (DELETE FROM seen_ranges WHERE dataset_id = p_dataset AND generation < p_generation AND EXISTS (SELECT 1 FROM chosen)),
                ranged AS (
                    INSERT INTO seen_ranges(dataset_id, lo_seq, lo_id, hi_seq, hi_id, generation)
                    SELECT p_dataset, lo_seq, lo_id, hi_seq, hi_id, p_generation FROM chosen),
                -- Unchanged, not yet seen in the window and in no range: stamped, nothing else.
                stamped AS (
                    UPDATE records r SET seen_generation = p_generation FROM present p
                    WHERE r.dataset_id = p_dataset AND r.external_id = p.external_id AND p.unchanged AND p.unseen
                        AND NOT EXISTS (SELECT 1 FROM chosen c WHERE (p.seq, p.id) >= (c.lo_seq, c.lo_id) AND (p.seq, p.id) <= (c.hi_seq, c.hi_id)))
                SELECT ARRAY(SELECT ord FROM looked WHERE NOT unchanged ORDER BY ord) INTO writes;
                RETURN writes;
            END
            $$;
            """
        ),
        (
            "v12-page-check",
            // A page saved again in the order its rows hold in the feed is checked against them
            // whole (PostgresStore.lookUpPage): the rows from its first record on, as many as the
            // page, read in one index scan, their ids and hashes aggregated in that order and
            // compared with the page's as arrays. When the ids are the page's, in its order, the
            // records to write are found by position — no per-record matching: none when the
            // hashes are the page's too and every row is live; else, for each record to write,
            // `position * 4 + kind` (position 1-based in the page; kind 0: changed, counted
            // updated; 1: deleted, re-added and counted added; 2: unchanged but pruned, its payload
            // back and not counted) — from the two hash arrays when every row is live, else from a
            // second pass over the rows. In a deletion window the
            // span becomes a seen range when enough of its unchanged records are not yet seen and
            // no range of the window overlaps it (the scanned rows are consecutive in the feed, so
            // no other record lies in it: SeenRange); else its rows not yet seen are stamped. NULL,
            // with nothing written, when the ids differ: the caller looks the page up record by
            // record (tributary_look_up_page).
            // `tributary_look_up_alone`: a run's page looked up in one autocommit call
            // (PostgresStore.lookUpPageAlone) — the run row locked and fenced as RunFence checks
            // (running, this attempt's token, its lease not run out on the database's clock) and not
            // a webhook execution's, then the model's dataset row locked, then the check and, if it
            // does not align the page, the lookup (each statement a fresh snapshot, after the locks),
            // and the checkpoint saved when nothing needs a write. Every OUT value NULL when the run
            // or the dataset was not there to lock: nothing was done, the caller's transaction names
            // the reason.
            // `tributary_refuse` fails the statement that calls it (SQLSTATE TRB01): a statement
            // that finds its own result other than foretold writes nothing. VOLATILE, so that it is
            // called only when reached, never while a statement is planned.
            // `tributary_check_page` keeps one generic plan per session (`plan_cache_mode`): its
            // statements' custom plans, pruned to the dataset's partition, look cheaper to the planner,
            // which then planned each of them at every call (~0.28 ms a page).
            // No page function is compiled by JIT, whatever the session: the store's own sessions
            // start with `jit = off` (PostgresURL+Client), but a pooler that drops startup
            // parameters would leave it on, and the lookup's cost estimate passes `jit_above_cost`
            // on a dataset of ~100k analysed records — compiling took ~70 ms a call against ~2.5 ms
            // of execution (PostgreSQL 15).
            """
            ALTER FUNCTION tributary_look_up_page(BIGINT, BIGINT, TEXT[], BIGINT[], BIGINT) SET jit = off;
            CREATE FUNCTION tributary_refuse(p_reason TEXT) RETURNS BOOLEAN LANGUAGE plpgsql VOLATILE AS $$
            BEGIN
                RAISE EXCEPTION USING ERRCODE = 'TRB01', MESSAGE = p_reason;
            END
            $$;
            \(checkPage)
            CREATE FUNCTION tributary_look_up_alone(
                p_run BIGINT, p_token BIGINT, p_lease_offset BIGINT, p_webhook TEXT, p_model TEXT, p_ids TEXT[], p_hashes BIGINT[],
                p_min_records BIGINT, p_checking BOOLEAN, p_checkpoint TEXT, p_saves_checkpoint BOOLEAN,
                OUT writes BIGINT[], OUT aligned BOOLEAN, OUT results TEXT, OUT variant_pk BIGINT, OUT run_generation BIGINT,
                OUT dataset_id BIGINT, OUT last_seq BIGINT, OUT last_write_at BIGINT, OUT generation BIGINT)
            LANGUAGE plpgsql SET jit = off AS $$
            DECLARE
                connection_ BIGINT;
                variant_ TEXT;
                run_variant_ BIGINT;
                run_generation_ BIGINT;
                results_ TEXT;
            BEGIN
                SELECT r.variant_pk, r.deletion_generation, r.results, v.connection_pk, v.variant
                INTO run_variant_, run_generation_, results_, connection_, variant_
                FROM runs r JOIN sync_variants v ON v.id = r.variant_pk
                WHERE r.id = p_run AND r.status = 'running' AND r.attempts = p_token AND r.kind <> p_webhook
                    AND r.heartbeat_at + r.lease_seconds * 1000000 > (floor(extract(epoch from now()) * 1000000))::bigint + p_lease_offset
                FOR UPDATE OF r;
                IF NOT FOUND THEN
                    RETURN;
                END IF;
                SELECT d.id, d.last_seq, d.last_write_at INTO dataset_id, last_seq, last_write_at
                FROM datasets d WHERE d.connection_pk = connection_ AND d.variant = variant_ AND d.model = p_model
                FOR UPDATE;
                IF NOT FOUND THEN
                    RETURN;
                END IF;
                results := results_;
                variant_pk := run_variant_;
                run_generation := run_generation_;
                generation := coalesce(run_generation_, 0);
                IF p_checking THEN
                    writes := tributary_check_page(dataset_id, generation, p_ids, p_hashes, p_min_records);
                END IF;
                aligned := writes IS NOT NULL;
                IF NOT aligned THEN
                    writes := tributary_look_up_page(dataset_id, generation, p_ids, p_hashes, p_min_records);
                END IF;
                IF p_saves_checkpoint AND cardinality(writes) = 0 THEN
                    UPDATE sync_variants SET checkpoint = p_checkpoint, checkpoint_generation = run_generation_ WHERE id = run_variant_;
                END IF;
            END
            $$;
            """
        ),
        (
            "v13-page-upsert",
            // `tributary_upsert_records`: a page's records upserted into a dataset (ids, hashes and
            // payloads as arrays) — a new record inserted; a changed or re-added one rewritten and
            // moved in the feed to `p_seq`; an unchanged but pruned one given its payload back in
            // place; an unchanged one not yet seen in the window `p_generation` stamped — neither
            // counted nor moved, every other column kept. Returns how many were added and updated
            // (the new `seq` tells the counted ones apart, `first_seen_at` the added). It keeps one
            // generic plan per session: the statement it replaces was planned at every page
            // (~0.37 ms a page, more than its execution).
            // `tributary_upsert_alone`: a page's records that `tributary_look_up_alone` found to
            // need a write (PostgresStore.upsertPageAlone), in one autocommit call — the run row
            // locked and fenced as the lookup fenced it (RunFence), its results still as the lookup
            // read them, and the dataset row locked with its head still as the lookup left it (so no
            // writer changed the dataset between the two calls); then the upsert, the head moved by
            // what it wrote, the checkpoint (if `p_saves_checkpoint`) and the run's new results (if
            // any). The call fails whole (tributary_refuse) when the upsert's counts are not
            // `p_added` and `p_updated`, which the lookup foretold. `applied` false, with nothing
            // written, when the run or the head were not as expected.
            // `tributary_check_skipping`: a page whose records are the rows of its span (from its
            // first record's row to its last's) in feed order but for some rows it skips (records
            // gone at the provider) is aligned too. The skipped rows are found first (the span's
            // rows the page does not hold, among its first rows: a quarter more than the page, and
            // 16; one past them is left among the others, which then do not match the page), then
            // the other rows compared with the page as arrays, in feed order. The writes come back as there; each
            // run of the page's records between two skipped rows becomes a seen range when enough of
            // its unchanged records are not yet seen and no range of the window overlaps the page's
            // span, and the page's other rows not yet seen are stamped. A skipped row is never seen
            // (a range holding one is refused before anything is written): deletion detection takes
            // it unless a later page holds it. v12's `tributary_check_page` is renamed
            // `tributary_check_aligned`; `tributary_check_page` now tries it, then the skipping check
            // (the same answer for the callers, v12's `tributary_look_up_alone` among them).
            """
            CREATE FUNCTION tributary_upsert_records(
                p_dataset BIGINT, p_seq BIGINT, p_now BIGINT, p_generation BIGINT, p_ids TEXT[], p_hashes BIGINT[], p_payloads TEXT[],
                OUT added BIGINT, OUT updated BIGINT)
            LANGUAGE plpgsql SET jit = off SET plan_cache_mode = force_generic_plan AS $$
            BEGIN
                WITH upserted AS (
                    INSERT INTO records(dataset_id, external_id, hash, seq, first_seen_at, updated_at, deleted_at, seen_generation, payload)
                    SELECT p_dataset, i.external_id, i.hash, p_seq, p_now, p_now, NULL, p_generation, i.payload
                    FROM unnest(p_ids, p_hashes, p_payloads) AS i(external_id, hash, payload)
                    ON CONFLICT (dataset_id, external_id) DO UPDATE SET
                        hash = excluded.hash,
                        seq = CASE WHEN records.hash <> excluded.hash OR records.deleted_at IS NOT NULL THEN excluded.seq ELSE records.seq END,
                        payload = CASE WHEN records.hash <> excluded.hash OR records.deleted_at IS NOT NULL OR records.pruned_at IS NOT NULL
                            THEN excluded.payload ELSE records.payload END,
                        first_seen_at = CASE WHEN records.deleted_at IS NOT NULL THEN excluded.first_seen_at ELSE records.first_seen_at END,
                        updated_at = CASE WHEN records.hash <> excluded.hash OR records.deleted_at IS NOT NULL THEN excluded.updated_at ELSE records.updated_at END,
                        deleted_at = NULL,
                        pruned_at = NULL,
                        seen_generation = GREATEST(records.seen_generation, excluded.seen_generation)
                    WHERE records.hash <> excluded.hash OR records.deleted_at IS NOT NULL OR records.pruned_at IS NOT NULL
                        OR records.seen_generation < excluded.seen_generation
                    RETURNING records.first_seen_at, records.seq)
                SELECT count(*) FILTER (WHERE u.seq = p_seq AND u.first_seen_at = p_now), count(*) FILTER (WHERE u.seq = p_seq AND u.first_seen_at <> p_now)
                INTO added, updated
                FROM upserted u;
            END
            $$;
            CREATE FUNCTION tributary_upsert_alone(
                p_run BIGINT, p_token BIGINT, p_lease_offset BIGINT, p_webhook TEXT, p_results TEXT, p_new_results TEXT,
                p_dataset BIGINT, p_last_seq BIGINT, p_last_write_at BIGINT, p_seq BIGINT, p_now BIGINT, p_generation BIGINT,
                p_variant BIGINT, p_run_generation BIGINT, p_checkpoint TEXT, p_saves_checkpoint BOOLEAN,
                p_ids TEXT[], p_hashes BIGINT[], p_payloads TEXT[], p_added BIGINT, p_updated BIGINT,
                OUT applied BOOLEAN, OUT added BIGINT, OUT updated BIGINT, OUT record_count BIGINT)
            LANGUAGE plpgsql SET jit = off AS $$
            BEGIN
                applied := false;
                PERFORM 1 FROM runs r
                WHERE r.id = p_run AND r.status = 'running' AND r.attempts = p_token AND r.kind <> p_webhook
                    AND r.heartbeat_at + r.lease_seconds * 1000000 > (floor(extract(epoch from now()) * 1000000))::bigint + p_lease_offset
                    AND r.results = p_results
                FOR UPDATE OF r;
                IF NOT FOUND THEN
                    RETURN;
                END IF;
                PERFORM 1 FROM datasets d WHERE d.id = p_dataset AND d.last_seq = p_last_seq AND d.last_write_at = p_last_write_at FOR UPDATE;
                IF NOT FOUND THEN
                    RETURN;
                END IF;
                SELECT u.added, u.updated INTO added, updated
                FROM tributary_upsert_records(p_dataset, p_seq, p_now, p_generation, p_ids, p_hashes, p_payloads) u;
                IF added <> p_added OR updated <> p_updated THEN
                    PERFORM tributary_refuse('The page wrote other counts than its lookup foretold.');
                END IF;
                IF added + updated > 0 THEN
                    UPDATE datasets d SET last_seq = p_seq, last_write_at = p_now, record_count = d.record_count + added
                    WHERE d.id = p_dataset
                    RETURNING d.record_count INTO record_count;
                END IF;
                IF p_saves_checkpoint THEN
                    UPDATE sync_variants SET checkpoint = p_checkpoint, checkpoint_generation = p_run_generation WHERE id = p_variant;
                END IF;
                IF p_new_results IS NOT NULL THEN
                    UPDATE runs SET results = p_new_results WHERE id = p_run;
                END IF;
                applied := true;
            END
            $$;
            ALTER FUNCTION tributary_check_page(BIGINT, BIGINT, TEXT[], BIGINT[], BIGINT) RENAME TO tributary_check_aligned;
            \(checkSkippingFront)
            \(skippingMarks)
            CREATE FUNCTION tributary_check_page(p_dataset BIGINT, p_generation BIGINT, p_ids TEXT[], p_hashes BIGINT[], p_min_records BIGINT)
            RETURNS BIGINT[] LANGUAGE plpgsql SET jit = off AS $$
            DECLARE
                writes_ BIGINT[];
            BEGIN
                writes_ := tributary_check_aligned(p_dataset, p_generation, p_ids, p_hashes, p_min_records);
                IF writes_ IS NULL THEN
                    writes_ := tributary_check_skipping(p_dataset, p_generation, p_ids, p_hashes, p_min_records);
                END IF;
                RETURN writes_;
            END
            $$;
            """
        ),
        (
            "v14-page-save",
            // `tributary_save_alone`: a run's page saved whole in one autocommit call
            // (PostgresStore.lookUpPageAlone with the payloads) — `tributary_look_up_alone` first
            // (the run row and the dataset row locked and fenced, the check or the lookup, the
            // checkpoint when nothing needs a write), then, in the same call and under the same
            // locks, when the check aligned the page and found records to write: v13's
            // `tributary_upsert_alone` for them (its checks of the run and the head hold, as nothing
            // came between) at the dataset's next sequence and a time after its last write — the
            // upsert, the head, the checkpoint, and the model's counts the kinds give (counted
            // updated: changed; added: deleted) added to the run's results, the call failing whole
            // (tributary_refuse) if the upsert's own counts differ. The results are computed here as
            // JSON (`new_results`): every reader of `runs.results` parses it, and the calls that
            // compare it compare the text they read. The payloads come as one `bytea` of the page's
            // canonical JSON payloads back to back, `p_ends` the end of each (the page's records in
            // order): only the records to write are cut out. `saved` is true when the page is
            // saved (nothing to write, or its writes upserted); false with the lookup's answer (and
            // its seen marks committed) when the page was not aligned or `p_ends` is not one end per
            // record, the last at the payloads' end; every OUT value NULL when the run or the
            // dataset was not there to lock.
            saveAlone("CREATE FUNCTION tributary_save_alone", skippingUnsent: false)
        ),
        (
            "v15-unsent-payloads",
            // `tributary_save_guessed`: `tributary_save_alone` (v14) taking a page whose payloads
            // came only for the records the client guessed need a write (PostgresStore.StoredHashes):
            // the others' ends repeat the end before theirs (an empty payload — no record's
            // canonical JSON is empty). When the check finds a record to write whose payload did not
            // come, the call answers as when the page was not aligned: the lookup's answer, its
            // writes left to a second call. A function of its own, so that a database where v14's
            // function stood without this check could never cut an empty payload for a client that
            // leaves some out: the call would fail instead. And `tributary_check_aligned` again
            // (v12's `tributary_check_page`), finding a changed page's records to write by a loop
            // over the two hashes arrays instead of `unnest`, about five times faster; the same answer.
            saveAlone("CREATE FUNCTION tributary_save_guessed", skippingUnsent: true) + "\n" + checkAlignedLoop
        ),
        (
            "v16-skipping-walk",
            // `tributary_check_skipping` (v13) replaced by one walk over the page's span: the span's
            // rows read once, in feed order, as many as can hold the page and the rows it may skip
            // (a quarter more than the page, and 16, as v13 read); a walk takes each row that is the
            // page's next record in its place, and any other as skipped while among those first
            // rows — past them, or with records left over, the page is not aligned. The page's rows
            // are then the span's runs between the skipped ones (cut out as slices when up to 48,
            // filtered by a mask when more), their ids compared with the page's as arrays; the
            // records to write come from the two hash arrays when every row is live and not
            // pruned and the page's hashes are a plain list (v13's `unnest` otherwise). The ranges
            // and stamps are v13's statements. The same answer and the same writes as v13's for
            // every input (a test compares the two on random rows and pages, and on hash arrays the
            // store never sends: with a NULL, numbered from 0, of two dimensions): ~2.1 ms against
            // ~3.7–3.9 ms for a page of 1,000 that skips ten of its span's rows, which v13 read
            // twice, the first time through an anti-join with the page's ids (docs/BENCHMARKS.md,
            // twenty-sixth round).
            """
            \(skippingWalkFront)
            \(skippingMarks)
            """
        ),
    ]

    /// v13's `tributary_check_skipping` up to its seen marks, as v13 ships it: the span's skipped
    /// rows found by an anti-join of its first rows with the page's ids, the others read again and
    /// compared with the page as arrays, the records to write found by `unnest`.
    static let checkSkippingFront = """
            CREATE FUNCTION tributary_check_skipping(p_dataset BIGINT, p_generation BIGINT, p_ids TEXT[], p_hashes BIGINT[], p_min_records BIGINT)
            RETURNS BIGINT[] LANGUAGE plpgsql SET jit = off SET plan_cache_mode = force_generic_plan AS $$
            DECLARE
                n_ INT := cardinality(p_ids);
                lo_seq_ BIGINT;
                lo_id_ BIGINT;
                hi_seq_ BIGINT;
                hi_id_ BIGINT;
                skip_rns_ INT[];
                skip_seqs_ BIGINT[];
                skip_ids_ BIGINT[];
                aligned_ BOOLEAN;
                hashes_ BIGINT[];
                seqs_ BIGINT[];
                row_ids_ BIGINT[];
                deleted_ BOOLEAN[];
                pruned_ BOOLEAN[];
                unseen_ BOOLEAN[];
                writes_ BIGINT[];
                fresh_ BOOLEAN[];
                firsts_ INT[];
                lasts_ INT[];
                overlaps_ BOOLEAN;
            BEGIN
                IF cardinality(p_hashes) IS DISTINCT FROM n_ THEN
                    RETURN NULL;
                END IF;
                SELECT seq, id INTO lo_seq_, lo_id_ FROM records WHERE dataset_id = p_dataset AND external_id = p_ids[1];
                IF NOT FOUND THEN
                    RETURN NULL;
                END IF;
                SELECT seq, id INTO hi_seq_, hi_id_ FROM records WHERE dataset_id = p_dataset AND external_id = p_ids[n_];
                IF NOT FOUND OR (hi_seq_, hi_id_) < (lo_seq_, lo_id_) THEN
                    RETURN NULL;
                END IF;
                -- The rows of the page's span that it does not hold, numbered in the span. Only its first rows,
                -- a quarter more than the page and 16, are read: a skipped row past them is not found, and is
                -- then among the rows compared with the page below, which do not match it.
                SELECT array_agg(k.rn::int ORDER BY k.rn), array_agg(k.seq ORDER BY k.rn), array_agg(k.id ORDER BY k.rn)
                INTO skip_rns_, skip_seqs_, skip_ids_
                FROM (SELECT row_number() OVER (ORDER BY x.seq, x.id) AS rn, x.seq, x.id, x.external_id
                    FROM (SELECT r.seq, r.id, r.external_id FROM records r
                        WHERE r.dataset_id = p_dataset AND (r.seq, r.id) >= (lo_seq_, lo_id_) AND (r.seq, r.id) <= (hi_seq_, hi_id_)
                        ORDER BY r.seq, r.id LIMIT n_ + n_ / 4 + 16) x) k
                WHERE NOT EXISTS (SELECT 1 FROM unnest(p_ids) AS e(external_id) WHERE e.external_id = k.external_id);
                IF skip_rns_ IS NULL THEN
                    RETURN NULL;
                END IF;
                -- The span's other rows, in feed order, must be the page's records in its order (the rows come to
                -- the aggregates in the scan's order; that they came in feed order is checked below).
                SELECT array_agg(s.external_id) = p_ids, array_agg(s.hash), array_agg(s.seq), array_agg(s.id),
                    array_agg(s.deleted_at IS NOT NULL), array_agg(s.pruned_at IS NOT NULL), array_agg(s.seen_generation < p_generation)
                INTO aligned_, hashes_, seqs_, row_ids_, deleted_, pruned_, unseen_
                FROM (SELECT r.external_id, r.hash, r.seq, r.id, r.deleted_at, r.pruned_at, r.seen_generation FROM records r
                    WHERE r.dataset_id = p_dataset AND (r.seq, r.id) >= (lo_seq_, lo_id_) AND (r.seq, r.id) <= (hi_seq_, hi_id_)
                        AND r.id <> ALL (skip_ids_)
                    ORDER BY r.seq, r.id LIMIT n_ + 1) s;
                IF aligned_ IS NOT TRUE OR EXISTS (SELECT 1 FROM generate_series(1, n_ - 1) AS o
                    WHERE (seqs_[o], row_ids_[o]) >= (seqs_[o + 1], row_ids_[o + 1])) THEN
                    RETURN NULL;
                END IF;
                -- Its records to write, by position and kind; and which of its unchanged records are not yet seen.
                SELECT coalesce(array_agg(u.o * 4 + CASE WHEN u.d THEN 1 WHEN u.h <> u.p THEN 0 ELSE 2 END ORDER BY u.o)
                        FILTER (WHERE u.d OR u.pr OR u.h <> u.p), '{}'),
                    -- (in the unnest's order: it only weighs whether a run is worth a range)
                    array_agg(u.un AND NOT (u.d OR u.pr OR u.h <> u.p))
                INTO writes_, fresh_
                FROM unnest(hashes_, p_hashes, deleted_, pruned_, unseen_) WITH ORDINALITY AS u(h, p, d, pr, un, o);
            """

    /// v16's `tributary_check_skipping` up to its seen marks: one read of the span, walked against
    /// the page's ids (the migration's comment says how).
    static let skippingWalkFront = """
            CREATE OR REPLACE FUNCTION tributary_check_skipping(p_dataset BIGINT, p_generation BIGINT, p_ids TEXT[], p_hashes BIGINT[], p_min_records BIGINT)
            RETURNS BIGINT[] LANGUAGE plpgsql SET jit = off SET plan_cache_mode = force_generic_plan AS $$
            DECLARE
                n_ INT := cardinality(p_ids);
                read_ INT := n_ + n_ / 4 + 16;
                lo_seq_ BIGINT;
                lo_id_ BIGINT;
                hi_seq_ BIGINT;
                hi_id_ BIGINT;
                span_ids_ TEXT[];
                span_hashes_ BIGINT[];
                span_seqs_ BIGINT[];
                span_row_ids_ BIGINT[];
                span_deleted_ BOOLEAN[];
                span_pruned_ BOOLEAN[];
                span_unseen_ BOOLEAN[];
                m_ INT;
                k_ INT := 1;
                a_ INT := 1;
                keep_ BOOLEAN[];
                skip_rns_ INT[] := '{}';
                skip_seqs_ BIGINT[] := '{}';
                skip_ids_ BIGINT[] := '{}';
                ids_ TEXT[] := '{}';
                hashes_ BIGINT[] := '{}';
                seqs_ BIGINT[] := '{}';
                row_ids_ BIGINT[] := '{}';
                deleted_ BOOLEAN[] := '{}';
                pruned_ BOOLEAN[] := '{}';
                unseen_ BOOLEAN[] := '{}';
                writes_ BIGINT[] := '{}';
                plain_ BOOLEAN;
                fresh_ BOOLEAN[];
                firsts_ INT[];
                lasts_ INT[];
                overlaps_ BOOLEAN;
            BEGIN
                IF cardinality(p_hashes) IS DISTINCT FROM n_ THEN
                    RETURN NULL;
                END IF;
                SELECT seq, id INTO lo_seq_, lo_id_ FROM records WHERE dataset_id = p_dataset AND external_id = p_ids[1];
                IF NOT FOUND THEN
                    RETURN NULL;
                END IF;
                SELECT seq, id INTO hi_seq_, hi_id_ FROM records WHERE dataset_id = p_dataset AND external_id = p_ids[n_];
                IF NOT FOUND OR (hi_seq_, hi_id_) < (lo_seq_, lo_id_) THEN
                    RETURN NULL;
                END IF;
                -- The span's rows in feed order, as many as can hold the page and its skipped rows (the rows come to
                -- the aggregates in the scan's order; that they came in feed order is checked below).
                SELECT array_agg(s.external_id), array_agg(s.hash), array_agg(s.seq), array_agg(s.id),
                    array_agg(s.deleted_at IS NOT NULL), array_agg(s.pruned_at IS NOT NULL), array_agg(s.seen_generation < p_generation)
                INTO span_ids_, span_hashes_, span_seqs_, span_row_ids_, span_deleted_, span_pruned_, span_unseen_
                FROM (SELECT r.external_id, r.hash, r.seq, r.id, r.deleted_at, r.pruned_at, r.seen_generation FROM records r
                    WHERE r.dataset_id = p_dataset AND (r.seq, r.id) >= (lo_seq_, lo_id_) AND (r.seq, r.id) <= (hi_seq_, hi_id_)
                    ORDER BY r.seq, r.id LIMIT n_ + read_) s;
                m_ := coalesce(cardinality(span_ids_), 0);
                -- One walk: a row that is the page's next record takes its place; any other is skipped, if among the
                -- span's first rows (a quarter more than the page, and 16), and otherwise the page is not aligned.
                FOR i_ IN 1..m_ LOOP
                    IF i_ > 1 AND (span_seqs_[i_ - 1], span_row_ids_[i_ - 1]) >= (span_seqs_[i_], span_row_ids_[i_]) THEN
                        RETURN NULL;
                    END IF;
                    IF span_ids_[i_] = p_ids[k_] THEN
                        k_ := k_ + 1;
                    ELSIF i_ <= read_ THEN
                        skip_rns_ := skip_rns_ || i_;
                        skip_seqs_ := skip_seqs_ || span_seqs_[i_];
                        skip_ids_ := skip_ids_ || span_row_ids_[i_];
                    ELSE
                        RETURN NULL;
                    END IF;
                END LOOP;
                IF k_ <= n_ OR cardinality(skip_rns_) = 0 THEN
                    RETURN NULL;
                END IF;
                -- The page's rows: the span's runs between the skipped rows, cut out (few skipped) or filtered (many).
                IF cardinality(skip_rns_) <= 48 THEN
                    FOREACH k_ IN ARRAY skip_rns_ || (m_ + 1) LOOP
                        ids_ := ids_ || span_ids_[a_:k_ - 1];
                        hashes_ := hashes_ || span_hashes_[a_:k_ - 1];
                        seqs_ := seqs_ || span_seqs_[a_:k_ - 1];
                        row_ids_ := row_ids_ || span_row_ids_[a_:k_ - 1];
                        deleted_ := deleted_ || span_deleted_[a_:k_ - 1];
                        pruned_ := pruned_ || span_pruned_[a_:k_ - 1];
                        unseen_ := unseen_ || span_unseen_[a_:k_ - 1];
                        a_ := k_ + 1;
                    END LOOP;
                ELSE
                    keep_ := array_fill(true, ARRAY[m_]);
                    FOREACH k_ IN ARRAY skip_rns_ LOOP
                        keep_[k_] := false;
                    END LOOP;
                    SELECT array_agg(u.e) FILTER (WHERE u.k), array_agg(u.h) FILTER (WHERE u.k), array_agg(u.s) FILTER (WHERE u.k),
                        array_agg(u.r) FILTER (WHERE u.k), array_agg(u.d) FILTER (WHERE u.k), array_agg(u.pr) FILTER (WHERE u.k),
                        array_agg(u.un) FILTER (WHERE u.k)
                    INTO ids_, hashes_, seqs_, row_ids_, deleted_, pruned_, unseen_
                    FROM unnest(span_ids_, span_hashes_, span_seqs_, span_row_ids_, span_deleted_, span_pruned_, span_unseen_, keep_)
                        AS u(e, h, s, r, d, pr, un, k);
                END IF;
                IF ids_ IS DISTINCT FROM p_ids THEN
                    RETURN NULL;
                END IF;
                -- Its records to write, by position and kind; and which of its unchanged records are not yet seen:
                -- by comparing the hash arrays when every row is live and the page's hashes are a plain list
                -- (numbered from 1, no NULL), else as v13 did.
                plain_ := NOT (true = ANY (deleted_) OR true = ANY (pruned_)) AND array_ndims(p_hashes) = 1 AND array_lower(p_hashes, 1) = 1;
                IF plain_ THEN
                    plain_ := array_position(p_hashes, NULL) IS NULL;
                END IF;
                IF plain_ IS NOT TRUE THEN
                    SELECT coalesce(array_agg(u.o * 4 + CASE WHEN u.d THEN 1 WHEN u.h <> u.p THEN 0 ELSE 2 END ORDER BY u.o)
                            FILTER (WHERE u.d OR u.pr OR u.h <> u.p), '{}'),
                        array_agg(u.un AND NOT (u.d OR u.pr OR u.h <> u.p) ORDER BY u.o)
                    INTO writes_, fresh_
                    FROM unnest(hashes_, p_hashes, deleted_, pruned_, unseen_) WITH ORDINALITY AS u(h, p, d, pr, un, o);
                ELSE
                    fresh_ := unseen_;
                    IF hashes_ <> p_hashes THEN
                        FOR o_ IN 1..n_ LOOP
                            IF hashes_[o_] <> p_hashes[o_] THEN
                                writes_ := writes_ || (o_ * 4)::bigint;
                                fresh_[o_] := false;
                            END IF;
                        END LOOP;
                    END IF;
                END IF;
            """

    /// The end of `tributary_check_skipping` since v13, the same in v16: the page's runs between
    /// its skipped rows made seen ranges or stamped, from the arrays the front built (`seqs_`,
    /// `row_ids_`, `unseen_`, `fresh_`, `skip_rns_`, `skip_seqs_`, `skip_ids_`, `writes_`).
    static let skippingMarks = """
                IF NOT (true = ANY (unseen_)) THEN
                    RETURN writes_;
                END IF;
                -- The page's runs between the rows it skips (page positions first…last; the j-th skipped row is
                -- preceded by skip_rns_[j] - j of the page's records) that have enough unchanged records not yet
                -- seen to become seen ranges, unless a range of the window overlaps the page's span.
                overlaps_ := coalesce((SELECT (g.hi_seq, g.hi_id) >= (lo_seq_, lo_id_) FROM seen_ranges g
                    WHERE g.dataset_id = p_dataset AND g.generation = p_generation AND (g.lo_seq, g.lo_id) <= (hi_seq_, hi_id_)
                    ORDER BY g.lo_seq DESC, g.lo_id DESC LIMIT 1), false);
                IF NOT overlaps_ THEN
                    SELECT array_agg(b.first ORDER BY b.j), array_agg(b.last ORDER BY b.j) INTO firsts_, lasts_
                    FROM (SELECT j, CASE WHEN j = 1 THEN 1 ELSE skip_rns_[j - 1] - (j - 1) + 1 END AS first,
                            CASE WHEN j > cardinality(skip_rns_) THEN n_ ELSE skip_rns_[j] - j END AS last
                        FROM generate_series(1, cardinality(skip_rns_) + 1) AS j) b
                    WHERE b.first <= b.last AND (SELECT count(*) FROM unnest(fresh_[b.first:b.last]) AS f(v) WHERE f.v) >= p_min_records;
                    -- A range holds only the page's records: were a skipped row in one, nothing is written.
                    IF EXISTS (SELECT 1 FROM unnest(firsts_, lasts_) AS r(a, b), unnest(skip_seqs_, skip_ids_) AS k(seq, id)
                        WHERE (k.seq, k.id) >= (seqs_[r.a], row_ids_[r.a]) AND (k.seq, k.id) <= (seqs_[r.b], row_ids_[r.b])) THEN
                        RETURN NULL;
                    END IF;
                    IF firsts_ IS NOT NULL THEN
                        DELETE FROM seen_ranges WHERE dataset_id = p_dataset AND generation < p_generation;
                        INSERT INTO seen_ranges(dataset_id, lo_seq, lo_id, hi_seq, hi_id, generation)
                        SELECT p_dataset, seqs_[r.a], row_ids_[r.a], seqs_[r.b], row_ids_[r.b], p_generation FROM unnest(firsts_, lasts_) AS r(a, b);
                    END IF;
                END IF;
                -- Every other record of the page not yet seen is stamped (the records to write are stamped again
                -- by their write): the positions between the ranges.
                UPDATE records r SET seen_generation = p_generation
                FROM (SELECT seqs_[o] AS seq, row_ids_[o] AS id
                    FROM (SELECT coalesce(lag(g.b) OVER (ORDER BY g.a), 0) + 1 AS a, g.a - 1 AS b
                        FROM unnest(firsts_ || (n_ + 1), lasts_ || n_) AS g(a, b)) gap,
                        generate_series(gap.a, gap.b) AS o
                    WHERE unseen_[o]) t
                WHERE r.dataset_id = p_dataset AND r.seq = t.seq AND r.id = t.id AND r.seen_generation < p_generation;
                RETURN writes_;
            END
            $$;
            """

    /// v12's `tributary_check_page` (renamed `tributary_check_aligned` by v13), as v12 ships it.
    static let checkPage = """
            CREATE FUNCTION tributary_check_page(p_dataset BIGINT, p_generation BIGINT, p_ids TEXT[], p_hashes BIGINT[], p_min_records BIGINT)
            RETURNS BIGINT[] LANGUAGE plpgsql SET jit = off SET plan_cache_mode = force_generic_plan AS $$
            DECLARE
                lo_seq_ BIGINT;
                lo_id_ BIGINT;
                hi_seq_ BIGINT;
                hi_id_ BIGINT;
                aligned_ BOOLEAN;
                hashes_ BIGINT[];
                live_ BOOLEAN;
                unseen_ BIGINT;
                fresh_ BIGINT;
                writes_ BIGINT[] := '{}';
            BEGIN
                SELECT seq, id INTO lo_seq_, lo_id_ FROM records WHERE dataset_id = p_dataset AND external_id = p_ids[1];
                IF NOT FOUND THEN
                    RETURN NULL;
                END IF;
                -- The rows come to the aggregates in the scan's order (a sorted subquery, no join): were
                -- they ever not to, the ids would differ and the page be looked up record by record.
                SELECT array_agg(s.external_id) = p_ids, array_agg(s.hash), bool_and(s.deleted_at IS NULL AND s.pruned_at IS NULL),
                    count(*) FILTER (WHERE s.seen_generation < p_generation)
                INTO aligned_, hashes_, live_, unseen_
                FROM (SELECT external_id, hash, deleted_at, pruned_at, seen_generation FROM records r
                    WHERE r.dataset_id = p_dataset AND (r.seq, r.id) >= (lo_seq_, lo_id_) ORDER BY r.seq, r.id LIMIT cardinality(p_ids)) s;
                IF aligned_ IS NOT TRUE THEN
                    RETURN NULL;
                END IF;
                -- fresh_: the unchanged records not yet seen (at least so many), for the range.
                fresh_ := unseen_;
                IF live_ AND hashes_ IS DISTINCT FROM p_hashes THEN
                    -- Changed records alone: found by comparing the hashes.
                    SELECT coalesce(array_agg(u.o * 4 ORDER BY u.o), '{}') INTO writes_
                    FROM unnest(hashes_, p_hashes) WITH ORDINALITY AS u(h, p, o) WHERE u.h IS DISTINCT FROM u.p;
                    fresh_ := unseen_ - cardinality(writes_);
                ELSIF NOT live_ THEN
                    SELECT coalesce(array_agg(s.o * 4 + CASE WHEN s.deleted_at IS NOT NULL THEN 1 WHEN s.hash <> p_hashes[s.o] THEN 0 ELSE 2 END ORDER BY s.o)
                            FILTER (WHERE s.deleted_at IS NOT NULL OR s.pruned_at IS NOT NULL OR s.hash <> p_hashes[s.o]), '{}'),
                        count(*) FILTER (WHERE s.seen_generation < p_generation AND s.deleted_at IS NULL AND s.pruned_at IS NULL AND s.hash = p_hashes[s.o])
                    INTO writes_, fresh_
                    FROM (SELECT row_number() OVER (ORDER BY r.seq, r.id) AS o, r.hash, r.deleted_at, r.pruned_at, r.seen_generation FROM records r
                        WHERE r.dataset_id = p_dataset AND (r.seq, r.id) >= (lo_seq_, lo_id_) ORDER BY r.seq, r.id LIMIT cardinality(p_ids)) s;
                END IF;
                IF unseen_ = 0 THEN
                    RETURN writes_;
                END IF;
                -- The span's last row is the page's last record.
                SELECT seq, id INTO hi_seq_, hi_id_ FROM records WHERE dataset_id = p_dataset AND external_id = p_ids[cardinality(p_ids)];
                IF fresh_ >= p_min_records AND NOT coalesce((SELECT (g.hi_seq, g.hi_id) >= (lo_seq_, lo_id_) FROM seen_ranges g
                    WHERE g.dataset_id = p_dataset AND g.generation = p_generation AND (g.lo_seq, g.lo_id) <= (hi_seq_, hi_id_)
                    ORDER BY g.lo_seq DESC, g.lo_id DESC LIMIT 1), false) THEN
                    DELETE FROM seen_ranges WHERE dataset_id = p_dataset AND generation < p_generation;
                    INSERT INTO seen_ranges(dataset_id, lo_seq, lo_id, hi_seq, hi_id, generation) VALUES (p_dataset, lo_seq_, lo_id_, hi_seq_, hi_id_, p_generation);
                ELSE
                    -- Every row of the span not yet seen: the records to write are stamped again by their write.
                    UPDATE records SET seen_generation = p_generation
                    WHERE dataset_id = p_dataset AND (seq, id) >= (lo_seq_, lo_id_) AND (seq, id) <= (hi_seq_, hi_id_) AND seen_generation < p_generation;
                END IF;
                RETURN writes_;
            END
            $$;
            """

    /// `tributary_check_aligned` since v15: v12's, its changed records found by a loop over the two
    /// hashes arrays instead of `unnest(…) WITH ORDINALITY` — ~0.13 ms against ~0.67 ms for a page
    /// of 1,000 with ten changed (docs/BENCHMARKS.md, twenty-fourth round). Like `unnest`, it
    /// compares as far as the longer array, a missing element NULL.
    static var checkAlignedLoop: String {
        let unnest = """
                    SELECT coalesce(array_agg(u.o * 4 ORDER BY u.o), '{}') INTO writes_
                    FROM unnest(hashes_, p_hashes) WITH ORDINALITY AS u(h, p, o) WHERE u.h IS DISTINCT FROM u.p;
            """
        let loop = """
                    FOR o_ IN 1..greatest(cardinality(hashes_), cardinality(p_hashes)) LOOP
                        IF hashes_[o_] IS DISTINCT FROM p_hashes[o_] THEN
                            writes_ := writes_ || (o_ * 4)::bigint;
                        END IF;
                    END LOOP;
            """
        return checkPage
            .replacingOccurrences(of: "CREATE FUNCTION tributary_check_page(", with: "CREATE OR REPLACE FUNCTION tributary_check_aligned(")
            .replacingOccurrences(of: unnest, with: loop)
    }

    /// `tributary_save_alone`'s statement (v14's, its text as that release shipped it), or, as
    /// `tributary_save_guessed` (v15, `skippingUnsent`), with the check that every record to write
    /// came with its payload. `create` is the statement's head up to the function's name.
    static func saveAlone(_ create: String, skippingUnsent: Bool) -> String {
        let unsent =
            skippingUnsent
            ? """

                -- A record to write whose payload did not come (v15): its end is not past the one before.
                IF EXISTS (SELECT 1 FROM unnest(writes) AS v WHERE p_ends[v / 4] <= coalesce(p_ends[v / 4 - 1], 0)) THEN
                    RETURN;
                END IF;
            """ : ""
        return """
            \(create)(
                p_run BIGINT, p_token BIGINT, p_lease_offset BIGINT, p_webhook TEXT, p_model TEXT, p_ids TEXT[], p_hashes BIGINT[],
                p_min_records BIGINT, p_checking BOOLEAN, p_checkpoint TEXT, p_saves_checkpoint BOOLEAN,
                p_now BIGINT, p_payloads BYTEA, p_ends INT[],
                OUT writes BIGINT[], OUT aligned BOOLEAN, OUT results TEXT, OUT variant_pk BIGINT, OUT run_generation BIGINT,
                OUT dataset_id BIGINT, OUT last_seq BIGINT, OUT last_write_at BIGINT, OUT generation BIGINT,
                OUT saved BOOLEAN, OUT new_results TEXT, OUT record_count BIGINT)
            LANGUAGE plpgsql SET jit = off AS $$
            DECLARE
                dataset_ BIGINT;
                ids_ TEXT[];
                hashes_ BIGINT[];
                payloads_ TEXT[];
                expected_added_ BIGINT;
                expected_updated_ BIGINT;
                applied_ BOOLEAN;
                counts_ JSONB;
            BEGIN
                SELECT l.writes, l.aligned, l.results, l.variant_pk, l.run_generation, l.dataset_id, l.last_seq, l.last_write_at, l.generation
                INTO writes, aligned, results, variant_pk, run_generation, dataset_, last_seq, last_write_at, generation
                FROM tributary_look_up_alone(p_run, p_token, p_lease_offset, p_webhook, p_model, p_ids, p_hashes,
                    p_min_records, p_checking, p_checkpoint, p_saves_checkpoint) l;
                dataset_id := dataset_;
                IF dataset_ IS NULL THEN
                    RETURN;
                END IF;
                saved := cardinality(writes) = 0;
                IF saved OR NOT aligned OR cardinality(p_ends) IS DISTINCT FROM cardinality(p_ids)
                    OR p_ends[cardinality(p_ends)] IS DISTINCT FROM octet_length(p_payloads) THEN
                    RETURN;
                END IF;\(unsent)
                -- Record o's payload: the bytes after record o - 1's end, up to its own (p_ends[0] is NULL).
                SELECT array_agg(p_ids[w.o] ORDER BY w.o), array_agg(p_hashes[w.o] ORDER BY w.o),
                    array_agg(convert_from(substring(p_payloads FROM coalesce(p_ends[w.o - 1], 0) + 1 FOR p_ends[w.o] - coalesce(p_ends[w.o - 1], 0)), 'UTF8')
                        ORDER BY w.o),
                    count(*) FILTER (WHERE w.kind = 1), count(*) FILTER (WHERE w.kind = 0)
                INTO ids_, hashes_, payloads_, expected_added_, expected_updated_
                FROM (SELECT v / 4 AS o, v % 4 AS kind FROM unnest(writes) AS v) w;
                IF expected_added_ + expected_updated_ > 0 THEN
                    counts_ := coalesce(results::jsonb -> p_model, '{}'::jsonb);
                    new_results := (results::jsonb || jsonb_build_object(p_model, jsonb_build_object(
                        'added', coalesce((counts_ ->> 'added')::bigint, 0) + expected_added_,
                        'updated', coalesce((counts_ ->> 'updated')::bigint, 0) + expected_updated_,
                        'deleted', coalesce((counts_ ->> 'deleted')::bigint, 0))))::text;
                END IF;
                -- v13's upsert alone, under the locks this call holds: its checks hold, and it refuses
                -- other counts than the kinds'.
                SELECT u.applied, u.record_count INTO applied_, record_count
                FROM tributary_upsert_alone(p_run, p_token, p_lease_offset, p_webhook, results, new_results,
                    dataset_, last_seq, last_write_at, last_seq + 1, greatest(p_now, last_write_at + 1), generation,
                    variant_pk, run_generation, p_checkpoint, p_saves_checkpoint,
                    ids_, hashes_, payloads_, expected_added_, expected_updated_) u;
                IF NOT applied_ THEN
                    new_results := NULL;
                    RETURN;
                END IF;
                saved := true;
            END
            $$;
            """
    }

    /// The partitions of `records`; fillfactor leaves room for in-place (HOT) updates of unchanged rows.
    static var partitions: String {
        (0..<recordPartitions).map { index in
            "CREATE TABLE records_p\(index) PARTITION OF records FOR VALUES WITH (MODULUS \(recordPartitions), REMAINDER \(index)) WITH (fillfactor = 90);"
        }.joined(separator: "\n")
    }

    /// A migration's statements: split at semicolons that end a line, except inside a `$$`-quoted
    /// function body (the migrations keep that form; comment lines are dropped).
    static func statements(of sql: String) -> [String] {
        var statements: [String] = []
        var current: [Substring] = []
        var inBody = false
        for line in sql.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("--") { continue }
            current.append(line)
            if line.ranges(of: "$$").count % 2 == 1 { inBody.toggle() }
            if !inBody, trimmed.hasSuffix(";") {
                statements.append(String(current.joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines).dropLast()))
                current = []
            }
        }
        statements.append(current.joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines))
        return statements.filter { !$0.isEmpty }
    }

    /// Applies the missing migrations over a connection of its own (the store's pool need not run yet,
    /// so a process migrates before its services start).
    static func migrate(_ store: PostgresStore, allowingUnfinishedCopy: Bool = false) async throws {
        let logger = store.logger
        let db: PostgresConnection
        do {
            db = try await PostgresConnection.connect(configuration: try store.url.connectionConfiguration(), id: 0, logger: logger)
        } catch let error as PSQLError {
            throw PostgresStore.described(error)
        }
        do {
            try await db.query("BEGIN", logger: logger)
            try await db.query("SELECT pg_advisory_xact_lock(\(PostgresStore.Lock.migrations.rawValue))", logger: logger)
            try await db.query(
                "CREATE TABLE IF NOT EXISTS tributary_migrations (name TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)", logger: logger)
            let applied = Set(try await db.all("SELECT name FROM tributary_migrations", logger).map { try $0.string("name") })
            let known = Set(migrations.map(\.name))
            if let unknown = applied.subtracting(known).sorted().first {
                throw PostgresStoreError(
                    sqlState: nil,
                    message: "The database was migrated by a newer Tributary (migration '\(unknown)' is unknown to this version); upgrade this process instead.")
            }
            for migration in migrations where !applied.contains(migration.name) {
                // One statement at a time (the extended protocol takes one per message); no bound values.
                for statement in statements(of: migration.sql) {
                    try await db.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await db.query(
                    "INSERT INTO tributary_migrations(name, applied_at) VALUES (\(migration.name), \(store.clock().microseconds))", logger: logger)
            }
            // A database `tributary migrate` is still filling is not served from: half the data is missing.
            if !allowingUnfinishedCopy,
                try await db.one("SELECT to_regclass('tributary_copy') IS NOT NULL AS present", logger)?.bool("present") == true,
                try await db.one("SELECT 1 AS unfinished FROM tributary_copy WHERE finished_at IS NULL", logger) != nil
            {
                throw PostgresStoreError(
                    sqlState: nil,
                    message: "This database is being filled by `tributary migrate`, which has not finished: run the same migrate command again to complete it before serving from it.")
            }
            try await db.query("COMMIT", logger: logger)
        } catch {
            try? await db.close()
            if let error = error as? PSQLError { throw PostgresStore.described(error) }
            throw error
        }
        try await db.close()
    }
}
