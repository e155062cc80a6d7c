import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Synchronization
import TributaryCore
import TributaryEngine
import TributarySQLite
import TributaryServer
import TributaryStore
import TributaryTestSupport

let devKey = "dev-key-0000000000000001"
let prodKey = "prod-key-000000000000001"

/// Opens and closes a gate a sync function waits on (to hold a run open).
final class Gate: Sendable {
    private let open = Mutex(false)
    private let entered = Mutex(0)
    func release() { open.withLock { $0 = true } }
    var isOpen: Bool { open.withLock { $0 } }
    func enter() { entered.withLock { $0 += 1 } }
    var entries: Int { entered.withLock { $0 } }
}

/// The real application over a real SQLite file, with a test configuration and test functions.
final class ServerFixture: Sendable {
    static let configYAML = """
        server:
          max_variants_per_sync: 3
          public_url: https://sync.example.test/
        environments:
          dev:
            secret_key: \(devKey)
          prod:
            secret_key: \(prodKey)
            expose_credentials: false
            variables: { SHOP_REGION: eu, FEATURE_X: "on" }
        integrations:
          shop:
            syncs:
              items:
                function: items
                models: [Item]
                frequency: every hour
                track_deletes: true
              slow:
                function: slow
                models: [Slow]
                frequency: every hour
            actions:
              greet:
                description: Says hello
          keyed:
            auth: { type: api_key, header: X-Api-Key }
            syncs:
              contacts:
                function: items
                models: [Contact]
                frequency: every day
                auto_start: false
          prod-only:
            environments: [prod]
            syncs:
              things:
                function: items
                models: [Thing]
                frequency: every day
        """

    let directory: URL
    let store: SQLiteStore
    let api: API
    /// The worker running the API's queued runs (role `all`).
    let worker: RunCoordinator
    /// The worker running async actions.
    let actionWorker: ActionWorker
    let gate = Gate()
    let config: TributaryConfig
    /// The fixture's own Prometheus registry, fed by its worker and served at `/metrics`.
    let metricsExport = MetricsExport(snapshotInterval: .zero)
    let functions: SyncFunctionRegistry

    /// - Parameter extraYAML: top-level configuration sections put before the fixture's own.
    init(extraYAML: String = "") async throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-server-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        store = try SQLiteStore(path: directory.appendingPathComponent("api.sqlite").path)
        try await store.migrate()
        config = try ConfigLoader.parse(yaml: extraYAML + Self.configYAML, file: "test.yaml", environment: [:])
        let gate = self.gate
        // Saves `<variant>.count` records (default 3) of the sync's first model, ids `<variant>-<n>`,
        // and records what metadata it saw.
        let items = ClosureSyncFunction(name: "items", modelFields: ["Item": [ModelField("id"), ModelField("n", "number", optional: true)]]) { nango in
            let metadata = try await nango.getMetadata()
            let count = metadata["\(nango.variant).count"]?.int64Value ?? 3
            let label = metadata["\(nango.variant).label"]?.stringValue ?? "none"
            let records: [JSONObject] = (0..<count).map { ["id": .string("\(nango.variant)-\($0)"), "label": .string(label)] }
            try await nango.batchSave(records, model: nango.models[0])
            await nango.log("saved \(count) records labelled <\(label)>")
        }
        let slow = ClosureSyncFunction(name: "slow") { nango in
            gate.enter()
            while !gate.isOpen {
                try await Task.sleep(for: .milliseconds(5))
                try nango.checkCancellation()
            }
            try await nango.batchSave([["id": "s"]], model: "Slow")
        }
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        // Answers `{"hello": input.name}` after a log line; fails with an ActionError without a name.
        let greet = ClosureActionFunction(name: "greet") { nango, input in
            await nango.log("greeting <\(input["name"]?.stringValue ?? "nobody")>")
            guard let name = input["name"]?.stringValue else { throw ActionError(["missing": "name"]) }
            return ["hello": .string(name)]
        }
        let functions = try SyncFunctionRegistry([items, slow], actions: [greet])
        self.functions = functions
        let executor = SyncExecutor(store: store, functions: functions, logger: logger, metrics: metricsExport.metrics)
        worker = RunCoordinator(executor: executor, config: config, logger: logger)
        let actions = ActionExecutor(store: store, config: config, functions: functions, providers: nil, logger: logger)
        actionWorker = ActionWorker(executor: actions, poll: .milliseconds(50), logger: logger)
        api = API(
            config: config, runs: RunQueue(store: store, worker: worker),
            cipher: try CredentialCipher(base64Key: Data(repeating: 1, count: 32).base64EncodedString()), functions: functions,
            actions: actions, actionWorker: actionWorker, metricsExport: metricsExport)
    }

    deinit {
        gate.release()
        try? store.close()
        try? FileManager.default.removeItem(at: directory)
    }

    var logger: Logger {
        var logger = Logger(label: "test-app")
        logger.logLevel = .critical
        return logger
    }

    /// Runs `test` against the router (no network).
    func withRouter(_ test: @escaping @Sendable (APIClient) async throws -> Void) async throws {
        try await buildApplication(api: api, services: [worker, actionWorker], logger: logger).test(.router) { client in try await test(APIClient(client: client)) }
    }

    /// Runs `test` against a live server on a loopback port.
    func withLiveServer(_ test: @escaping @Sendable (APIClient) async throws -> Void) async throws {
        try await buildApplication(api: api, services: [worker, actionWorker], logger: logger, port: 0).test(.live) { client in try await test(APIClient(client: client)) }
    }

    /// Waits until no run of `ref` is active and it has at least `runs` runs.
    func waitForRuns(_ ref: VariantRef, count: Int = 1) async throws -> RunRecord {
        let store = self.store
        let worker = self.worker
        try await eventually("\(count) finished runs of \(ref)") {
            let runs = try await store.runs(of: ref, limit: 100)
            guard runs.count >= count, let latest = runs.first else { return false }
            return latest.status.isFinished && !worker.isRunningHere(ref)
        }
        return try await store.runs(of: ref, limit: 1)[0]
    }
}


/// A JSON response.
struct APIResponse: Sendable {
    let status: HTTPResponse.Status
    let json: JSONValue
    let contentType: String?
    var headers: HTTPFields = [:]

    var errorCode: String? { json["error"]?["code"]?.stringValue }
    var errorMessage: String? { json["error"]?["message"]?.stringValue }
}

/// Sends JSON requests with the dev key unless told otherwise.
struct APIClient: Sendable {
    let client: any TestClientProtocol

    @discardableResult
    func send(
        _ method: HTTPRequest.Method, _ uri: String, body: JSONValue? = nil, rawBody: String? = nil, key: String? = devKey,
        headers extra: [String: String] = [:]
    ) async throws -> APIResponse {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let key { headers[.authorization] = "Bearer \(key)" }
        for (name, value) in extra { headers[HTTPField.Name(name)!] = value }
        var buffer: ByteBuffer? = nil
        if let body { buffer = ByteBuffer(bytes: JSONWriter.bytes(body, canonical: false)) }
        if let rawBody { buffer = ByteBuffer(string: rawBody) }
        let response = try await client.execute(uri: uri, method: method, headers: headers, body: buffer)
        let bytes = Array(response.body.readableBytesView)
        let json = bytes.isEmpty ? JSONValue.null : ((try? JSONParser.parse(bytes)) ?? .string(String(decoding: bytes, as: UTF8.self)))
        return APIResponse(status: response.status, json: json, contentType: response.headers[.contentType], headers: response.headers)
    }

    /// Imports a connection with NONE credentials.
    @discardableResult
    func connect(_ id: String, integration: String = "shop", key: String = devKey) async throws -> APIResponse {
        try await send(
            .post, "/connections", body: ["provider_config_key": .string(integration), "connection_id": .string(id), "credentials": ["type": "NONE"]],
            key: key)
    }

    /// Reads every record of a dataset with cursor paging.
    func allRecords(connection: String, model: String, variant: String? = nil, pageSize: Int = 2, integration: String = "shop") async throws
        -> [JSONObject]
    {
        var records: [JSONObject] = []
        var cursor: String? = nil
        repeat {
            var uri = "/records?model=\(model)&limit=\(pageSize)"
            if let variant { uri += "&variant=\(variant)" }
            if let cursor { uri += "&cursor=\(cursor.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)" }
            let page = try await send(.get, uri, headers: ["Connection-Id": connection, "Provider-Config-Key": integration])
            guard page.status == .ok else { throw APIErrorResponse(response: page) }
            records += page.json["records"]?.arrayValue?.compactMap(\.objectValue) ?? []
            cursor = page.json["next_cursor"]?.stringValue
        } while cursor != nil
        return records
    }
}

struct APIErrorResponse: Error { let response: APIResponse }
