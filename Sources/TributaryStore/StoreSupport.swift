import TributaryCore

// Pieces every store implementation shares, so the stores agree byte for byte on what they write.

extension Array where Element == PreparedRecord {
    /// The batch with one record per id: the last occurrence wins (a later version in the same batch
    /// replaces an earlier one), in the order those last occurrences appear.
    public var lastOccurrencePerId: [PreparedRecord] {
        var seen = Set<String>(minimumCapacity: count)
        var unique: [PreparedRecord] = []
        unique.reserveCapacity(count)
        for record in reversed() where seen.insert(record.id).inserted {
            unique.append(record)
        }
        if unique.count == count { return self }
        return unique.reversed()
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

extension StartedRun {
    /// How a run that has just become `running` starts: its kind, and its deletion-tracking window —
    /// continued when the variant resumes from a checkpoint inside an open window, else a new one
    /// (identified by the run's id). The store records the returned generation on the run and,
    /// when it differs from `state.deletionGeneration`, on the variant.
    public static func begin(run runId: Int64, startedAt: Timestamp, state: VariantState, tracksDeletes: Bool) -> StartedRun {
        let kind: RunKind = state.lastSyncDate == nil ? .initial : .incremental
        var generation: Int64? = nil
        var resumes = false
        if tracksDeletes {
            if let open = state.deletionGeneration, state.checkpoint != nil {
                generation = open
                resumes = true
            } else {
                generation = runId
            }
        }
        var startState = state
        startState.deletionGeneration = generation
        return StartedRun(runId: runId, startedAt: startedAt, kind: kind, state: startState, deletionGeneration: generation, resumesWindow: resumes)
    }
}

/// A dataset's row as a write transaction sees it: its id and where its change feed stands.
public struct DatasetHead: Sendable, Hashable {
    public var id: Int64
    public var lastSequence: Int64
    public var lastWriteAt: Int64

    public init(id: Int64, lastSequence: Int64, lastWriteAt: Int64) {
        self.id = id
        self.lastSequence = lastSequence
        self.lastWriteAt = lastWriteAt
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

    public static func syncNoLongerConfigured(_ ref: VariantRef) -> String {
        "Sync '\(ref.syncName)' is no longer configured for integration '\(ref.connection.providerConfigKey)'."
    }

    public static func runNotRunning(_ run: Int64, status: String) -> TributaryError {
        TributaryError(.syncRunning, "Run \(run) is no longer running (it is \(status)); its outcome was not applied.")
    }

    public static func webhookGivenUp(after interruptions: Int) -> String {
        "Given up: the webhook's handler was interrupted \(interruptions) times without finishing."
    }
}
