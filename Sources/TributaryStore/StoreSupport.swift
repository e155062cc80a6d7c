import TributaryCore

// Pieces every store implementation shares, so the stores agree byte for byte on what they write.

extension Array where Element == PreparedRecord {
    /// The batch with one record per id: the last occurrence wins (a later version in the same batch
    /// replaces an earlier one), in the order those last occurrences appear.
    ///
    /// Ids are compared by their UTF-8 bytes, as both stores compare them: `"é"` and `"e\u{301}"`,
    /// equal as Swift `String`s, are two records.
    public var lastOccurrencePerId: [PreparedRecord] { lastOccurrencePerId(idHash: Self.idHash) }

    /// ``lastOccurrencePerId`` with the hash that tells ids apart first given (tests give one that
    /// makes every id look alike). Most batches hold each id once: the ids' hashes go into a set of
    /// integers, and only when two hashes are equal — the same id twice, or two ids whose hashes
    /// collide — are the ids compared exactly (a set keyed by their bytes). A batch with an id
    /// repeated, or crafted so that ids collide, pays that hash pass and then what every batch paid
    /// before: linear still, and the set of integers hashes with the process's random seed.
    package func lastOccurrencePerId(idHash: (String) -> UInt64) -> [PreparedRecord] {
        guard count > 1 else { return self }
        var hashes = Set<UInt64>(minimumCapacity: count)
        guard contains(where: { !hashes.insert(idHash($0.id)).inserted }) else { return self }
        var seen = Set<ExactString>(minimumCapacity: count)
        guard contains(where: { !seen.insert(ExactString($0.id)).inserted }) else { return self }
        seen.removeAll(keepingCapacity: true)
        var unique: [PreparedRecord] = []
        unique.reserveCapacity(count)
        for record in reversed() where seen.insert(ExactString(record.id)).inserted {
            unique.append(record)
        }
        return unique.reversed()
    }

    /// An id's ``ContentHash`` over its UTF-8 bytes: equal ids hash alike.
    static func idHash(_ id: String) -> UInt64 {
        if let hash = id.utf8.withContiguousStorageIfAvailable({ ContentHash.hash(UnsafeRawBufferPointer($0)) }) { return hash }
        var id = id
        return id.withUTF8 { ContentHash.hash(UnsafeRawBufferPointer($0)) }
    }
}

extension ModelResult {
    /// A run's per-model results as the JSON text stores keep in the run row.
    public static func encodeRunResults(_ results: [String: ModelResult]) -> String {
        JSONWriter.string(.object(ModelResult.json(results)))
    }

    /// Reads back what ``encodeRunResults(_:)`` wrote.
    public static func decodeRunResults(_ text: String) throws -> [String: ModelResult] {
        var results: [String: ModelResult] = [:]
        for (model, value) in try JSONParser.parse(text).objectValue ?? [:] { results[model] = ModelResult(json: value) }
        return results
    }

    /// The run results `text` (``encodeRunResults(_:)``) with `result` added for `model`.
    public static func addingRunResult(_ result: ModelResult, for model: String, to text: String) throws -> String {
        var all = try decodeRunResults(text)
        all[model, default: ModelResult()] += result
        return encodeRunResults(all)
    }
}

extension RunOutcome {
    /// The run status this outcome finishes a run with, and its error text.
    public var finalStatus: (status: RunStatus, error: String?) {
        switch self {
        case .succeeded: (.succeeded, nil)
        case .failed(let message): (.failed, message)
        case .cancelled(let reason): (.cancelled, reason)
        }
    }
}

/// A run whose lease a write presented, as the write's transaction read it (after ``RunFence`` passed).
public struct FencedRun: Sendable {
    public var id: Int64
    public var variantPK: Int64
    public var connectionPK: Int64
    public var variant: VariantRef
    public var kind: RunKind
    public var startedAt: Timestamp
    /// When the run was queued (nil for rows written before `queued_at` existed).
    public var queuedAt: Timestamp? = nil
    /// The run's own deletion window.
    public var deletionGeneration: Int64?
    /// The window the variant has open now (what a `WEBHOOK` run's records are marked seen in).
    public var openWindow: Int64?
    public var results: String
    public var fence: RunFence.Row

    public init(
        id: Int64, variantPK: Int64, connectionPK: Int64, variant: VariantRef, kind: RunKind, startedAt: Timestamp, deletionGeneration: Int64?,
        openWindow: Int64?, results: String, fence: RunFence.Row
    ) {
        self.id = id
        self.variantPK = variantPK
        self.connectionPK = connectionPK
        self.variant = variant
        self.kind = kind
        self.startedAt = startedAt
        self.deletionGeneration = deletionGeneration
        self.openWindow = openWindow
        self.results = results
        self.fence = fence
    }

    /// The completion rule's view of the run.
    public func completionRow() throws -> RunCompletionRule.Row {
        RunCompletionRule.Row(
            fence: fence, kind: kind, startedAt: startedAt, deletionGeneration: deletionGeneration, results: try ModelResult.decodeRunResults(results))
    }

    /// The results with `result` added for `model` (JSON text, as the run row keeps them).
    public func adding(_ result: ModelResult, for model: String) throws -> String {
        try ModelResult.addingRunResult(result, for: model, to: results)
    }

    /// The generation records written now are marked seen in.
    public var seenGeneration: Int64? { kind == .webhook ? openWindow : deletionGeneration }
}

/// A dataset's row as a write transaction sees it: its id and where its change feed stands.
public struct DatasetHead: Sendable, Hashable {
    public var id: Int64
    public var lastSequence: Int64
    public var lastWriteAt: Int64
    /// Its live records, when the store read them with the head (nil otherwise).
    public var recordCount: Int64?

    public init(id: Int64, lastSequence: Int64, lastWriteAt: Int64, recordCount: Int64? = nil) {
        self.id = id
        self.lastSequence = lastSequence
        self.lastWriteAt = lastWriteAt
        self.recordCount = recordCount
    }

    /// Whether every live record of the dataset was added by the run writing now, which has added
    /// `addedByRun` records of its model so far: then the run's next page is most likely all new
    /// (a first load), and a store may insert it without looking for taken ids first — provided it
    /// falls back to its full path when an id is taken (a deleted record's, or one the run saved on
    /// an earlier page). False when the count was not read.
    public func holdsOnlyRecordsAdded(byRun addedByRun: Int) -> Bool {
        recordCount == Int64(addedByRun)
    }

    /// The change sequence and timestamp (microseconds) of the next write. Timestamps strictly
    /// increase per dataset, so `updated_at` order agrees with feed order and an add is never
    /// mistaken for an update within one microsecond.
    public func nextChange(now: Timestamp) -> (sequence: Int64, now: Int64) {
        (lastSequence + 1, max(now.microseconds, lastWriteAt + 1))
    }
}

/// Messages the stores give for the same conditions.
public enum StoreMessages {
    /// The error of a run whose process stopped before it finished.
    public static let leaseExpired = "The process running this run stopped before it finished (lease expired)."

    /// The log line of a run that resumes from a checkpoint saved outside its deletion window.
    public static let distrustedCheckpoint =
        "This run resumes from a checkpoint that was not saved in the variant's open deletion window (deletion tracking was turned on since, or the window closed): it saves what it reads but deletes nothing. The next run from the beginning detects deletions again."

    public static let checkpointInWebhookRun = TributaryError(
        .invalidCheckpoint, "A webhook handler cannot change the checkpoint: it belongs to the variant's sync runs.")

    public static func unknownConnection(_ ref: ConnectionRef) -> TributaryError {
        TributaryError(.unknownConnection, "Connection '\(ref.connectionId)' of integration '\(ref.providerConfigKey)' does not exist.")
    }

    public static func unknownVariant(_ ref: VariantRef) -> TributaryError {
        TributaryError(.unknownVariant, "Sync '\(ref.syncName)' has no variant '\(ref.variant)' on connection '\(ref.connection.connectionId)'.")
    }

    public static func variantExists(_ ref: VariantRef) -> TributaryError {
        TributaryError(.variantExists, "Sync '\(ref.syncName)' already has a variant '\(ref.variant)' on connection '\(ref.connection.connectionId)'.")
    }

    public static func variantsCapped(_ maximum: Int) -> TributaryError {
        TributaryError(.resourceCapped, "Maximum number of variants per sync (\(maximum)) reached.")
    }

    public static func syncRunning(_ ref: VariantRef, queued: Bool, run: Int64) -> TributaryError {
        TributaryError(
            .syncRunning,
            "Sync '\(ref.syncName)' variant '\(ref.variant)' of connection '\(ref.connection.connectionId)' is \(queued ? "queued" : "already running") (run \(run)).")
    }


    public static func unknownRun(_ run: Int64) -> TributaryError {
        TributaryError(.unknownRun, "Run \(run) does not exist.")
    }

    public static func tooManyVariants(_ count: Int, maximum: Int) -> TributaryError {
        TributaryError(
            .tooManyVariants, "This call would change \(count) variants; one call changes at most \(maximum). Name a connection or fewer syncs.")
    }

    public static func webhookGivenUp(after interruptions: Int) -> String {
        "Given up: the webhook's handler was interrupted \(interruptions) times without finishing."
    }
}
