import PostgresNIO
import TributaryCore
import TributaryStore

/// A run's pages saved again into a dataset that holds them, each as autocommit calls fenced in
/// SQL (PL/pgSQL functions) instead of a transaction's `BEGIN`, fence, lookup, upsert, head and `COMMIT`: the lookup
/// alone (``PostgresStore/lookUpPageAlone(_:model:checkpoint:for:payloads:)``), then — when the page has
/// records to write and was aligned with its rows — their upsert alone
/// (``PostgresStore/upsertPageAlone(_:_:model:checkpoint:for:after:)``); or, after a page that had
/// records to write or whose dataset's last run this process saw, the lookup with (some of) the
/// page's payloads, which saves an aligned page whole.
extension PostgresStore {
    /// What the lookup alone saw of the run and the dataset, under their locks: what the upsert
    /// alone then expects of them.
    struct AloneHead: Sendable {
        /// `runs.results` as the lookup found it.
        var results: String
        var variantPK: Int64
        /// The run's deletion generation (`runs.deletion_generation`): the checkpoint's.
        var runGeneration: Int64?
        /// The seen generation its records are stamped in.
        var generation: Int64
        /// The dataset's head as the lookup found it (and left it: a lookup does not move it).
        var dataset: DatasetHead
    }

    /// What came of looking a page up alone.
    enum LookedUpAlone {
        /// Nothing more to write: the page is saved (its checkpoint too) into the dataset, with these
        /// counts (the records to write, when their payloads came with the lookup and it upserted them).
        case saved(ModelResult, dataset: Int64)
        /// Its unchanged records are marked seen (committed); these need a write, and its
        /// checkpoint is not saved yet.
        case toWrite(PageLookup, AloneHead)
        /// Nothing was done: the run's lease or the dataset could not be confirmed in SQL, the
        /// statement met a deadlock or serialisation failure, or (with the payloads) its upsert's
        /// counts were not the check's and it refused; the transaction names the reason.
        case refused
    }

    /// A page of a run saving into a dataset that holds records, looked up (``lookUpPage``) in one
    /// autocommit call instead of `BEGIN`, the fence, the lookup and `COMMIT`: the PL/pgSQL function
    /// `tributary_look_up_alone` (migration `v12-page-check`; its plans kept by each session) locks
    /// the run row and fences it in SQL — running, under this lease's token, its lease not run out
    /// on the database's clock, as ``RunFence`` checks, and not a webhook execution (whose seen
    /// generation is the variant's open window) — then the model's dataset row, in the order every
    /// writer locks them, and only then runs the check and the lookup, whose statements see every
    /// write committed before those locks (a PL/pgSQL function takes a snapshot per statement). When
    /// nothing needs a write, the checkpoint (if any) is saved in the same statement and the page is
    /// done; otherwise the seen marks are committed and the records to write follow — a page split
    /// in two like this only leaves records marked seen that the run did see, and a prune between
    /// the two leaves what a prune just after the page would.
    ///
    /// With `payloads` (``payloadsToSend(_:model:for:)``: those of the records the dataset's last
    /// run did not leave as they are, or after a page that had records to write every one), they
    /// go with the lookup and `tributary_save_guessed` (migration `v15-unsent-payloads`; v14's
    /// `tributary_save_alone` with a check that they came) makes the same lookup, then — when the
    /// check aligned the page and every record to write came with its payload — upserts them under
    /// the same locks, moves the head, saves the checkpoint and adds the kinds' counts to the run's
    /// results, all in this one call: the page is saved. Otherwise the answer is the lookup's, as
    /// without payloads.
    ///
    /// Taken for a run's page after one that needed no write or was aligned with its rows
    /// (``lookingUpAlone``), unless the run's last page had most of its records to write.
    func lookUpPageAlone(
        _ records: [PreparedRecord], model: String, checkpoint: Checkpoint?, for lease: RunLease, payloads: PagePayloads? = nil
    ) async throws -> LookedUpAlone {
        let keys = try PageKeys(records)
        let checking = !unorderedPages.contains(runId: lease.runId, model: model)
        let offset = leaseClockOffset()
        let minimum = Int64(SeenRange.minimumRecords)
        // The time of the page's writes, if it saves them in this call.
        let now = payloads == nil ? 0 : clock().microseconds
        let looked: (PageLookup, AloneHead, saved: Bool, recordCount: Int64?)? = try await read { db in
            do {
                let row: PostgresRandomAccessRow?
                if let payloads {
                    row = try await db.one(
                        """
                        SELECT * FROM tributary_save_guessed(\(lease.runId), \(lease.token), \(offset), \(RunKind.webhook.rawValue), \(model),
                            \(keys.ids)::text[], \(keys.hashes)::int8[], \(minimum), \(checking), \(checkpoint?.json), \(checkpoint != nil),
                            \(now), \(payloads.bytes), \(payloads.ends)::int4[])
                        """, self.logger)
                } else {
                    row = try await db.one(
                        """
                        SELECT * FROM tributary_look_up_alone(\(lease.runId), \(lease.token), \(offset), \(RunKind.webhook.rawValue), \(model),
                            \(keys.ids)::text[], \(keys.hashes)::int8[], \(minimum), \(checking), \(checkpoint?.json), \(checkpoint != nil))
                        """, self.logger)
                }
                guard let row, let datasetId = try row.optionalInt64("dataset_id") else { return nil }
                let saved = payloads == nil ? false : try row["saved"].decode(Bool.self)
                let head = AloneHead(
                    results: try row.string("results"), variantPK: try row.int64("variant_pk"),
                    runGeneration: try row.optionalInt64("run_generation"), generation: try row.int64("generation"),
                    dataset: DatasetHead(id: datasetId, lastSequence: try row.int64("last_seq"), lastWriteAt: try row.int64("last_write_at")))
                return (try PageLookup(row, count: records.count), head, saved, saved ? try row.optionalInt64("record_count") : nil)
            } catch let error as PSQLError where Self.isTransient(error) {
                return nil
            } catch let error as PSQLError where payloads != nil && Self.isRefusal(error) {
                self.noteRefusal(error, runId: lease.runId, model: model)
                return nil
            }
        }
        guard let (lookup, head, saved, recordCount) = looked else { return .refused }
        pagesLookedUpAlone.add(1, ordering: .relaxed)
        if let payloads { payloadsSentWithLookups.add(payloads.sent, ordering: .relaxed) }
        if lookup.aligned { pagesAligned.add(1, ordering: .relaxed) }
        noteLookup(lookup, checked: checking, runId: lease.runId, model: model)
        if lookup.indices.isEmpty { return .saved(ModelResult(), dataset: head.dataset.id) }
        guard saved, let kinds = lookup.kinds else { return .toWrite(lookup, head) }
        let result = Self.counts(of: kinds)
        noteWritten(lookup.indices.count, of: records.count, runId: lease.runId, model: model)
        pagesSavedAlone.add(1, ordering: .relaxed)
        upsertedRecords.add(lookup.indices.count, ordering: .relaxed)
        if result.added > 0 { queueAnalysisIfGrown(head.dataset, to: recordCount ?? 0, by: result.added) }
        return .saved(result, dataset: head.dataset.id)
    }

    /// What an aligned page's writes count: a changed record updated, a deleted one added again, a
    /// pruned one not counted.
    static func counts(of kinds: [PageLookup.Kind]) -> ModelResult {
        ModelResult(added: kinds.count { $0 == .deleted }, updated: kinds.count { $0 == .changed })
    }

    /// The records of a page the lookup alone aligned with their rows and found to need a write
    /// (`lookup`'s kinds), upserted in one autocommit call of `tributary_upsert_alone` (migration
    /// `v13-page-upsert`; its plans, and its upsert's, kept by each session): the run row fenced in
    /// SQL as the lookup fenced it and its results still as the lookup read them, the dataset row's
    /// head still as the lookup left it — so no writer changed the dataset between the two calls,
    /// and each record's kind still holds; then the upsert (`tributary_upsert_records`, as the
    /// transaction's), the head moved by what it wrote, the checkpoint (if any), and the run's
    /// results with the counts the kinds give — the call fails whole (`tributary_refuse`) if the
    /// upsert's counts are not those. Nil when those checks did not hold or the call met a deadlock
    /// or serialisation failure (nothing was written: the caller writes the records in the
    /// transaction).
    func upsertPageAlone(
        _ records: [PreparedRecord], _ lookup: PageLookup, model: String, checkpoint: Checkpoint?, for lease: RunLease, after head: AloneHead
    ) async throws -> ModelResult? {
        guard let kinds = lookup.kinds else { return nil }
        let toWrite = lookup.indices.map { records[$0] }
        let expected = Self.counts(of: kinds)
        let results = try ModelResult.addingRunResult(expected, for: model, to: head.results)
        let page = try PageArrays(toWrite)
        let dataset = head.dataset
        let (sequence, now) = nextChange(dataset)
        let offset = leaseClockOffset()
        // The dataset's record count after the call (nil when the head did not move); nil outside
        // when nothing was written. The counts are the kinds' (the call refuses others).
        let written: Int64?? = try await read { db in
            do {
                let row = try await db.one(
                    """
                    SELECT * FROM tributary_upsert_alone(\(lease.runId), \(lease.token), \(offset), \(RunKind.webhook.rawValue),
                        \(head.results), \(expected.isEmpty ? nil : results),
                        \(dataset.id), \(dataset.lastSequence), \(dataset.lastWriteAt), \(sequence), \(now), \(head.generation),
                        \(head.variantPK), \(head.runGeneration), \(checkpoint?.json), \(checkpoint != nil),
                        \(page.ids)::text[], \(page.hashes)::int8[], \(page.payloads)::text[], \(Int64(expected.added)), \(Int64(expected.updated)))
                    """, self.logger)
                guard let row, try row["applied"].decode(Bool.self) else { return nil }
                return .some(try row.optionalInt64("record_count"))
            } catch let error as PSQLError where Self.isTransient(error) {
                return nil
            } catch let error as PSQLError where Self.isRefusal(error) {
                self.noteRefusal(error, runId: lease.runId, model: model)
                return nil
            }
        }
        guard let written else { return nil }
        pagesUpsertedAlone.add(1, ordering: .relaxed)
        upsertedRecords.add(toWrite.count, ordering: .relaxed)
        if expected.added > 0 { queueAnalysisIfGrown(dataset, to: written ?? 0, by: expected.added) }
        return expected
    }

    /// Logs a refusal (`tributary_refuse`): under the locks the call holds, its upsert's counts
    /// differ from its check's only if the two disagree — nothing was written, the page goes to the
    /// transaction, and an operator should hear of it.
    func noteRefusal(_ error: PSQLError, runId: Int64, model: String) {
        logger.warning(
            "A page's write refused itself (its counts were not its check's); saved in a transaction instead",
            metadata: ["run": "\(runId)", "model": "\(model)", "reason": "\(error.serverInfo?[.message] ?? "")"])
    }

    /// Whether `error` is `tributary_refuse`'s (migration `v12-page-check`): a statement that found
    /// its own result other than foretold, and so wrote nothing.
    static func isRefusal(_ error: PSQLError) -> Bool {
        error.serverInfo?[.sqlState] == "TRB01"
    }

    /// Steers the run's next page of `model` after `lookup`: after a page that needed no write or
    /// was aligned with its rows, the next is looked up alone (``lookingUpAlone``). Two pages in a
    /// row that the check did not align (the run saves its pages in another order than the feed
    /// holds them, or adds new records to each; a page that only leaves records out is aligned) stop
    /// the check for the run's later pages (``unorderedPages``); one alone (a record new at the
    /// provider) does not.
    func noteLookup(_ lookup: PageLookup, checked: Bool, runId: Int64, model: String) {
        if lookup.indices.isEmpty {
            changingPages.unmark(runId: runId, model: model)
        } else {
            changingPages.mark(runId: runId, model: model)
        }
        if lookup.aligned {
            lookingUpAlone.mark(runId: runId, model: model)
        } else {
            noteWrites(lookup.indices.count, runId: runId, model: model)
        }
        guard checked else { return }
        if lookup.aligned {
            missedChecks.unmark(runId: runId, model: model)
        } else if missedChecks.contains(runId: runId, model: model) {
            unorderedPages.mark(runId: runId, model: model)
        } else {
            missedChecks.mark(runId: runId, model: model)
        }
    }

    /// Most of a page written (an incremental run's changes): the run's next page of `model` is
    /// likely the same, and is upserted whole at once instead of looked up first (``writingPages``).
    /// Whether it was marked.
    @discardableResult
    func noteWritten(_ written: Int, of count: Int, runId: Int64, model: String) -> Bool {
        guard written * 2 > count else { return false }
        writingPages.mark(runId: runId, model: model)
        return true
    }

    /// After a page that needed no write, the run's next page of `model` is looked up alone; after
    /// one that needed writes and was not aligned with its rows, in the transaction.
    func noteWrites(_ writes: Int, runId: Int64, model: String) {
        if writes > 0 {
            lookingUpAlone.unmark(runId: runId, model: model)
        } else {
            lookingUpAlone.mark(runId: runId, model: model)
        }
    }
}
