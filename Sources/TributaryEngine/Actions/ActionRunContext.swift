import Logging
import Synchronization
import TributaryCore
import TributaryStore

/// The ``ActionContext`` an executing action receives: provider calls through the connection,
/// reads of its metadata and records, and writes (metadata, log lines) fenced by the execution's
/// lease — an attempt that lost it writes nothing.
final class ActionRunContext: ActionContext {
    static let maximumLogLines = 1_000
    static let maximumRecordIds = 1_000

    let store: any ActionStore & StoreReader
    let connection: ConnectionRef
    let actionName: String
    let lease: ActionLease
    let providers: ProviderAccess?
    let logger: Logger
    private let logLines = Mutex(0)

    init(store: any ActionStore & StoreReader, connection: ConnectionRef, actionName: String, lease: ActionLease, providers: ProviderAccess?, logger: Logger) {
        self.store = store
        self.connection = connection
        self.actionName = actionName
        self.lease = lease
        self.providers = providers
        self.logger = logger
    }

    var environment: String { connection.environment }
    var providerConfigKey: String { connection.providerConfigKey }
    var connectionId: String { connection.connectionId }
    var idempotencyKey: String { lease.id }
    var attempt: Int { Int(lease.token) }

    func checkCancellation() throws { try Task.checkCancellation() }

    func send(_ request: ProviderRequest) async throws -> ProviderResponse {
        try checkCancellation()
        guard let providers else {
            throw TributaryError(.providerError, "This process has no provider access configured; actions cannot call providers here.")
        }
        return try await providers.send(request, for: connection)
    }

    func getMetadata() async throws -> JSONObject {
        try checkCancellation()
        return try await store.metadata(of: connection)
    }

    func setMetadata(_ metadata: JSONObject) async throws {
        try checkCancellation()
        try await store.changeMetadata(metadata, merge: false, for: lease)
    }

    func updateMetadata(_ metadata: JSONObject) async throws {
        try checkCancellation()
        try await store.changeMetadata(metadata, merge: true, for: lease)
    }

    func getRecordsById(_ ids: [String], model: String, variant: String) async throws -> [String: JSONObject] {
        try checkCancellation()
        guard ids.count <= Self.maximumRecordIds else {
            throw TributaryError(.invalidQuery, "getRecordsById takes at most \(Self.maximumRecordIds) ids per call; got \(ids.count).")
        }
        let dataset = DatasetRef(connection: connection, model: model, variant: variant)
        let unique = Array(Set(ids))
        var records: [String: JSONObject] = [:]
        // The feed reads up to 100 ids per query.
        for start in stride(from: 0, to: unique.count, by: ChangeQuery.maximumIds) {
            try checkCancellation()
            let chunk = Array(unique[start..<min(start + ChangeQuery.maximumIds, unique.count)])
            let page = try await store.changes(try ChangeQuery(dataset: dataset, limit: chunk.count, actions: [.added, .updated], ids: chunk))
            for record in page.records {
                if let object = try JSONParser.parse(record.json).objectValue { records[record.id] = object }
            }
        }
        return records
    }

    func log(_ message: String, level: LogLevel) async {
        let line = logLines.withLock { count -> Int in
            count += 1
            return count
        }
        guard line <= Self.maximumLogLines + 1 else { return }
        var text = message
        if text.utf8.count > RunContext.maximumLogMessageBytes {
            text = String(decoding: Array(text.utf8.prefix(RunContext.maximumLogMessageBytes)), as: UTF8.self) + "… (truncated)"
        }
        if line == Self.maximumLogLines + 1 { text = "Log limit of \(Self.maximumLogLines) lines reached; further lines of this action are dropped." }
        logger.log(level: level.swiftLogLevel, "\(text)", metadata: ["action": "\(actionName)", "execution": "\(lease.id)"])
        do {
            try await store.appendActionLog(lease, level: level, message: text)
        } catch {
            logger.warning("could not store an action log line", metadata: ["execution": "\(lease.id)", "error": "\(error)"])
        }
    }
}
