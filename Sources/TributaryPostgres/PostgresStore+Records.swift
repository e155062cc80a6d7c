import PostgresNIO
import TributaryCore
import TributaryStore

extension PostgresStore {
    // MARK: Writes

    public func saveRecords(_ records: [PreparedRecord], model: String, checkpoint: Checkpoint?, for lease: RunLease) async throws -> ModelResult {
        // A literal checkpoint is checked before anything is written (see saveCheckpoint).
        let checkpoint = try checkpoint?.validated()
        if records.isEmpty {
            if let checkpoint { try await saveCheckpoint(checkpoint, for: lease) }
            return ModelResult()
        }
        let unique = records.lastOccurrencePerId
        let (result, dataset) = try await savePage(unique, model: model, checkpoint: checkpoint, for: lease)
        // Its rows hold these hashes now, whichever way it went (StoredHashes).
        storedHashes.record(unique, model: model, for: lease, dataset: dataset)
        return result
    }

    /// Saves a page of records with unique ids the way the run's pages go (a plain insert, a
    /// lookup alone, or the full path); the counts, and the dataset they were saved into.
    private func savePage(
        _ unique: [PreparedRecord], model: String, checkpoint: Checkpoint?, for lease: RunLease
    ) async throws -> (ModelResult, dataset: Int64) {
        let insertingOnly = !plainInsertRefusals.contains(runId: lease.runId, model: model)
        do {
            if insertingOnly, let expected = plainInsertHeads.expected(runId: lease.runId, token: lease.token, model: model),
                let result = try await insertPage(unique, model: model, checkpoint: checkpoint, for: lease, expecting: expected)
            {
                return (result, expected.dataset.id)
            }
            var lookedUp: [Int]?
            // After a page that needed no write or was aligned with its rows: likely another (a
            // full refresh's pages) — unless the last page had most of its records to write.
            if lookingUpAlone.contains(runId: lease.runId, model: model), !writingPages.contains(runId: lease.runId, model: model) {
                let payloads = payloadsToSend(unique, model: model, for: lease)
                switch try await lookUpPageAlone(unique, model: model, checkpoint: checkpoint, for: lease, payloads: payloads) {
                case .saved(let result, let dataset):
                    return (result, dataset)
                case .toWrite(let lookup, let head):
                    if let result = try await upsertPageAlone(unique, lookup, model: model, checkpoint: checkpoint, for: lease, after: head) {
                        noteWritten(lookup.indices.count, of: unique.count, runId: lease.runId, model: model)
                        return (result, head.dataset.id)
                    }
                    lookedUp = lookup.indices
                case .refused:
                    lookingUpAlone.unmark(runId: lease.runId, model: model)
                }
            }
            return try await saveRecords(unique, model: model, checkpoint: checkpoint, for: lease, insertingOnly: insertingOnly, lookedUp: lookedUp)
        } catch is TakenIdOnInsert {
            // An id of the page was taken after all: the transaction rolled back; the full path, for
            // this page and the run's later ones.
            plainInsertRefusals.mark(runId: lease.runId, model: model)
            return try await saveRecords(unique, model: model, checkpoint: checkpoint, for: lease, insertingOnly: false, lookedUp: nil)
        }
    }

    /// What a page looked up alone sends with its lookup: when the dataset's last run is known
    /// (``StoredHashes``), the payloads of the records it did not leave as they are now — none
    /// when there is none; otherwise, after a page that had records to write (``changingPages``),
    /// every payload. A guess that more than half the page changed is taken for no guess (the set
    /// known is likely a small run's: an incremental run's, a webhook execution's), and the page
    /// goes as without one. Nil past ``PagePayloads/limit``.
    func payloadsToSend(_ records: [PreparedRecord], model: String, for lease: RunLease) -> PagePayloads? {
        if let likely = storedHashes.likelyWrites(records, model: model, for: lease), likely.count * 2 <= records.count {
            return likely.isEmpty ? nil : PagePayloads(records, only: likely)
        }
        return changingPages.contains(runId: lease.runId, model: model) ? PagePayloads(records) : nil
    }

    /// A page's ids and hashes as two bound arrays (``PageColumn``): all a lookup sends.
    struct PageKeys {
        let ids: PageColumn
        let hashes: PageColumn

        init(_ records: [PreparedRecord]) throws(TributaryError) {
            ids = try PageColumn(records, .ids)
            hashes = try PageColumn(records, .hashes)
        }
    }

    /// A page's records as the three bound arrays of its statements (one round trip per page,
    /// whatever its size): ids, hashes and canonical JSON payloads (``PageColumn``).
    struct PageArrays {
        let ids: PageColumn
        let hashes: PageColumn
        let payloads: PageColumn

        init(_ records: [PreparedRecord]) throws(TributaryError) {
            ids = try PageColumn(records, .ids)
            hashes = try PageColumn(records, .hashes)
            payloads = try PageColumn(records, .payloads)
        }
    }

    /// A page's canonical JSON payloads back to back in one buffer (bound as one `bytea`), and
    /// where each ends (bound as `int4[]`): the form `tributary_save_guessed` cuts the records it
    /// writes from. A record whose payload is not sent has its end at the end before it (since
    /// migration `v15-unsent-payloads`; no record's canonical JSON is empty).
    struct PagePayloads {
        /// The most payload bytes a page sends with its lookup (64 KiB). Its records to write are
        /// usually a few of its records, and the second call saved is one round trip: a page's
        /// payloads cost more than that once they are large for the link (64 KiB take ~0.5 ms on
        /// 1 Gb/s; docs/BENCHMARKS.md, eighteenth round).
        static let limit = 64 << 10

        let bytes: ByteBuffer
        let ends: [Int32]
        /// How many records' payloads it holds.
        let sent: Int

        /// Every record's payload; nil when they come to more than ``limit`` bytes.
        init?(_ records: [PreparedRecord]) {
            self.init(records, only: records.indices)
        }

        /// The payloads of the records at `sent` (indices in increasing order), the others' left
        /// out; nil when they come to more than ``limit`` bytes.
        init?(_ records: [PreparedRecord], only sent: some Collection<Int>) {
            var total = 0
            for index in sent {
                total += records[index].json.count
                if total > Self.limit { return nil }
            }
            var bytes = ByteBufferAllocator().buffer(capacity: total)
            var ends = [Int32](repeating: 0, count: records.count)
            self.sent = sent.count
            var next = sent.makeIterator()
            var sending = next.next()
            for (index, record) in records.enumerated() {
                if index == sending {
                    bytes.writeBytes(record.json)
                    sending = next.next()
                }
                ends[index] = Int32(truncatingIfNeeded: bytes.writerIndex)
            }
            (self.bytes, self.ends) = (bytes, ends)
        }
    }

    /// The plain insert of a page believed all new found one of its ids taken.
    private struct TakenIdOnInsert: Error {}

    /// A first load's next page as one autocommit statement (see ``PlainInsertHeads``): the run row
    /// locked and fenced in SQL — running, under this lease's token, its lease not run out on the
    /// database's clock, as ``RunFence`` checks — and both it and the dataset row exactly as the
    /// run's previous page left them; then the insert, the head, the checkpoint and the run's counts,
    /// each only if those checks held. Nil when they did not (nothing was written; this attempt's later
    /// pages of `model` take the transaction, which names a lost lease precisely) or the statement
    /// met a deadlock or serialisation failure.
    private func insertPage(
        _ records: [PreparedRecord], model: String, checkpoint: Checkpoint?, for lease: RunLease, expecting expected: PlainInsertHeads.Expected
    ) async throws -> ModelResult? {
        let page = try PageArrays(records)
        let dataset = expected.dataset
        let (sequence, now) = nextChange(dataset)
        let result = ModelResult(added: records.count)
        let results = try ModelResult.addingRunResult(result, for: model, to: expected.results)
        let offset = leaseClockOffset()
        let generation = expected.runGeneration ?? 0
        let count: Int64? = try await read { db in
            let count: Int64?
            do {
                // `d` waits for `f`: the run row is locked before the dataset row, as every writer locks them.
                count = try await db.one(
                    """
                    WITH f AS (
                        SELECT r.id FROM runs r
                        WHERE r.id = \(lease.runId) AND r.status = 'running' AND r.attempts = \(lease.token)
                            AND r.heartbeat_at + r.lease_seconds * 1000000 > \(unescaped: Self.databaseNow) + \(offset)
                            AND r.variant_pk = \(expected.variantPK) AND r.kind = \(expected.kind)
                            AND r.deletion_generation IS NOT DISTINCT FROM \(expected.runGeneration) AND r.results = \(expected.results)
                        FOR UPDATE OF r),
                    d AS (
                        SELECT id FROM datasets
                        WHERE id = \(dataset.id) AND last_seq = \(dataset.lastSequence) AND last_write_at = \(dataset.lastWriteAt)
                            AND record_count = \(expected.recordCount) AND EXISTS (SELECT 1 FROM f)
                        FOR UPDATE),
                    inserted AS (
                        \(unescaped: Self.plainInsert(into: dataset, sequence: sequence, now: now, generation: generation))
                        FROM unnest(\(page.ids)::text[], \(page.hashes)::int8[], \(page.payloads)::text[]) AS i(external_id, hash, payload)
                        WHERE EXISTS (SELECT 1 FROM d)),
                    head AS (\(unescaped: Self.headUpdate(dataset, sequence: sequence, now: now, countDelta: records.count, when: "EXISTS (SELECT 1 FROM d)"))),
                    checkpointed AS (
                        UPDATE sync_variants SET checkpoint = \(checkpoint?.json), checkpoint_generation = \(expected.runGeneration)
                        WHERE id = \(expected.variantPK) AND \(checkpoint != nil) AND EXISTS (SELECT 1 FROM d)),
                    counted AS (UPDATE runs SET results = \(results) WHERE id = \(lease.runId) AND EXISTS (SELECT 1 FROM d))
                    SELECT (SELECT record_count FROM head) AS record_count
                    """, self.logger)?.optionalInt64("record_count")
            } catch where Self.isTakenRecordId(error) {
                throw TakenIdOnInsert()
            } catch let error as PSQLError where Self.isTransient(error) {
                return nil
            }
            return count
        }
        guard let count else {
            plainInsertHeads.refuse(runId: lease.runId, token: lease.token, model: model)
            return nil
        }
        var after = expected
        after.results = results
        after.dataset = DatasetHead(id: dataset.id, lastSequence: sequence, lastWriteAt: now)
        after.recordCount = count
        plainInsertHeads.record(after, model: model)
        plainInsertedPages.add(1, ordering: .relaxed)
        plainInsertedAlone.add(1, ordering: .relaxed)
        queueAnalysisIfGrown(dataset, to: count, by: records.count)
        return result
    }

    /// Saves a page of unique records in one transaction. While a run's page comes into a dataset
    /// holding only records the run added itself (a first load, see
    /// ``DatasetHead/holdsOnlyRecordsAdded(byRun:)``) and `insertingOnly` allows it, the page is
    /// one plain `INSERT` — about a third cheaper for the server than the upsert, which first
    /// looks for each id (measured in docs/BENCHMARKS.md) — and a taken id throws
    /// ``TakenIdOnInsert``, rolling the transaction back, for the caller to save the page again on
    /// the full path. A plain insert leaves what the run's next page may expect in
    /// ``PlainInsertHeads``.
    ///
    /// Otherwise the page is looked up first, by ids and hashes only (``lookUpPage``): its
    /// unchanged records are marked seen there, and only the records that need a write (new,
    /// changed, re-added or pruned) are then upserted with their payloads — an unchanged page sends
    /// no payload at all. A run whose last page had most of its records to write (an incremental
    /// run's changes) has its next page upserted whole at once instead (``writingPages``): one
    /// statement rather than a lookup and an upsert of nearly every record. A page already looked
    /// up alone (``lookUpPageAlone(_:model:checkpoint:for:payloads:)``) comes with `lookedUp`, the indices
    /// of its records to write, and is not looked up again.
    private func saveRecords(
        _ records: [PreparedRecord], model: String, checkpoint: Checkpoint?, for lease: RunLease, insertingOnly: Bool, lookedUp: [Int]?
    ) async throws -> (ModelResult, dataset: Int64) {
        let writingMost = lookedUp == nil && writingPages.contains(runId: lease.runId, model: model)
        let checking = !unorderedPages.contains(runId: lease.runId, model: model)
        // `upserted`: the records sent to the full path's upsert, how many of them needed a write,
        // and whether the run's pages may be looked up alone (nil after a plain insert).
        let (result, expected, upserted, datasetId) = try await transaction { db -> (ModelResult, PlainInsertHeads.Expected?, Upserted?, Int64) in
            let (run, dataset) = try await self.fenceForWrite(db, lease, model: model)
            if checkpoint != nil, run.kind == .webhook { throw StoreMessages.checkpointInWebhookRun }
            let (sequence, now) = self.nextChange(dataset)
            // The run's deletion window, if it has one: saved records are stamped seen in it.
            let generation = run.seenGeneration ?? 0
            if lookedUp == nil, insertingOnly, dataset.holdsOnlyRecordsAdded(byRun: try ModelResult.decodeRunResults(run.results)[model]?.added ?? 0) {
                // The insert, the dataset's head, the run's counts and the checkpoint (if any) in
                // one statement: one round trip.
                let page = try PageArrays(records)
                let result = ModelResult(added: records.count)
                let results = try run.adding(result, for: model)
                let count: Int64?
                do {
                    count = try await db.one(
                        """
                        WITH inserted AS (
                            \(unescaped: Self.plainInsert(into: dataset, sequence: sequence, now: now, generation: generation))
                            FROM unnest(\(page.ids)::text[], \(page.hashes)::int8[], \(page.payloads)::text[]) AS i(external_id, hash, payload)),
                        head AS (\(unescaped: Self.headUpdate(dataset, sequence: sequence, now: now, countDelta: records.count))),
                        checkpointed AS (
                            UPDATE sync_variants SET checkpoint = \(checkpoint?.json), checkpoint_generation = \(run.deletionGeneration)
                            WHERE id = \(run.variantPK) AND \(checkpoint != nil))
                        UPDATE runs SET results = \(results) WHERE id = \(run.id)
                        RETURNING (SELECT record_count FROM head) AS record_count
                        """, self.logger)?.int64("record_count")
                } catch where Self.isTakenRecordId(error) {
                    throw TakenIdOnInsert()
                }
                try await self.analyzeIfGrown(dataset, to: count, by: records.count, db)
                self.plainInsertedPages.add(1, ordering: .relaxed)
                // The run's next page of this model may expect these rows (once this commits).
                let expected = count.flatMap { count in
                    run.kind == .webhook
                        ? nil
                        : PlainInsertHeads.Expected(
                            runId: run.id, token: lease.token, variantPK: run.variantPK, kind: run.kind.rawValue, runGeneration: run.deletionGeneration,
                            results: results, dataset: DatasetHead(id: dataset.id, lastSequence: sequence, lastWriteAt: now), recordCount: count)
                }
                return (result, expected, nil, dataset.id)
            }
            let toWrite: [PreparedRecord]
            var looked: PageLookup?
            if let lookedUp {
                // Looked up alone (its unchanged records marked seen then): these are left.
                toWrite = lookedUp.map { records[$0] }
            } else if writingMost {
                toWrite = records
            } else {
                let lookup = try await self.lookUpPage(db, records, dataset: dataset, generation: generation, checking: checking)
                looked = lookup
                toWrite = lookup.indices.map { records[$0] }
            }
            var result = ModelResult()
            if !toWrite.isEmpty {
                let page = try PageArrays(toWrite)
                // An unchanged record not yet seen in the window is stamped only when the whole
                // page is upserted (a lookup stamped it otherwise).
                // `tributary_upsert_records` (migration `v13-page-upsert`): the upsert with a plan
                // kept by the session.
                let counts = try await db.one(
                    """
                    SELECT added, updated FROM tributary_upsert_records(\(dataset.id), \(sequence), \(now), \(generation),
                        \(page.ids)::text[], \(page.hashes)::int8[], \(page.payloads)::text[])
                    """, self.logger)
                result = ModelResult(added: Int(try counts?.int64("added") ?? 0), updated: Int(try counts?.int64("updated") ?? 0))
            }
            try await self.finishWrite(
                db, dataset, sequence: sequence, now: now, changed: result.added + result.updated, countDelta: result.added, results: (run, model, result))
            if let checkpoint { try await self.writeCheckpoint(db, checkpoint, run) }
            let written = writingMost ? result.added + result.updated : toWrite.count
            return (result, nil, Upserted(sent: toWrite.count, written: written, lookable: run.kind != .webhook, lookup: looked), dataset.id)
        }
        if let expected { plainInsertHeads.record(expected, model: model) }
        if let upserted {
            // Counted once the transaction committed (a retried one runs its body again).
            upsertedRecords.add(upserted.sent, ordering: .relaxed)
            // Else the run's next page is looked up first.
            if !noteWritten(upserted.written, of: records.count, runId: lease.runId, model: model), writingMost {
                writingPages.unmark(runId: lease.runId, model: model)
            }
            if upserted.lookup?.aligned == true { pagesAligned.add(1, ordering: .relaxed) }
            // A page looked up alone was noted then.
            if upserted.lookable, lookedUp == nil {
                if let lookup = upserted.lookup {
                    noteLookup(lookup, checked: checking, runId: lease.runId, model: model)
                } else {
                    noteWrites(upserted.written, runId: lease.runId, model: model)
                }
            }
        }
        return (result, datasetId)
    }

    /// What the full path's upsert was sent, and what came of it (see ``saveRecords(_:model:checkpoint:for:insertingOnly:lookedUp:)``).
    private struct Upserted {
        /// Records sent with their payloads.
        var sent: Int
        /// Records that needed a write.
        var written: Int
        /// Whether the run's next page may be looked up alone (``lookUpPageAlone(_:model:checkpoint:for:payloads:)``): not a webhook execution's.
        var lookable: Bool
        /// The page's lookup in the transaction, if it had one.
        var lookup: PageLookup?
    }

    /// Looks a page up by its ids and hashes, in one statement, and returns which of its records
    /// need a write: new, changed, re-added or pruned (``PageLookup``). The others are unchanged;
    /// those not yet seen in the deletion window `generation` are marked seen here — by a seen range
    /// over their span when it holds no other record and no range of the window overlaps it
    /// (SeenRange), else by stamps.
    ///
    /// Two server-side functions answer, whose plans each server session keeps. When `checking`,
    /// `tributary_check_page` (migration `v12-page-check`) reads the rows from the page's first
    /// record on in feed order, as many as the page, in one index scan, and compares their ids and
    /// hashes with the page's as arrays: a page saved again in the order its rows hold (a full
    /// refresh's pages, changed or not) is aligned, and its records to write are found by position,
    /// with their kinds; since migration `v13-page-upsert` so is a page that skips some of the rows
    /// it spans (records gone at the provider: `tributary_check_skipping`, which never marks a
    /// skipped row seen). Otherwise, or when the ids differ, `tributary_look_up_page` (migration
    /// `v11-page-lookup`) matches the page record by record: the same scan's rows by id, the records
    /// not among them looked up one by one.
    private func lookUpPage(
        _ db: PostgresConnection, _ records: [PreparedRecord], dataset: DatasetHead, generation: Int64, checking: Bool
    ) async throws -> PageLookup {
        let keys = try PageKeys(records)
        let minimum = Int64(SeenRange.minimumRecords)
        let row = try await db.one(
            """
            WITH p AS (SELECT \(keys.ids)::text[] AS ids, \(keys.hashes)::int8[] AS hashes),
            checked AS (SELECT CASE WHEN \(checking) THEN tributary_check_page(\(dataset.id), \(generation), p.ids, p.hashes, \(minimum)) END AS writes FROM p)
            SELECT c.writes IS NOT NULL AS aligned, coalesce(c.writes, tributary_look_up_page(\(dataset.id), \(generation), p.ids, p.hashes, \(minimum))) AS writes
            FROM checked c, p
            """, logger)
        guard let row else { throw TributaryError(.storeUnavailable, "The database returned no row for a page's lookup.") }
        return try PageLookup(row, count: records.count)
    }

    public func updateRecords(_ patches: [RecordPatch], model: String, for lease: RunLease) async throws -> ModelResult {
        if patches.isEmpty { return ModelResult() }
        return try await transaction { db in
            let run = try await self.fence(db, lease)
            let seenGeneration = run.seenGeneration
            guard let dataset = try await self.findDataset(db, connectionPK: run.connectionPK, model: model, variant: run.variant.variant) else {
                return ModelResult()
            }
            let (sequence, now) = self.nextChange(dataset)
            // Keyed by the ids' bytes, as the database compares them (not by `String` equivalence).
            var current: [ExactString: (hash: Int64, payload: String)] = [:]
            for row in try await db.all(
                """
                SELECT external_id, hash, payload::text AS payload FROM records
                WHERE dataset_id = \(dataset.id) AND external_id = ANY(\(patches.map(\.id))::text[]) AND deleted_at IS NULL
                """, self.logger)
            {
                current[ExactString(try row.string("external_id"))] = (try row.int64("hash"), try row.string("payload"))
            }
            var changedIds: [String] = []
            var changedHashes: [Int64] = []
            var changedPayloads: [String] = []
            var unchangedIds: [String] = []
            // Patches apply in order; a later patch of the same id sees the earlier one.
            var merged: [ExactString: PreparedRecord] = [:]
            // The hash of each stored record's canonical form: payloads written before v4-text-payloads
            // are in jsonb's spelling, so their stored hash (of the bytes first saved) may not match it.
            var storedHash: [ExactString: UInt64] = [:]
            var order: [ExactString] = []
            for patch in patches {
                let key = ExactString(patch.id)
                guard let existing = current[key] else { continue }
                let base: JSONObject
                if let earlier = merged[key] {
                    base = try JSONParser.parse(earlier.json).objectValue ?? [:]
                } else {
                    base = try JSONParser.parse(Array(existing.payload.utf8)).objectValue ?? [:]
                    storedHash[key] = try PreparedRecord(base).hash
                    order.append(key)
                }
                var object = base.merging(patch.patch)
                object["id"] = .string(patch.id)
                merged[key] = try PreparedRecord(object)
            }
            for key in order {
                guard let prepared = merged[key], let original = storedHash[key] else { continue }
                if prepared.hash != original {
                    changedIds.append(key.text)
                    changedHashes.append(Int64(bitPattern: prepared.hash))
                    changedPayloads.append(String(decoding: prepared.json, as: UTF8.self))
                } else {
                    unchangedIds.append(key.text)
                }
            }
            let generation = seenGeneration ?? 0
            if !changedIds.isEmpty {
                try await db.query(
                    """
                    UPDATE records r SET hash = u.hash, payload = u.payload, seq = \(sequence), updated_at = \(now), pruned_at = NULL,
                        seen_generation = GREATEST(r.seen_generation, \(generation))
                    FROM unnest(\(changedIds)::text[], \(changedHashes)::int8[], \(changedPayloads)::text[]) AS u(external_id, hash, payload)
                    WHERE r.dataset_id = \(dataset.id) AND r.external_id = u.external_id
                    """, logger: self.logger)
            }
            if let seenGeneration, !unchangedIds.isEmpty {
                try await db.query(
                    """
                    UPDATE records SET seen_generation = \(seenGeneration)
                    WHERE dataset_id = \(dataset.id) AND external_id = ANY(\(unchangedIds)::text[]) AND seen_generation < \(seenGeneration)
                    """, logger: self.logger)
            }
            try await self.finishWrite(
                db, dataset, sequence: sequence, now: now, changed: changedIds.count, countDelta: 0, results: (run, model, ModelResult(updated: changedIds.count)))
            return ModelResult(updated: changedIds.count)
        }
    }

    public func deleteRecords(ids: [String], model: String, for lease: RunLease) async throws -> ModelResult {
        if ids.isEmpty { return ModelResult() }
        return try await transaction { db in
            let run = try await self.fence(db, lease)
            guard let dataset = try await self.findDataset(db, connectionPK: run.connectionPK, model: model, variant: run.variant.variant) else {
                return ModelResult()
            }
            let (sequence, now) = self.nextChange(dataset)
            let deleted = try await db.count(
                """
                UPDATE records SET deleted_at = \(now), updated_at = \(now), seq = \(sequence)
                WHERE dataset_id = \(dataset.id) AND external_id = ANY(\(ids)::text[]) AND deleted_at IS NULL RETURNING 1
                """, self.logger)
            try await self.finishWrite(
                db, dataset, sequence: sequence, now: now, changed: deleted, countDelta: -deleted, results: (run, model, ModelResult(deleted: deleted)))
            return ModelResult(deleted: deleted)
        }
    }

    /// Marks deleted every live record of `dataset` not seen in `generation` (full-refresh deletion
    /// detection): the unstamped live ones — in the gaps between the window's seen ranges when it
    /// has any, each gap read along the feed index. Removes the dataset's ranges: the window closes.
    func deleteUnseen(_ db: PostgresConnection, connectionPK: Int64, _ ref: DatasetRef, generation: Int64) async throws -> Int {
        guard let dataset = try await findDataset(db, connectionPK: connectionPK, model: ref.model, variant: ref.variant) else { return 0 }
        let (sequence, now) = nextChange(dataset)
        let ranged = try await db.one(
            "SELECT EXISTS (SELECT 1 FROM seen_ranges WHERE dataset_id = \(dataset.id) AND generation = \(generation)) AS ranged", logger)?.bool("ranged") ?? false
        let query: PostgresQuery
        if ranged {
            query = """
                WITH ranges AS (
                    SELECT lo_seq, lo_id, hi_seq, hi_id FROM seen_ranges WHERE dataset_id = \(dataset.id) AND generation = \(generation)),
                gaps AS (
                    SELECT coalesce(lag(hi_seq) OVER w, -1) AS after_seq, coalesce(lag(hi_id) OVER w, -1) AS after_id, lo_seq AS before_seq, lo_id AS before_id
                    FROM ranges WINDOW w AS (ORDER BY lo_seq, lo_id)
                    UNION ALL
                    SELECT hi_seq, hi_id, \(Int64.max), \(Int64.max) FROM (SELECT hi_seq, hi_id FROM ranges ORDER BY lo_seq DESC, lo_id DESC LIMIT 1) l),
                doomed AS (
                    -- OFFSET 0 keeps each gap its own index range scan (the planner would otherwise
                    -- scan the whole dataset once against every gap).
                    SELECT x.seq, x.id FROM gaps g CROSS JOIN LATERAL (
                        SELECT r.seq, r.id FROM records r
                        WHERE r.dataset_id = \(dataset.id) AND (r.seq, r.id) > (g.after_seq, g.after_id) AND (r.seq, r.id) < (g.before_seq, g.before_id)
                            AND r.deleted_at IS NULL AND r.seen_generation < \(generation)
                        OFFSET 0) x),
                deleted AS (
                    UPDATE records r SET deleted_at = \(now), updated_at = \(now), seq = \(sequence) FROM doomed d
                    WHERE r.dataset_id = \(dataset.id) AND r.seq = d.seq AND r.id = d.id
                    RETURNING 1),
                closed AS (DELETE FROM seen_ranges WHERE dataset_id = \(dataset.id))
                SELECT count(*) AS deleted FROM deleted
                """
        } else {
            query = """
                WITH deleted AS (
                    UPDATE records SET deleted_at = \(now), updated_at = \(now), seq = \(sequence)
                    WHERE dataset_id = \(dataset.id) AND deleted_at IS NULL AND seen_generation < \(generation) RETURNING 1),
                closed AS (DELETE FROM seen_ranges WHERE dataset_id = \(dataset.id))
                SELECT count(*) AS deleted FROM deleted
                """
        }
        let deleted = try await db.one(query, logger).map { Int(try $0.int64("deleted")) } ?? 0
        try await finishChange(db, dataset, sequence: sequence, now: now, changed: deleted, countDelta: -deleted)
        return deleted
    }

    // MARK: Reads

    public func changes(_ query: ChangeQuery) async throws -> ChangePage {
        if let ids = query.ids, ids.isEmpty { return ChangePage(records: [], nextCursor: nil) }
        return try await read { db in
            // The dataset first, in a statement of its own: with its id a parameter, the page's plan
            // touches the one partition that holds it and uses that dataset's statistics (a subquery
            // in its place would plan and lock every partition on every page).
            guard let dataset = try await self.findDataset(db, query.dataset, forUpdate: false) else { return ChangePage(records: [], nextCursor: nil) }
            var binds = PostgresBindings()
            binds.append(dataset.id)
            binds.append(query.cursor?.sequence ?? 0)
            binds.append(query.cursor?.tiebreaker ?? 0)
            binds.append(Int64(query.limit + 1))
            var sql = """
                SELECT id, external_id, seq, first_seen_at, updated_at, deleted_at, payload::text, pruned_at FROM records
                WHERE dataset_id = $1 AND (seq, id) > ($2, $3)
                """
            if let modifiedAfter = query.modifiedAfter {
                binds.append(modifiedAfter.microseconds)
                sql += " AND updated_at >= $\(binds.count)"
            }
            if let actions = query.actions, !actions.isEmpty, actions.count < RecordAction.allCases.count {
                var clauses: [String] = []
                if actions.contains(.added) { clauses.append("(deleted_at IS NULL AND first_seen_at = updated_at)") }
                if actions.contains(.updated) { clauses.append("(deleted_at IS NULL AND first_seen_at <> updated_at)") }
                if actions.contains(.deleted) { clauses.append("deleted_at IS NOT NULL") }
                sql += " AND (" + clauses.joined(separator: " OR ") + ")"
            }
            if let ids = query.ids {
                binds.append(ids)
                sql += " AND external_id = ANY($\(binds.count)::text[])"
            }
            sql += " ORDER BY seq, id LIMIT $4"
            var records: [StoredRecord] = []
            records.reserveCapacity(min(query.limit, 1024))
            var more = false
            let rows = try await db.query(PostgresQuery(unsafeSQL: sql, binds: binds), logger: self.logger)
            for try await row in rows {
                if records.count == query.limit {
                    more = true
                    continue
                }
                // In the SELECT's column order.
                var cells = RowCells(row)
                let id = try cells.int64()
                let externalId = try cells.string()
                let seq = try cells.int64()
                let firstSeen = try cells.int64()
                let updated = try cells.int64()
                let deleted = try cells.optionalInt64()
                let payload = try cells.textBytes()
                let pruned = try cells.optionalInt64()
                records.append(
                    StoredRecord(
                        id: externalId, json: payload, firstSeenAt: Timestamp(microseconds: firstSeen),
                        lastModifiedAt: Timestamp(microseconds: updated), deletedAt: deleted.map(Timestamp.init(microseconds:)),
                        cursor: FeedCursor(sequence: seq, tiebreaker: id), prunedAt: pruned.map(Timestamp.init(microseconds:))))
            }
            return ChangePage(records: records, nextCursor: more ? records.last?.cursor : nil)
        }
    }

    public func pruneRecords(_ dataset: DatasetRef, through cursor: FeedCursor, limit: Int) async throws -> (count: Int, hasMore: Bool) {
        let now = clock().microseconds
        return try await transaction { db in
            // The dataset row's lock, as every record writer takes it: a page write decides from its
            // snapshot which unchanged records it leaves untouched, so a prune must not commit
            // under it (the page would leave a record it just saved pruned).
            guard let head = try await self.findDataset(db, dataset, forUpdate: true) else { return (0, false) }
            // In feed order, so a partial prune covers the oldest first.
            let rows = try await db.all(
                """
                SELECT id FROM records WHERE dataset_id = \(head.id) AND pruned_at IS NULL AND (seq, id) <= (\(cursor.sequence), \(cursor.tiebreaker))
                ORDER BY seq, id LIMIT \(Int64(limit) + 1)
                """, self.logger)
            let ids = try rows.map { try $0.int64("id") }
            let chosen = Array(ids.prefix(limit))
            if !chosen.isEmpty {
                try await db.query(
                    """
                    UPDATE records SET pruned_at = \(now), payload = '{"id":' || to_json(external_id)::text || '}'
                    WHERE dataset_id = \(head.id) AND id = ANY(\(chosen)::int8[])
                    """, logger: self.logger)
            }
            return (chosen.count, ids.count > limit)
        }
    }

    public func recordCounts(of variant: VariantRef) async throws -> [String: Int] {
        try await read { db in
            guard let pk = try await self.connectionPK(db, variant.connection) else { return [:] }
            var counts: [String: Int] = [:]
            for row in try await db.all(
                """
                SELECT model, record_count FROM datasets WHERE connection_pk = \(pk) AND sync_name = \(variant.syncName) AND variant = \(variant.variant)
                """, self.logger)
            {
                counts[try row.string("model")] = try row.int("record_count")
            }
            return counts
        }
    }

    // MARK: Dataset bookkeeping

    /// The dataset's row; with `forUpdate` locked until the transaction ends, which is what orders
    /// the dataset's change sequence by commit across writers.
    func findDataset(_ db: PostgresConnection, _ ref: DatasetRef, forUpdate: Bool) async throws -> DatasetHead? {
        guard
            let row = try await db.one(
                """
                SELECT d.id, d.last_seq, d.last_write_at FROM datasets d JOIN connections c ON c.id = d.connection_pk
                WHERE c.environment = \(ref.connection.environment) AND c.provider_config_key = \(ref.connection.providerConfigKey)
                    AND c.connection_id = \(ref.connection.connectionId) AND d.model = \(ref.model) AND d.variant = \(ref.variant)
                \(unescaped: forUpdate ? "FOR UPDATE OF d" : "")
                """, logger)
        else { return nil }
        return try datasetHead(row)
    }

    /// A dataset of a known connection, locked for the transaction (the writers' lock, see ``findDataset(_:_:forUpdate:)``).
    func findDataset(_ db: PostgresConnection, connectionPK: Int64, model: String, variant: String) async throws -> DatasetHead? {
        guard
            let row = try await db.one(
                """
                SELECT id, last_seq, last_write_at FROM datasets WHERE connection_pk = \(connectionPK) AND model = \(model) AND variant = \(variant)
                FOR UPDATE
                """, logger)
        else { return nil }
        return try datasetHead(row)
    }

    private func datasetHead(_ row: PostgresRandomAccessRow) throws -> DatasetHead {
        DatasetHead(id: try row.int64("id"), lastSequence: try row.int64("last_seq"), lastWriteAt: try row.int64("last_write_at"))
    }

    func nextChange(_ dataset: DatasetHead) -> (sequence: Int64, now: Int64) { dataset.nextChange(now: clock()) }

    func finishChange(_ db: PostgresConnection, _ dataset: DatasetHead, sequence: Int64, now: Int64, changed: Int, countDelta: Int) async throws {
        try await finishWrite(db, dataset, sequence: sequence, now: now, changed: changed, countDelta: countDelta, results: nil)
    }

    /// Ends a write to `dataset`: moves its head when `changed` records were changed, and adds
    /// `results` (a run and a model's counts, see ``addResults(_:_:model:_:)``) to the run — one round trip.
    func finishWrite(
        _ db: PostgresConnection, _ dataset: DatasetHead, sequence: Int64, now: Int64, changed: Int, countDelta: Int,
        results: (run: FencedRun, model: String, result: ModelResult)?
    ) async throws {
        guard changed > 0 else {
            if let results { try await addResults(db, results.run, model: results.model, results.result) }
            return
        }
        let head = Self.headUpdate(dataset, sequence: sequence, now: now, countDelta: countDelta)
        let query: PostgresQuery
        if let (run, model, result) = results, !result.isEmpty {
            query = """
                WITH head AS (\(unescaped: head))
                UPDATE runs SET results = \(try run.adding(result, for: model)) WHERE id = \(run.id) RETURNING (SELECT record_count FROM head) AS record_count
                """
        } else {
            query = PostgresQuery(unsafeSQL: head)
        }
        let count = try await db.one(query, logger)?.int64("record_count")
        try await analyzeIfGrown(dataset, to: count, by: countDelta, db)
    }

    /// The statement that moves `dataset`'s head to a write's sequence and time and adds
    /// `countDelta` to its record count, returning the count. Its numbers are this store's own,
    /// written as literals.
    /// Only if `condition` (SQL) holds, when one is given.
    static func headUpdate(_ dataset: DatasetHead, sequence: Int64, now: Int64, countDelta: Int, when condition: String? = nil) -> String {
        "UPDATE datasets SET last_seq = \(sequence), last_write_at = \(now), record_count = record_count + \(countDelta) WHERE id = \(dataset.id)"
            + (condition.map { " AND \($0)" } ?? "") + " RETURNING record_count"
    }

    /// The start of a plain insert of new records into `dataset`, added at `sequence` and `now` and
    /// seen in `generation`: its `SELECT` reads `i.external_id`, `i.hash` and `i.payload` from the
    /// `FROM` the caller appends. Its numbers are this store's own, written as literals.
    static func plainInsert(into dataset: DatasetHead, sequence: Int64, now: Int64, generation: Int64) -> String {
        """
        INSERT INTO records(dataset_id, external_id, hash, seq, first_seen_at, updated_at, deleted_at, seen_generation, payload)
        SELECT \(dataset.id), i.external_id, i.hash, \(sequence), \(now), \(now), NULL, \(generation), i.payload
        """
    }

    /// Analyses `dataset`'s partition when growing by `countDelta` to `count` records passed a threshold.
    func analyzeIfGrown(_ dataset: DatasetHead, to count: Int64?, by countDelta: Int, _ db: PostgresConnection) async throws {
        if Self.grewPastAnalyzeThreshold(to: count, by: countDelta) {
            try await analyzePartition(of: dataset, db)
        }
    }

    /// ``analyzeIfGrown(_:to:by:_:)`` after a write that committed on its own: the dataset is queued
    /// (``AnalyzeQueue``) and ``run()`` analyses its partition on another pooled connection while
    /// the writer goes on — the write has committed, so the analysis sees its rows.
    func queueAnalysisIfGrown(_ dataset: DatasetHead, to count: Int64, by countDelta: Int) {
        guard Self.grewPastAnalyzeThreshold(to: count, by: countDelta) else { return }
        analyzeQueue.enqueue(dataset)
    }

    /// Analyses `dataset`'s partition in a transaction of its own (its statistics target is `SET
    /// LOCAL`), for ``run()``. Statistics are a help to later pages, so failing to gather them fails
    /// nothing (the dataset's next doubling gathers them again): a failure is logged, unless the
    /// drain was cancelled (the store is shutting down).
    func analyzeQueued(_ dataset: DatasetHead) async {
        do {
            try await transaction { db in try await self.analyzePartition(of: dataset, db) }
        } catch where !Task.isCancelled {
            logger.warning("could not analyse a growing dataset's partition", metadata: ["dataset": "\(dataset.id)", "error": "\(error)"])
        } catch {}
        partitionsAnalysed.add(1, ordering: .relaxed)
    }

    private static func grewPastAnalyzeThreshold(to count: Int64?, by countDelta: Int) -> Bool {
        guard let count, countDelta > 0 else { return false }
        return crossesAnalyzeThreshold(from: count - Int64(countDelta), to: count)
    }

    /// Whether a dataset growing from `old` to `new` records passed 8,192 × 2^k records.
    static func crossesAnalyzeThreshold(from old: Int64, to new: Int64) -> Bool {
        var threshold: Int64 = 8192
        while threshold <= new {
            if old < threshold { return true }
            threshold *= 2
        }
        return false
    }

    /// Refreshes the planner's statistics of the partition holding `dataset`'s records.
    ///
    /// A partition filled faster than autovacuum analyses it has no statistics; the planner then
    /// takes `dataset_id = X` for a few rows and looks records up through the feed index, reading
    /// the whole dataset for every page (quadratic: measured 35–110 ms per page of 1,000 at 100k
    /// records). Analysing each time a dataset doubles (from 8,192 records) keeps lookups on the
    /// primary key for O(log n) short ANALYZEs. Each samples 3,000 rows (statistics target 10, for
    /// this ANALYZE only): enough for the row count and the datasets' share of the partition, which
    /// is all these plans need; the default 30,000 cost a first load of 100,000 records a fifth of
    /// its time (docs/BENCHMARKS.md). They replace whatever the partition had, coarser (ten most
    /// common datasets, a ten-bucket histogram), until autovacuum's next ANALYZE refines them at the
    /// default. Runs in a transaction (`SET LOCAL`): the write's, or one of its own (``analyzeQueued(_:)``).
    func analyzePartition(of dataset: DatasetHead, _ db: PostgresConnection) async throws {
        guard let name = try await db.one("SELECT tableoid::regclass::text AS name FROM records WHERE dataset_id = \(dataset.id) LIMIT 1", logger)?
            .string("name"),
            name.wholeMatch(of: /records_p[0-9]+/) != nil
        else { return }
        try await db.query("SET LOCAL default_statistics_target = 10", logger: logger)
        // The name comes from the catalog and is checked above; identifiers cannot be bound.
        // SKIP_LOCKED: a vacuum or analyse of the partition under way (which would hold the write,
        // and the dataset's row, until it ends) means statistics are on their way anyway.
        try await db.query(PostgresQuery(unsafeSQL: "ANALYZE (SKIP_LOCKED) \(name)"), logger: logger)
    }
}
