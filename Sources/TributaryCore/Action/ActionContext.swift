/// What an action sees: its connection (provider calls with its credentials, metadata, records) and
/// its execution (name, idempotency key, attempt, log).
///
/// Every call first checks for cancellation and throws `CancellationError` once the action was
/// stopped (its time limit, a shutdown). Metadata writes are fenced like a sync run's: an execution
/// that lost its lease (it was taken over after a crash) cannot write.
public protocol ActionContext: ProviderCaller {
    /// The environment the connection belongs to (`dev`, `prod`, …).
    var environment: String { get }
    /// The integration (`provider_config_key`).
    var providerConfigKey: String { get }
    /// The customer connection (`connection_id`).
    var connectionId: String { get }
    /// The action's name.
    var actionName: String { get }
    /// The same for every attempt of this execution (an async action retried, or run again after
    /// the process running it died): pass it to providers that take an idempotency key, so an
    /// action that runs twice acts once.
    var idempotencyKey: String { get }
    /// 1 for the first attempt of this execution.
    var attempt: Int { get }

    /// The connection's metadata (a JSON object; `{}` when unset).
    func getMetadata() async throws -> JSONObject
    /// Replaces the connection's metadata.
    func setMetadata(_ metadata: JSONObject) async throws
    /// Shallow-merges `metadata` into the connection's metadata.
    func updateMetadata(_ metadata: JSONObject) async throws

    /// Records of `model` in the connection's `variant` (`base` for the usual single-instance sync)
    /// by id, as synced (without `_nango_metadata`); ids that are unknown or deleted are absent.
    /// At most 1,000 ids per call. Ids are matched by their bytes, but the answer is keyed by
    /// `String`, which compares by Unicode canonical equivalence: two ids that differ only in their
    /// normalization (`"é"` and `"e\u{301}"`) are one key of it, so ask for such ids in separate calls.
    func getRecordsById(_ ids: [String], model: String, variant: String) async throws -> [String: JSONObject]

    /// Writes a line to the execution's log (kept with it, visible through the API and dashboard).
    func log(_ message: String, level: LogLevel) async
    /// Throws `CancellationError` if the action was stopped.
    func checkCancellation() throws
}

extension ActionContext {
    /// Records of `model` synced into the connection's base variant, by id.
    public func getRecordsById(_ ids: [String], model: String) async throws -> [String: JSONObject] {
        try await getRecordsById(ids, model: model, variant: "base")
    }

    /// Logs at `info` level.
    public func log(_ message: String) async { await log(message, level: .info) }
}
