#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Severity of a run log line.
public enum LogLevel: String, Sendable, Hashable, CaseIterable, Comparable {
    case debug, info, warn, error

    public static func < (lhs: LogLevel, rhs: LogLevel) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}

/// Per-model counts of one run (`responseResults` in webhooks, `latestResult` in status).
public struct ModelResult: Sendable, Hashable, Codable {
    public var added: Int
    public var updated: Int
    public var deleted: Int

    public init(added: Int = 0, updated: Int = 0, deleted: Int = 0) {
        self.added = added
        self.updated = updated
        self.deleted = deleted
    }

    public static func + (lhs: ModelResult, rhs: ModelResult) -> ModelResult {
        ModelResult(added: lhs.added + rhs.added, updated: lhs.updated + rhs.updated, deleted: lhs.deleted + rhs.deleted)
    }

    public static func += (lhs: inout ModelResult, rhs: ModelResult) { lhs = lhs + rhs }

    /// `true` when nothing changed.
    public var isEmpty: Bool { added == 0 && updated == 0 && deleted == 0 }

    /// `{"added": …, "updated": …, "deleted": …}`, as the API, webhooks and the stores write it.
    public var json: JSONValue {
        [
            "added": .number(JSONNumber(added)), "updated": .number(JSONNumber(updated)),
            "deleted": .number(JSONNumber(deleted)),
        ]
    }

    /// Reads the JSON form; missing counts are 0.
    public init(json: JSONValue) {
        self.init(
            added: Int(json["added"]?.int64Value ?? 0), updated: Int(json["updated"]?.int64Value ?? 0),
            deleted: Int(json["deleted"]?.int64Value ?? 0))
    }

    /// Per-model results as one JSON object, models sorted by name.
    public static func json(_ results: [String: ModelResult]) -> JSONObject {
        var object = JSONObject()
        for (model, result) in results.sorted(by: { $0.key < $1.key }) { object[model] = result.json }
        return object
    }
}

/// What a sync function sees of its run: identity, schedule state, checkpoint, metadata, and the
/// records cache of its own variant (the `nango` object of a Nango sync).
///
/// Every record call persists before it returns, so a function that saves page by page holds one
/// page in memory, never the dataset. Every call first checks for cancellation and throws
/// `CancellationError` once the run was cancelled (variant paused, reset or deleted, shutdown).
public protocol SyncContext: ProviderCaller {
    /// The environment the connection belongs to (`dev`, `prod`, …).
    var environment: String { get }
    /// The integration (`provider_config_key`).
    var providerConfigKey: String { get }
    /// The customer connection (`connection_id`).
    var connectionId: String { get }
    /// The sync's name.
    var syncName: String { get }
    /// The variant this run belongs to (`base` unless the variant was created through the API).
    var variant: String { get }
    /// Start time of this variant's last successful run; `nil` on the first run and after a reset.
    var lastSyncDate: Date? { get }
    /// The models this sync declares; records of any other model are refused.
    var models: [String] { get }
    /// Whether this run detects deletions (a full refresh with `track_deletes`): a record it does not
    /// save is deleted when it succeeds, so it must read the whole listing — ``paginate(_:_:resumingAfter:)``
    /// then reads offset and page styles until an empty page.
    var detectsDeletes: Bool { get }

    /// The variant's checkpoint, or `nil` when none was saved (or it was cleared or reset).
    func getCheckpoint() async throws -> Checkpoint?
    /// Saves the variant's checkpoint durably (it survives crashes; an interrupted run resumes from it).
    func saveCheckpoint(_ checkpoint: Checkpoint) async throws
    /// Removes the variant's checkpoint.
    func clearCheckpoint() async throws

    /// The connection's metadata (a JSON object; `{}` when unset).
    func getMetadata() async throws -> JSONObject
    /// Replaces the connection's metadata.
    func setMetadata(_ metadata: JSONObject) async throws
    /// Shallow-merges `metadata` into the connection's metadata.
    func updateMetadata(_ metadata: JSONObject) async throws

    /// Inserts or updates whole records of `model`. Identical records are no-ops.
    func batchSave(_ records: [JSONObject], model: String) async throws
    /// ``batchSave(_:model:)`` of records already prepared (canonical JSON and hash, see
    /// ``PreparedRecord``) — so a function can prepare the next page in another task while this one
    /// is written, as declarative syncs do.
    func batchSave(prepared records: [PreparedRecord], model: String) async throws
    /// ``batchSave(prepared:model:)`` and then ``saveCheckpoint(_:)``, durably as one: the checkpoint
    /// is never saved without the records (a crash keeps both or neither), and the store commits once.
    func batchSave(prepared records: [PreparedRecord], model: String, checkpoint: Checkpoint) async throws
    /// Deep-merges partial records (each with its `id`) into existing, non-deleted records of `model`;
    /// ids that do not exist are ignored.
    func batchUpdate(_ records: [JSONObject], model: String) async throws
    /// Marks records of `model` deleted (soft delete). Only the `id` of each record is read.
    func batchDelete(_ records: [JSONObject], model: String) async throws

    /// Writes a line to the run's log (kept with the run, visible through the API and dashboard).
    func log(_ message: String, level: LogLevel) async
    /// Throws `CancellationError` if the run was cancelled.
    func checkCancellation() throws
    /// Where a task that does little but save pages (``batchSave(prepared:model:checkpoint:)``) one
    /// after another is best run — the store's writer thread, when it has one — or nil. A
    /// declarative sync's writing side runs there while it is the only one
    /// (``ProviderPages/forEachBatch(preparedBy:writingOn:_:)``); never run parsing or other long work
    /// on it: it holds up every write.
    var writeExecutor: (any WriteExecutor)? { get }
}

extension SyncContext {
    /// None unless a context says otherwise.
    public var writeExecutor: (any WriteExecutor)? { nil }

    /// A run that detects deletions reads every listing to its end.
    public var readsListingsToTheEnd: Bool { detectsDeletes }

    /// Off unless a context says otherwise (contexts written for tests).
    public var detectsDeletes: Bool { false }
    /// Logs at `info` level.
    public func log(_ message: String) async { await log(message, level: .info) }

    /// Saves the records, then the checkpoint (contexts without a combined write).
    public func batchSave(prepared records: [PreparedRecord], model: String, checkpoint: Checkpoint) async throws {
        try await batchSave(prepared: records, model: model)
        try await saveCheckpoint(checkpoint)
    }

    /// Saves `Encodable` values (your model structs) as records of `model`.
    public func batchSave<T: Encodable>(_ records: [T], model: String) async throws {
        try await batchSave(try RecordCoding.objects(records), model: model)
    }

    /// Partially updates records from `Encodable` values.
    public func batchUpdate<T: Encodable>(_ records: [T], model: String) async throws {
        try await batchUpdate(try RecordCoding.objects(records), model: model)
    }

    /// Deletes records given by their ids.
    public func batchDelete(ids: [String], model: String) async throws {
        try await batchDelete(ids.map { ["id": .string($0)] }, model: model)
    }
}

/// Turns `Encodable` values into record objects.
public enum RecordCoding {
    /// Encodes each value with `JSONEncoder` and parses it as a JSON object.
    public static func objects<T: Encodable>(_ values: [T]) throws -> [JSONObject] {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        var result: [JSONObject] = []
        result.reserveCapacity(values.count)
        for value in values {
            let data = try encoder.encode(value)
            guard case .object(let object) = try JSONParser.parse(data) else {
                throw TributaryError(.invalidRecord, "\(T.self) does not encode to a JSON object; records must be objects.")
            }
            result.append(object)
        }
        return result
    }
}
