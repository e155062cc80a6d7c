import GRDB
import TributaryCore
import TributaryStore

extension SQLiteStore {
    // MARK: Writes

    public func saveRecords(_ records: [PreparedRecord], model: String, checkpoint: Checkpoint?, for lease: RunLease) async throws -> ModelResult {
        // A literal checkpoint is checked before anything is written (see saveCheckpoint).
        let checkpoint = try checkpoint?.validated()
        if records.isEmpty {
            if let checkpoint { try await saveCheckpoint(checkpoint, for: lease) }
            return ModelResult()
        }
        let unique = records.lastOccurrencePerId
        let clockNow = clock()
        return try await pool.write { db in
            let run = try self.fence(db, lease, now: clockNow)
            if checkpoint != nil, run.kind == .webhook { throw StoreMessages.checkpointInWebhookRun }
            let seenGeneration = run.seenGeneration
            let dataset = try self.datasetForWrite(db, run, model: model)
            let (sequence, now) = self.nextChange(dataset)
            // One lookup per record decides: unchanged (at most a seen stamp on the small record row),
            // changed or re-added (update the row and its payload), or new (insert both). Plain
            // statements by rowid: cheaper per record than an UPSERT with RETURNING. While records
            // come new (a first load), each is inserted straight away and looked up only if its id
            // is taken: one statement less per record.
            let lookup = try RawStatement(db, "SELECT \(RecordRow.columns) FROM records WHERE dataset_id = ?1 AND external_id = ?2")
            // A page saved again usually comes in the order it was first saved in, which is the
            // rows' order (a row keeps its rowid when it changes): after a lookup, the rows that
            // follow it are read in one scan and matched to the next records by dataset and id.
            let following = try RawStatement(db, "SELECT \(RecordRow.columns), dataset_id, external_id FROM records WHERE id > ?1 ORDER BY id")
            let update = try RawStatement(
                db,
                """
                UPDATE records SET hash = ?1, seq = ?2, updated_at = ?3, deleted_at = NULL, pruned_at = NULL,
                    first_seen_at = CASE WHEN deleted_at IS NOT NULL THEN ?3 ELSE first_seen_at END,
                    seen_generation = MAX(seen_generation, ?4)
                WHERE id = ?5
                """)
            let insertNew = try RawStatement(
                db,
                """
                INSERT INTO records(dataset_id, external_id, hash, seq, first_seen_at, updated_at, deleted_at, seen_generation)
                VALUES (?1, ?2, ?3, ?4, ?5, ?5, NULL, ?6) ON CONFLICT(dataset_id, external_id) DO NOTHING
                """)
            let markSeen = try RawStatement(db, "UPDATE records SET seen_generation = ?1 WHERE id = ?2")
            // A pruned record saved again unchanged gets its payload back, in place: no change, no move in the feed.
            let unprune = try RawStatement(db, "UPDATE records SET pruned_at = NULL WHERE id = ?1")
            let writePayload = try RawStatement(db, "INSERT OR REPLACE INTO record_payloads(record_id, payload) VALUES (?1, ?2)")
            let generation = seenGeneration ?? 0
            lookup.bind(1, dataset.id)
            insertNew.bind(1, dataset.id)
            insertNew.bind(4, sequence)
            insertNew.bind(5, now)
            insertNew.bind(6, generation)
            update.bind(2, sequence)
            update.bind(3, now)
            update.bind(4, generation)
            markSeen.bind(1, generation)
            var result = ModelResult()
            /// Writes `record`'s canonical JSON as the payload of the record row `rowid`.
            func putPayload(_ record: PreparedRecord, at rowid: Int64) throws {
                writePayload.bind(1, rowid)
                writePayload.bindText(2, record.json)
                try writePayload.execute()
            }
            /// Inserts `record` unless its id is taken; true when it did.
            func insertIfNew(_ record: PreparedRecord, hash: Int64) throws -> Bool {
                insertNew.bind(2, record.id)
                insertNew.bind(3, hash)
                try insertNew.execute()
                guard insertNew.changes == 1 else { return false }
                result.added += 1
                try putPayload(record, at: db.lastInsertedRowID)
                return true
            }
            var comingNew = true
            // The rows read ahead for the records after a lookup (`nil`: not read, or not next);
            // empty until the page's first read-ahead (a first load's pages have none).
            var ahead: [RecordRow?] = []
            // A page whose order is not the rows' gives up reading ahead after two scans found nothing.
            var fruitlessScans = 0
            /// Reads the rows after `rowid` for the records from `next` on, while they match.
            func readAhead(after rowid: Int64, from next: Int) throws {
                guard fruitlessScans < 2, next < unique.count else { return }
                if ahead.isEmpty { ahead = Array(repeating: nil, count: unique.count) }
                following.bind(1, rowid)
                defer { following.reset() }
                var index = next
                while index < unique.count, try following.step(),
                    following.int64(RecordRow.columnCount) == dataset.id,
                    following.textEquals(RecordRow.columnCount + 1, unique[index].id)
                {
                    ahead[index] = RecordRow(following)
                    index += 1
                }
                if index == next { fruitlessScans += 1 }
            }
            // The unchanged records' feed positions, and which of them are not yet seen in the
            // window: seen ranges for the page, or stamps.
            var unchangedAt: [FeedPosition] = []
            var unstamped: [FeedPosition] = []
            for (index, record) in unique.enumerated() {
                let hash = Int64(bitPattern: record.hash)
                let stored: RecordRow
                if !ahead.isEmpty, let row = ahead[index] {
                    stored = row
                } else {
                    if comingNew {
                        if try insertIfNew(record, hash: hash) { continue }
                        comingNew = false
                    }
                    lookup.bind(2, record.id)
                    guard try lookup.step() else {
                        lookup.reset()
                        // Ids are unique in `unique`, by their bytes as SQLite compares them.
                        guard try insertIfNew(record, hash: hash) else {
                            throw DatabaseError(resultCode: .SQLITE_CONSTRAINT, message: "records: an id missing from the lookup was taken")
                        }
                        comingNew = true
                        continue
                    }
                    stored = RecordRow(lookup)
                    lookup.reset()
                    try readAhead(after: stored.rowid, from: index + 1)
                }
                if stored.hash == hash && !stored.deleted {
                    unchangedAt.append(stored.position)
                    if stored.seenGeneration < generation { unstamped.append(stored.position) }
                    if stored.pruned {
                        unprune.bind(1, stored.rowid)
                        try unprune.execute()
                        try putPayload(record, at: stored.rowid)
                    }
                    continue
                }
                update.bind(1, hash)
                update.bind(5, stored.rowid)
                try update.execute()
                if stored.deleted { result.added += 1 } else { result.updated += 1 }
                try putPayload(record, at: stored.rowid)
            }
            if SeenRange.worthTrying(unstamped: unstamped.count) {
                let ranges = try self.addSeenRanges(db, dataset: dataset.id, generation: generation, unchangedAt: unchangedAt)
                if !ranges.isEmpty { unstamped.removeAll { position in ranges.contains { $0.contains(position) } } }
            }
            for position in unstamped {
                markSeen.bind(2, position.id)
                try markSeen.execute()
            }
            try self.finishChange(db, dataset, sequence: sequence, now: now, changed: result.added + result.updated, countDelta: result.added)
            try self.addResults(db, run, model: model, result)
            if let checkpoint { try self.writeCheckpoint(db, checkpoint, run) }
            return result
        }
    }

    /// What a page's write needs of a stored record: the columns ``columns`` lists, in that order.
    struct RecordRow {
        static let columns = "id, hash, deleted_at IS NOT NULL, seen_generation, pruned_at IS NOT NULL, seq"
        static let columnCount: Int32 = 6

        let rowid: Int64
        let hash: Int64
        let deleted: Bool
        let seenGeneration: Int64
        let pruned: Bool
        let seq: Int64

        /// Where the record stands in the feed.
        var position: FeedPosition { FeedPosition(seq: seq, id: rowid) }

        /// The row at `statement`, which selects ``columns`` first.
        init(_ statement: RawStatement) {
            rowid = statement.int64(0)
            hash = statement.int64(1)
            deleted = statement.int64(2) != 0
            seenGeneration = statement.int64(3)
            pruned = statement.int64(4) != 0
            seq = statement.int64(5)
        }
    }

    /// Records a page's unchanged records at `unchangedAt` as seen in `generation` by verified
    /// ranges (see ``SeenRange``), after the page's writes; returns the ranges added. The page
    /// stamps the records none of them covers.
    func addSeenRanges(_ db: Database, dataset: Int64, generation: Int64, unchangedAt: [FeedPosition]) throws -> [SeenRange] {
        // An older window's ranges are dead: a replaced window never reopens.
        try db.cachedStatement(sql: "DELETE FROM seen_ranges WHERE dataset_id = ? AND generation < ?").execute(arguments: [dataset, generation])
        func add(_ range: SeenRange, holding count: Int) throws -> Bool {
            // The window's ranges are disjoint: the one starting last at or before the span's end
            // is the only one that can overlap it.
            if let before = try Row.fetchOne(
                db.cachedStatement(
                    sql: """
                        SELECT hi_seq, hi_id FROM seen_ranges WHERE dataset_id = ? AND generation = ? AND (lo_seq, lo_id) <= (?, ?)
                        ORDER BY lo_seq DESC, lo_id DESC LIMIT 1
                        """),
                arguments: [dataset, generation, range.hi.seq, range.hi.id]),
                !(FeedPosition(seq: before[0], id: before[1]) < range.lo)
            {
                return false
            }
            guard SeenRange.isVerified(recordsInSpan: try recordsIn(range, upTo: count + 1), pageRecords: count) else { return false }
            try db.cachedStatement(sql: "INSERT INTO seen_ranges(dataset_id, lo_seq, lo_id, hi_seq, hi_id, generation) VALUES (?, ?, ?, ?, ?, ?)")
                .execute(arguments: [dataset, range.lo.seq, range.lo.id, range.hi.seq, range.hi.id, generation])
            return true
        }
        /// The dataset's records in `range`, counting up to `limit`. Each part reads one index range:
        /// SQLite bounds a row value `(seq, id) >= (a, b)` by `seq` alone, so the plain form would
        /// scan the rest of both end sequences (see SeenRange.GapPart).
        func recordsIn(_ range: SeenRange, upTo limit: Int) throws -> Int {
            let (lo, hi) = (range.lo, range.hi)
            let parts: [(String, StatementArguments)] =
                lo.seq == hi.seq
                ? [("seq = ? AND id >= ? AND id <= ?", [lo.seq, lo.id, hi.id])]
                : [("seq = ? AND id >= ?", [lo.seq, lo.id]), ("seq > ? AND seq < ?", [lo.seq, hi.seq]), ("seq = ? AND id <= ?", [hi.seq, hi.id])]
            var total = 0
            for (condition, arguments) in parts where total < limit {
                total +=
                    try Int.fetchOne(
                        db.cachedStatement(sql: "SELECT count(*) FROM (SELECT 1 FROM records WHERE dataset_id = ? AND \(condition) LIMIT ?)"),
                        arguments: [dataset] + arguments + [limit - total]) ?? 0
            }
            return total
        }
        let (whole, bySequence) = SeenRange.candidates(unchangedAt)
        if let whole, try add(whole.range, holding: whole.count) { return [whole.range] }
        var added: [SeenRange] = []
        for run in bySequence {
            if try add(run.candidate.range, holding: run.candidate.count) {
                added.append(run.candidate.range)
                continue
            }
            for part in run.consecutive where try add(part.range, holding: part.count) { added.append(part.range) }
        }
        return added
    }

    public func updateRecords(_ patches: [RecordPatch], model: String, for lease: RunLease) async throws -> ModelResult {
        if patches.isEmpty { return ModelResult() }
        let clockNow = clock()
        return try await pool.write { db in
            let run = try self.fence(db, lease, now: clockNow)
            let seenGeneration = run.seenGeneration
            guard let dataset = try self.findDataset(db, connectionPK: run.connectionPK, model: model, variant: run.variant.variant) else {
                return ModelResult()
            }
            let (sequence, now) = self.nextChange(dataset)
            let select = try RawStatement(
                db,
                """
                SELECT r.id, r.hash, p.payload, r.deleted_at FROM records r JOIN record_payloads p ON p.record_id = r.id
                WHERE r.dataset_id = ?1 AND r.external_id = ?2
                """)
            let update = try RawStatement(
                db, "UPDATE records SET hash = ?1, seq = ?3, updated_at = ?4, pruned_at = NULL, seen_generation = MAX(seen_generation, ?5) WHERE id = ?6")
            let updatePayload = try RawStatement(db, "UPDATE record_payloads SET payload = ?1 WHERE record_id = ?2")
            let markSeen = try RawStatement(db, "UPDATE records SET seen_generation = ?1 WHERE id = ?2 AND seen_generation < ?1")
            select.bind(1, dataset.id)
            var result = ModelResult()
            for patch in patches {
                select.bind(2, patch.id)
                guard try select.step(), select.optionalInt64(3) == nil else {
                    select.reset()
                    continue
                }
                let rowId = select.int64(0)
                let oldHash = select.int64(1)
                let payload = select.bytes(2)
                select.reset()
                let existing = try JSONParser.parse(payload).objectValue ?? [:]
                var merged = existing.merging(patch.patch)
                merged["id"] = .string(patch.id)
                let prepared = try PreparedRecord(merged)
                if Int64(bitPattern: prepared.hash) != oldHash {
                    update.bind(1, Int64(bitPattern: prepared.hash))
                    update.bind(3, sequence)
                    update.bind(4, now)
                    update.bind(5, seenGeneration ?? 0)
                    update.bind(6, rowId)
                    try update.execute()
                    updatePayload.bindText(1, prepared.json)
                    updatePayload.bind(2, rowId)
                    try updatePayload.execute()
                    result.updated += 1
                } else if let seenGeneration {
                    markSeen.bind(1, seenGeneration)
                    markSeen.bind(2, rowId)
                    try markSeen.execute()
                }
            }
            try self.finishChange(db, dataset, sequence: sequence, now: now, changed: result.updated, countDelta: 0)
            try self.addResults(db, run, model: model, result)
            return result
        }
    }

    public func deleteRecords(ids: [String], model: String, for lease: RunLease) async throws -> ModelResult {
        if ids.isEmpty { return ModelResult() }
        let clockNow = clock()
        return try await pool.write { db in
            let run = try self.fence(db, lease, now: clockNow)
            guard let dataset = try self.findDataset(db, connectionPK: run.connectionPK, model: model, variant: run.variant.variant) else {
                return ModelResult()
            }
            let (sequence, now) = self.nextChange(dataset)
            let delete = try RawStatement(
                db,
                """
                UPDATE records SET deleted_at = ?1, updated_at = ?1, seq = ?2
                WHERE dataset_id = ?3 AND external_id = ?4 AND deleted_at IS NULL
                """)
            delete.bind(1, now)
            delete.bind(2, sequence)
            delete.bind(3, dataset.id)
            var deleted = 0
            for id in ids {
                delete.bind(4, id)
                try delete.execute()
                deleted += delete.changes
            }
            try self.finishChange(db, dataset, sequence: sequence, now: now, changed: deleted, countDelta: -deleted)
            try self.addResults(db, run, model: model, ModelResult(deleted: deleted))
            return ModelResult(deleted: deleted)
        }
    }

    /// Marks deleted every live record of `dataset` not seen in `generation` (full-refresh deletion detection).
    func deleteUnseen(_ db: Database, connectionPK: Int64, _ ref: DatasetRef, generation: Int64) throws -> Int {
        guard let dataset = try findDataset(db, connectionPK: connectionPK, model: ref.model, variant: ref.variant) else { return 0 }
        let (sequence, now) = nextChange(dataset)
        // Unseen records are the unstamped live ones outside the window's seen ranges: looked for
        // in the gaps between the ranges only, along the feed index.
        let ranges = try Row.fetchAll(
            db, sql: "SELECT lo_seq, lo_id, hi_seq, hi_id FROM seen_ranges WHERE dataset_id = ? AND generation = ? ORDER BY lo_seq, lo_id",
            arguments: [dataset.id, generation]
        ).map { SeenRange(lo: FeedPosition(seq: $0[0], id: $0[1]), hi: FeedPosition(seq: $0[2], id: $0[3])) }
        var deleted = 0
        for gap in SeenRange.gaps(between: ranges) {
            for part in SeenRange.parts(after: gap.after, before: gap.before) {
                var sql = "UPDATE records SET deleted_at = ?, updated_at = ?, seq = ? WHERE dataset_id = ? AND deleted_at IS NULL AND seen_generation < ?"
                var arguments: StatementArguments = [now, now, sequence, dataset.id, generation]
                func bound(_ comparison: String, _ value: Int64?) {
                    guard let value else { return }
                    sql += " AND \(comparison) ?"
                    arguments += [value]
                }
                switch part {
                case .withinSequence(let seq, let above, let below):
                    bound("seq =", seq)
                    bound("id >", above)
                    bound("id <", below)
                case .sequences(let above, let below):
                    bound("seq >", above)
                    bound("seq <", below)
                }
                try db.cachedStatement(sql: sql).execute(arguments: arguments)
                deleted += db.changesCount
            }
        }
        // The window is closed: its ranges (and any older ones) are done with.
        try db.execute(sql: "DELETE FROM seen_ranges WHERE dataset_id = ?", arguments: [dataset.id])
        try finishChange(db, dataset, sequence: sequence, now: now, changed: deleted, countDelta: -deleted)
        return deleted
    }

    // MARK: Reads

    public func changes(_ query: ChangeQuery) async throws -> ChangePage {
        try await pool.read { db in
            guard let dataset = try self.findDataset(db, query.dataset) else { return ChangePage(records: [], nextCursor: nil) }
            var sql = """
                SELECT r.id, r.external_id, r.seq, r.first_seen_at, r.updated_at, r.deleted_at, p.payload, r.pruned_at
                FROM records r JOIN record_payloads p ON p.record_id = r.id
                WHERE r.dataset_id = ?1 AND r.seq >= ?2 AND (r.seq > ?2 OR r.id > ?3)
                """
            if query.modifiedAfter != nil { sql += " AND updated_at >= ?4" }
            if let actions = query.actions, !actions.isEmpty, actions.count < RecordAction.allCases.count {
                var clauses: [String] = []
                if actions.contains(.added) { clauses.append("(deleted_at IS NULL AND first_seen_at = updated_at)") }
                if actions.contains(.updated) { clauses.append("(deleted_at IS NULL AND first_seen_at <> updated_at)") }
                if actions.contains(.deleted) { clauses.append("deleted_at IS NOT NULL") }
                sql += " AND (" + clauses.joined(separator: " OR ") + ")"
            }
            if let ids = query.ids {
                if ids.isEmpty { return ChangePage(records: [], nextCursor: nil) }
                sql += " AND external_id IN (" + ids.indices.map { "?\($0 + 6)" }.joined(separator: ",") + ")"
            }
            sql += " ORDER BY r.seq, r.id LIMIT ?5"
            let select = try RawStatement(db, sql)
            defer { select.reset() }
            select.bind(1, dataset.id)
            select.bind(2, query.cursor?.sequence ?? 0)
            select.bind(3, query.cursor?.tiebreaker ?? 0)
            if let modifiedAfter = query.modifiedAfter { select.bind(4, modifiedAfter.microseconds) }
            select.bind(5, Int64(query.limit + 1))
            for (index, id) in (query.ids ?? []).enumerated() { select.bind(Int32(index + 6), id) }
            var records: [StoredRecord] = []
            records.reserveCapacity(min(query.limit, 1024))
            var more = false
            while try select.step() {
                if records.count == query.limit {
                    more = true
                    break
                }
                records.append(
                    StoredRecord(
                        id: select.string(1), json: select.bytes(6),
                        firstSeenAt: Timestamp(microseconds: select.int64(3)),
                        lastModifiedAt: Timestamp(microseconds: select.int64(4)),
                        deletedAt: select.optionalInt64(5).map(Timestamp.init(microseconds:)),
                        cursor: FeedCursor(sequence: select.int64(2), tiebreaker: select.int64(0)),
                        prunedAt: select.optionalInt64(7).map(Timestamp.init(microseconds:))))
            }
            return ChangePage(records: records, nextCursor: more ? records.last?.cursor : nil)
        }
    }

    public func pruneRecords(_ dataset: DatasetRef, through cursor: FeedCursor, limit: Int) async throws -> (count: Int, hasMore: Bool) {
        let now = clock().microseconds
        return try await pool.write { db in
            guard let head = try self.findDataset(db, dataset) else { return (0, false) }
            // In feed order, so a partial prune covers the oldest first; (seq, id) is the cursor's order.
            let ids = try Int64.fetchAll(
                db,
                sql: """
                    SELECT id FROM records WHERE dataset_id = ? AND pruned_at IS NULL AND (seq < ? OR (seq = ? AND id <= ?))
                    ORDER BY seq, id LIMIT ?
                    """,
                arguments: [head.id, cursor.sequence, cursor.sequence, cursor.tiebreaker, limit + 1])
            let chosen = Array(ids.prefix(limit))
            // Two set-based statements over the chosen rows (passed as one JSON array).
            let list = "[" + chosen.map(String.init).joined(separator: ",") + "]"
            try db.execute(sql: "UPDATE records SET pruned_at = ? WHERE id IN (SELECT value FROM json_each(?))", arguments: [now, list])
            try db.execute(
                sql: """
                    UPDATE record_payloads SET payload = (SELECT json_object('id', r.external_id) FROM records r WHERE r.id = record_payloads.record_id)
                    WHERE record_id IN (SELECT value FROM json_each(?))
                    """,
                arguments: [list])
            return (chosen.count, ids.count > limit)
        }
    }

    public func recordCounts(of variant: VariantRef) async throws -> [String: Int] {
        try await pool.read { db in
            guard let pk = try self.connectionPK(db, variant.connection) else { return [:] }
            let rows = try Row.fetchAll(
                db, sql: "SELECT model, record_count FROM datasets WHERE connection_pk = ? AND sync_name = ? AND variant = ?",
                arguments: [pk, variant.syncName, variant.variant])
            var counts: [String: Int] = [:]
            for row in rows { counts[row["model"]] = row["record_count"] }
            return counts
        }
    }

    // MARK: Dataset bookkeeping

    func findDataset(_ db: Database, _ ref: DatasetRef) throws -> DatasetHead? {
        guard
            let row = try Row.fetchOne(
                db,
                sql: """
                    SELECT d.id, d.last_seq, d.last_write_at FROM datasets d JOIN connections c ON c.id = d.connection_pk
                    WHERE c.environment = ? AND c.provider_config_key = ? AND c.connection_id = ? AND d.model = ? AND d.variant = ?
                    """,
                arguments: [ref.connection.environment, ref.connection.providerConfigKey, ref.connection.connectionId, ref.model, ref.variant])
        else { return nil }
        return DatasetHead(id: row[0], lastSequence: row[1], lastWriteAt: row[2])
    }

    func findDataset(_ db: Database, connectionPK: Int64, model: String, variant: String) throws -> DatasetHead? {
        guard
            let row = try Row.fetchOne(
                db, sql: "SELECT id, last_seq, last_write_at FROM datasets WHERE connection_pk = ? AND model = ? AND variant = ?",
                arguments: [connectionPK, model, variant])
        else { return nil }
        return DatasetHead(id: row[0], lastSequence: row[1], lastWriteAt: row[2])
    }

    /// The dataset a fenced run writes `model` to, created when it is the model's first write (the
    /// run holds its lease, so its variant and connection exist).
    func datasetForWrite(_ db: Database, _ run: FencedRun, model: String) throws -> DatasetHead {
        if let head = try findDataset(db, connectionPK: run.connectionPK, model: model, variant: run.variant.variant) { return head }
        let floor = try Int64.fetchOne(db, sql: "SELECT value FROM store_meta WHERE key = 'seq_floor'") ?? 0
        try db.execute(
            sql: "INSERT INTO datasets(connection_pk, sync_name, model, variant, last_seq) VALUES (?, ?, ?, ?, ?)",
            arguments: [run.connectionPK, run.variant.syncName, model, run.variant.variant, floor])
        return DatasetHead(id: db.lastInsertedRowID, lastSequence: floor, lastWriteAt: 0)
    }

    func nextChange(_ dataset: DatasetHead) -> (sequence: Int64, now: Int64) { dataset.nextChange(now: clock()) }

    func finishChange(_ db: Database, _ dataset: DatasetHead, sequence: Int64, now: Int64, changed: Int, countDelta: Int) throws {
        guard changed > 0 else { return }
        try db.execute(
            sql: "UPDATE datasets SET last_seq = ?, last_write_at = ?, record_count = record_count + ? WHERE id = ?",
            arguments: [sequence, now, countDelta, dataset.id])
    }
}
