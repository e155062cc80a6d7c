#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
import Synchronization
import TributaryCore
import TributaryStore

/// The ``SyncContext`` a running sync function receives: it writes through to the store, counts
/// what changed per model and stops the function once cancelled (the executor keeps the lease alive).
///
/// For a provider webhook execution (a `WEBHOOK` run on the base variant) records it saves are
/// marked seen in whatever deletion-tracking window the variant has open at that moment, so a full
/// refresh in progress never deletes them; checkpoints are read-only there (they belong to the
/// variant's own runs).
final class RunContext: SyncContext {
    static let maximumLogLines = 10_000
    static let maximumLogMessageBytes = 16_384

    let store: any Store
    let ref: VariantRef
    let sync: SyncConfig
    let runId: Int64
    let deletionGeneration: Int64?
    let logger: Logger
    let lastSyncDate: Date?
    let providers: ProviderAccess?
    /// A webhook execution: records follow the variant's open deletion window, checkpoints are read-only.
    let isWebhookExecution: Bool

    private struct Progress {
        var results: [String: ModelResult] = [:]
        var logLines = 0
    }
    private let progress = Mutex(Progress())

    init(store: any Store, ref: VariantRef, sync: SyncConfig, started: StartedRun, providers: ProviderAccess?, logger: Logger) {
        self.providers = providers
        self.store = store
        self.ref = ref
        self.sync = sync
        self.runId = started.runId
        self.deletionGeneration = started.deletionGeneration
        self.lastSyncDate = started.state.lastSyncDate?.date
        self.logger = logger
        self.isWebhookExecution = started.kind == .webhook
    }

    var environment: String { ref.connection.environment }
    var providerConfigKey: String { ref.connection.providerConfigKey }
    var connectionId: String { ref.connection.connectionId }
    var syncName: String { ref.syncName }
    var variant: String { ref.variant }
    var models: [String] { sync.models }

    /// Per-model counts so far; every declared model appears.
    var results: [String: ModelResult] {
        progress.withLock { progress in
            var results = progress.results
            for model in sync.models where results[model] == nil { results[model] = ModelResult() }
            return results
        }
    }

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
        try refuseInWebhookExecution("saveCheckpoint")
        try await store.saveCheckpoint(checkpoint, for: ref)
    }

    func clearCheckpoint() async throws {
        try checkCancellation()
        try refuseInWebhookExecution("clearCheckpoint")
        try await store.clearCheckpoint(for: ref)
    }

    private func refuseInWebhookExecution(_ operation: String) throws {
        if isWebhookExecution {
            throw TributaryError(
                .invalidCheckpoint, "\(operation) is not available in a webhook handler: the checkpoint belongs to the variant's sync runs.")
        }
    }

    /// The generation saved records are marked seen in: the run's own window, or — for a webhook
    /// execution — the one the variant has open now.
    private func seenGeneration() async throws -> Int64? {
        guard isWebhookExecution else { return deletionGeneration }
        return try await store.variantState(ref)?.deletionGeneration
    }

    // MARK: Metadata

    func getMetadata() async throws -> JSONObject {
        try checkCancellation()
        return try await store.metadata(of: ref.connection)
    }

    func setMetadata(_ metadata: JSONObject) async throws {
        try checkCancellation()
        try await store.setMetadata(metadata, of: [ref.connection])
    }

    func updateMetadata(_ metadata: JSONObject) async throws {
        try checkCancellation()
        try await store.updateMetadata(metadata, of: [ref.connection])
    }

    // MARK: Records

    func batchSave(_ records: [JSONObject], model: String) async throws {
        try checkCancellation()
        try checkModel(model)
        guard !records.isEmpty else { return }
        var prepared: [PreparedRecord] = []
        prepared.reserveCapacity(records.count)
        for record in records { prepared.append(try PreparedRecord(record)) }
        try await save(prepared, model: model)
    }

    func batchSave(prepared records: [PreparedRecord], model: String) async throws {
        try checkCancellation()
        try checkModel(model)
        guard !records.isEmpty else { return }
        try await save(records, model: model)
    }

    private func save(_ records: [PreparedRecord], model: String) async throws {
        let result = try await store.saveRecords(records, model: model, of: ref, seenGeneration: try await seenGeneration())
        self.record(result, for: model)
    }

    func batchUpdate(_ records: [JSONObject], model: String) async throws {
        try checkCancellation()
        try checkModel(model)
        guard !records.isEmpty else { return }
        let patches = try records.map { object throws(TributaryError) in try RecordPatch(object) }
        let result = try await store.updateRecords(patches, model: model, of: ref, seenGeneration: try await seenGeneration())
        self.record(result, for: model)
    }

    func batchDelete(_ records: [JSONObject], model: String) async throws {
        try checkCancellation()
        try checkModel(model)
        guard !records.isEmpty else { return }
        let ids = try records.map { object throws(TributaryError) in try PreparedRecord.externalId(of: object) }
        let result = try await store.deleteRecords(ids: ids, model: model, of: ref)
        self.record(result, for: model)
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
        logger.log(level: level.swiftLogLevel, "\(text)", metadata: ["run": "\(runId)", "variant": "\(ref)"])
        do {
            try await store.appendLog(run: runId, level: level, message: text)
        } catch {
            logger.warning("could not store a run log line", metadata: ["run": "\(runId)", "error": "\(error)"])
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
