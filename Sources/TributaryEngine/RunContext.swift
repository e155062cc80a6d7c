#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
import Synchronization
import TributaryCore
import TributaryStore

/// What a running sync function's context writes to: the run-scoped writes (each fenced by the
/// run's lease) and the reads of its variant and connection.
public typealias RunStore = RunLeaseStore & RecordWriter & StoreReader

/// The ``SyncContext`` a running sync function receives: every write goes to the store with the
/// run's lease (``RunLease``), so it is applied only while the run holds it — a write after the run
/// was cancelled, reset, deleted or taken over fails with `lease_lost` and changes nothing. It counts
/// what changed per model for its logs (the run's results are the store's own) and stops the
/// function once cancelled (the executor keeps the lease alive).
///
/// For a provider webhook execution (a `WEBHOOK` run on the base variant) the store marks saved
/// records seen in whatever deletion-tracking window the variant has open at that moment, so a full
/// refresh in progress never deletes them; checkpoints are read-only there (they belong to the
/// variant's own runs).
final class RunContext: SyncContext {
    static let maximumLogLines = 10_000
    static let maximumLogMessageBytes = 16_384

    let store: any RunStore
    let ref: VariantRef
    let sync: SyncConfig
    let lease: RunLease
    let logger: Logger
    let lastSyncDate: Date?
    let providers: ProviderAccess?
    /// A webhook execution: checkpoints are read-only.
    let isWebhookExecution: Bool
    let detectsDeletes: Bool

    private struct Progress {
        var results: [String: ModelResult] = [:]
        var logLines = 0
    }
    private let progress = Mutex(Progress())

    let metrics: TributaryMetrics
    let tracer: TributaryTracer

    init(
        store: any RunStore, ref: VariantRef, sync: SyncConfig, started: StartedRun, providers: ProviderAccess?, metrics: TributaryMetrics = .disabled,
        tracer: TributaryTracer = .disabled, logger: Logger
    ) {
        self.metrics = metrics
        self.tracer = tracer
        self.providers = providers
        self.store = store
        self.ref = ref
        self.sync = sync
        self.lease = started.lease
        self.lastSyncDate = started.state.lastSyncDate?.date
        self.logger = logger
        self.isWebhookExecution = started.kind == .webhook
        // A run that distrusts its checkpoint deletes nothing, but it still reads every page it can.
        self.detectsDeletes = !isWebhookExecution && sync.detectsDeletes
    }

    var environment: String { ref.connection.environment }
    var providerConfigKey: String { ref.connection.providerConfigKey }
    var connectionId: String { ref.connection.connectionId }
    var syncName: String { ref.syncName }
    var variant: String { ref.variant }
    var models: [String] { sync.models }

    /// What this attempt changed per model (for its log line; the run's results add up every attempt).
    var results: [String: ModelResult] { progress.withLock { $0.results } }

    func checkCancellation() throws { try Task.checkCancellation() }

    func send(_ request: ProviderRequest) async throws -> ProviderResponse {
        try checkCancellation()
        guard let providers else {
            throw TributaryError(.providerError, "This process has no provider access configured; sync functions cannot call providers here.")
        }
        return try await providers.send(request, for: ref.connection)
    }

    private func checkModel(_ model: String) throws {
        guard sync.models.contains(model) else {
            throw TributaryError(
                .unknownModel,
                "Model '\(model)' is not declared by sync '\(sync.name)' (declared: \(sync.models.joined(separator: ", "))).")
        }
    }

    private func record(_ result: ModelResult, for model: String) {
        progress.withLock { $0.results[model, default: ModelResult()] += result }
    }

    // MARK: Checkpoints

    func getCheckpoint() async throws -> Checkpoint? {
        try checkCancellation()
        return try await store.variantState(ref)?.checkpoint
    }

    func saveCheckpoint(_ checkpoint: Checkpoint) async throws {
        try checkCancellation()
        try refuseInWebhookExecution()
        try await tracer.storeWrite("checkpoint", metrics: metrics) { try await store.saveCheckpoint(checkpoint, for: lease) }
    }

    func clearCheckpoint() async throws {
        try checkCancellation()
        try refuseInWebhookExecution()
        try await store.clearCheckpoint(for: lease)
    }

    private func refuseInWebhookExecution() throws {
        if isWebhookExecution { throw StoreMessages.checkpointInWebhookRun }
    }

    // MARK: Metadata

    func getMetadata() async throws -> JSONObject {
        try checkCancellation()
        return try await store.metadata(of: ref.connection)
    }

    func setMetadata(_ metadata: JSONObject) async throws {
        try checkCancellation()
        try await store.setMetadata(metadata, for: lease)
    }

    func updateMetadata(_ metadata: JSONObject) async throws {
        try checkCancellation()
        try await store.updateMetadata(metadata, for: lease)
    }

    // MARK: Records

    var writeExecutor: (any WriteExecutor)? { store.writeExecutor }

    func batchSave(_ records: [JSONObject], model: String) async throws {
        try checkCancellation()
        try checkModel(model)
        guard !records.isEmpty else { return }
        try await save(try await PreparedRecord.preparing(records), model: model)
    }

    func batchSave(prepared records: [PreparedRecord], model: String) async throws {
        try checkCancellation()
        try checkModel(model)
        guard !records.isEmpty else { return }
        try await save(records, model: model)
    }

    func batchSave(prepared records: [PreparedRecord], model: String, checkpoint: Checkpoint) async throws {
        try checkCancellation()
        try checkModel(model)
        try refuseInWebhookExecution()
        guard !records.isEmpty else { return try await saveCheckpoint(checkpoint) }
        try await save(records, model: model, checkpoint: checkpoint)
    }

    /// One store write: the records and, if given, the checkpoint after them.
    private func save(_ records: [PreparedRecord], model: String, checkpoint: Checkpoint? = nil) async throws {
        let result = try await tracer.storeWrite("save_records", model: model, records: records.count, metrics: metrics) {
            try await store.saveRecords(records, model: model, checkpoint: checkpoint, for: lease)
        }
        record(result, for: model)
        Failpoint.hit("run.saved")
    }

    func batchUpdate(_ records: [JSONObject], model: String) async throws {
        try checkCancellation()
        try checkModel(model)
        guard !records.isEmpty else { return }
        let patches = try records.map { object throws(TributaryError) in try RecordPatch(object) }
        record(try await tracer.storeWrite("update_records", model: model, records: patches.count, metrics: metrics) { try await store.updateRecords(patches, model: model, for: lease) }, for: model)
    }

    func batchDelete(_ records: [JSONObject], model: String) async throws {
        try checkCancellation()
        try checkModel(model)
        guard !records.isEmpty else { return }
        let ids = try records.map { object throws(TributaryError) in try PreparedRecord.externalId(of: object) }
        record(try await tracer.storeWrite("delete_records", model: model, records: ids.count, metrics: metrics) { try await store.deleteRecords(ids: ids, model: model, for: lease) }, for: model)
    }

    // MARK: Logs

    func log(_ message: String, level: LogLevel) async {
        let line = progress.withLock { progress -> Int in
            progress.logLines += 1
            return progress.logLines
        }
        guard line <= Self.maximumLogLines + 1 else { return }
        var text = message
        if text.utf8.count > Self.maximumLogMessageBytes {
            text = String(decoding: Array(text.utf8.prefix(Self.maximumLogMessageBytes)), as: UTF8.self) + "… (truncated)"
        }
        if line == Self.maximumLogLines + 1 {
            text = "Log limit of \(Self.maximumLogLines) lines reached; further lines of this run are dropped."
        }
        logger.log(level: level.swiftLogLevel, "\(text)", metadata: ["run": "\(lease.runId)", "variant": "\(ref)"])
        do {
            try await store.appendLog(lease, level: level, message: text)
        } catch {
            logger.warning("could not store a run log line", metadata: ["run": "\(lease.runId)", "error": "\(error)"])
        }
    }
}

extension LogLevel {
    var swiftLogLevel: Logger.Level {
        switch self {
        case .debug: .debug
        case .info: .info
        case .warn: .warning
        case .error: .error
        }
    }
}
