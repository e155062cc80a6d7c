import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import Synchronization
import Testing
import TributaryTestSupport
import TributaryCore
import TributaryEngine
import TributarySQLite
import TributaryServer
import TributaryStore

/// Set by the `stubborn` action when it finally returns.
let stubbornFinished = Mutex(false)

/// Actions over the live API (`POST /action/trigger`, `GET /action/{id}`): declarative and Swift
/// actions against a live provider on loopback, their limits and Nango's errors, and async actions
/// run by the worker with retries under one idempotency key.
@Suite("Actions API")
struct ActionAPITests {
    static let providerKey = "sk_live_ACTION_SECRET"
    static let target = ["Connection-Id": "c1", "Provider-Config-Key": "echo"]

    /// The idempotency keys the `flaky` action saw, attempt by attempt.
    final class Attempts: Sendable {
        let keys = Mutex<[String]>([])
    }

    static var actions: [any ActionFunction] {
        [
            ClosureActionFunction(name: "lookup", modelFields: ["Note": [ModelField("id"), ModelField("text")]]) { nango, input in
                let ids = input["ids"]?.arrayValue?.compactMap(\.stringValue) ?? []
                let records = try await nango.getRecordsById(ids, model: "Note")
                try await nango.updateMetadata(["looked_up": .number(JSONNumber(records.count))])
                await nango.log("found \(records.count) of \(ids.count)")
                return ["found": .object(JSONObject(records.sorted { $0.key < $1.key }.map { ($0.key, JSONValue.object($0.value)) }))]
            },
            ClosureActionFunction(name: "boom") { _, _ in throw ActionError(["reason": "no such ticket", "ticket": 7]) },
            ClosureActionFunction(name: "slow") { nango, _ in
                while true {
                    try await Task.sleep(for: .milliseconds(10))
                    try nango.checkCancellation()
                }
            },
            ClosureActionFunction(name: "big") { _, _ in .string(String(repeating: "x", count: 500)) },
            // Ignores cancellation: blocks its thread for 3 s, then says it finished.
            ClosureActionFunction(name: "stubborn") { _, _ in
                usleep(3_000_000)
                stubbornFinished.withLock { $0 = true }
                return "done"
            },
        ]
    }

    static func flaky(_ attempts: Attempts) -> any ActionFunction {
        ClosureActionFunction(name: "flaky") { nango, input in
            let count = attempts.keys.withLock { keys -> Int in
                keys.append(nango.idempotencyKey)
                return keys.count
            }
            if count < 2 { throw ProviderUnavailable(status: 503, reason: "the shop is down") }
            return ["attempt": .number(JSONNumber(nango.attempt)), "input": input]
        }
    }

    struct Harness: Sendable {
        let api: APIClient
        let store: SQLiteStore
        let attempts: Attempts
    }

    func withActions(_ test: @escaping @Sendable (Harness) async throws -> Void) async throws {
        let echo = EchoProvider()
        try await echo.serve { baseURL in
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-actions-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let config = try ConfigLoader.parse(
                yaml: """
                    scheduler: { lease_seconds: 5 }
                    environments:
                      dev:
                        secret_key: \(devKey)
                        webhooks: { urls: ["http://127.0.0.1:9/hooks"], signing_key: whsk-actions-0123456789 }
                    integrations:
                      echo:
                        base_url: \(baseURL)/api
                        auth: { type: api_key, header: X-Api-Key }
                        syncs:
                          notes: { function: notes, models: [Note], frequency: every day }
                        actions:
                          create-note:
                            description: Adds a note to a ticket
                            endpoint: /tickets/{input.ticket}/notes
                            query: { store: "{metadata.store}" }
                            headers: { Idempotency-Key: "{idempotency_key}" }
                            body: { text: "{input.text}", count: "{input.count}", tags: ["{input.tag}", "x-{input.tag}"], connection: "{connection_id}" }
                          failing:
                            method: GET
                            endpoint: /fail
                            query: { status: "404" }
                          picked:
                            method: GET
                            endpoint: /things
                            output: headers.x-api-key
                          lookup: {}
                          boom: {}
                          slow: { timeout_seconds: 1 }
                          stubborn: { timeout_seconds: 1 }
                          greeting:
                            endpoint: /greetings
                            body: { text: "{input.first} {input.last}", whole: "{input.first}" }
                          big: { max_output_bytes: 100 }
                          flaky: {}
                    """, file: "actions.yaml", environment: [:])
            let store = try SQLiteStore(path: directory.appendingPathComponent("a.sqlite").path)
            defer { try? store.close() }
            try await store.migrate()
            var logger = Logger(label: "actions-test")
            logger.logLevel = .critical
            let cipher = try CredentialCipher(base64Key: Data(repeating: 7, count: 32).base64EncodedString())
            let http = OutboundHTTP()
            let providers = ProviderAccess(
                config: config, store: store, cipher: cipher, http: http,
                policy: OutboundPolicy(timeout: .seconds(5), retries: 0, baseDelay: .milliseconds(5), maxDelay: .milliseconds(20)), logger: logger)
            let attempts = Attempts()
            let functions = try SyncFunctionRegistry([], actions: Self.actions + [Self.flaky(attempts)])
            let executor = ActionExecutor(store: store, config: config, functions: functions, providers: providers, retryDelaySeconds: 0.05, logger: logger)
            let worker = ActionWorker(executor: executor, poll: .milliseconds(50), logger: logger)
            let api = API(
                config: config, runs: RunQueue(store: store, worker: nil), cipher: cipher, providers: providers, functions: functions, actions: executor,
                actionWorker: worker)
            do {
                try await buildApplication(api: api, services: [worker], logger: logger, port: 0).test(.live) { client in
                    let client = APIClient(client: client)
                    let created = try await client.send(
                        .post, "/connections",
                        body: [
                            "provider_config_key": "echo", "connection_id": "c1", "credentials": ["type": "API_KEY", "apiKey": .string(Self.providerKey)],
                            "metadata": ["store": "eu/1"],
                        ])
                    #expect(created.status == .created)
                    try await test(Harness(api: client, store: store, attempts: attempts))
                }
            } catch {
                try? await http.shutdown()
                throw error
            }
            try await http.shutdown()
        }
    }

    func trigger(_ api: APIClient, _ name: String, input: JSONValue = .null, headers: [String: String] = [:]) async throws -> APIResponse {
        try await api.send(
            .post, "/action/trigger", body: ["action_name": .string(name), "input": input], headers: Self.target.merging(headers) { _, new in new })
    }

    @Test func aDeclarativeActionSendsItsFilledRequestAndAnswersTheProvidersJSON() async throws {
        try await withActions { h in
            let got = try await trigger(h.api, "create-note", input: ["ticket": "T/1", "text": "Call back", "count": 3, "tag": "vip"])
            #expect(got.status == .ok)
            #expect(got.json["method"] == "POST")
            #expect(got.json["path"] == "/api/tickets/T%2F1/notes", "an input value stays one path segment")
            #expect(got.json["query"] == "store=eu%2F1")
            let headers = got.json["headers"]
            #expect(headers?["x-api-key"]?.stringValue == Self.providerKey, "the connection's credentials")
            let key = try #require(headers?["idempotency-key"]?.stringValue)
            #expect(key.count == 36)
            let sent = try JSONParser.parse(try #require(got.json["body"]?.stringValue))
            #expect(sent == ["text": "Call back", "count": 3, "tags": ["vip", "x-vip"], "connection": "c1"], "a whole-token value keeps its JSON type")
            // Two tokens in one string are text; one whole token keeps its type.
            let greeting = try await trigger(h.api, "greeting", input: ["first": "Ada", "last": "Lovelace"])
            #expect(try JSONParser.parse(try #require(greeting.json["body"]?.stringValue)) == ["text": "Ada Lovelace", "whole": "Ada"])
            // The output path picks a value; the execution is recorded.
            let picked = try await trigger(h.api, "picked")
            #expect(picked.status == .ok && picked.json == .string(Self.providerKey))
            let runs = try await h.store.actionRuns(environment: "dev", connection: nil, limit: 10)
            #expect(runs.count == 3 && runs.allSatisfy { $0.status == .succeeded && !$0.isAsync && $0.output == nil })
            #expect(runs.contains { $0.id == key }, "the idempotency key is the execution's id")
        }
    }

    @Test func aSwiftActionReadsRecordsAndMetadataAndLogs() async throws {
        try await withActions { h in
            // Records of the connection's base variant, as a sync saved them.
            let variant = VariantRef(connection: ConnectionRef(environment: "dev", providerConfigKey: "echo", connectionId: "c1"), syncName: "notes", variant: "base")
            let run = try await h.store.startRun(variant, RunStart(tracksDeletes: false))
            _ = try await h.store.saveRecords(
                [try PreparedRecord(["id": "n1", "text": "one"]), try PreparedRecord(["id": "n2", "text": "two"])], model: "Note", for: run.lease)
            _ = try await h.store.deleteRecords(ids: ["n2"], model: "Note", for: run.lease)
            _ = try await h.store.completeRun(run.lease, RunCompletion(outcome: .succeeded))
            let got = try await trigger(h.api, "lookup", input: ["ids": ["n1", "n2", "n3"]])
            #expect(got.status == .ok)
            #expect(got.json == ["found": ["n1": ["id": "n1", "text": "one"]]], "deleted and unknown ids are absent")
            let metadata = try await h.store.metadata(of: variant.connection)
            #expect(metadata == ["store": "eu/1", "looked_up": 1])
            let execution = try #require(try await h.store.actionRuns(environment: "dev", connection: variant.connection, limit: 1).first)
            #expect(try await h.store.actionLogs(execution.id, limit: 10).map(\.message) == ["found 1 of 3"])
            // GET /scripts/config lists the integration's actions.
            let scripts = try await h.api.send(.get, "/scripts/config")
            let actions = try #require(scripts.json[0]?["actions"]?.arrayValue)
            #expect(
                actions.compactMap { $0["name"]?.stringValue }.sorted()
                    == ["big", "boom", "create-note", "failing", "flaky", "greeting", "lookup", "picked", "slow", "stubborn"])
            let lookup = try #require(actions.first { $0["name"] == "lookup" })
            #expect(lookup["type"] == "action" && lookup["returns"] == ["Note"] && lookup["models"]?[0]?["fields"]?[1]?["name"] == "text")
            #expect(actions.first { $0["name"] == "create-note" }?["description"] == "Adds a note to a ticket")
        }
    }

    @Test func failuresAnswerNangosErrorsAndLimitsHold() async throws {
        try await withActions { h in
            let boom = try await trigger(h.api, "boom")
            #expect(boom.status == .internalServerError && boom.errorCode == "action_script_runtime_error")
            #expect(boom.json["error"]?["payload"] == ["reason": "no such ticket", "ticket": 7])
            let started = ContinuousClock.now
            let slow = try await trigger(h.api, "slow")
            #expect(slow.status == .internalServerError && slow.errorCode == "action_script_failure" && slow.errorMessage?.contains("time limit of 1 s") == true)
            #expect(ContinuousClock.now - started < .seconds(10), "stopped at its limit")
            // An action that ignores cancellation is not waited for: the app is answered at the limit.
            let stubborn = try await trigger(h.api, "stubborn")
            #expect(stubborn.status == .internalServerError && stubborn.json["error"]?["payload"] == ["reason": "timeout"])
            #expect(!stubbornFinished.withLock { $0 }, "answered before the action returned")
            let big = try await trigger(h.api, "big")
            #expect(big.status == .badRequest && big.errorCode == "script_output_too_large" && big.errorMessage?.contains("502 bytes") == true)
            let failing = try await trigger(h.api, "failing")
            #expect(failing.status.code == 424 && failing.errorCode == "script_http_error" && failing.json["error"]?["payload"]?["status"] == 404)
            #expect(failing.errorMessage?.contains(Self.providerKey) == false)
            let missing = try await trigger(h.api, "create-note", input: ["text": "no ticket"])
            #expect(missing.status == .badRequest && missing.errorCode == "invalid_action_input" && missing.errorMessage?.contains("'ticket'") == true)
            let dots = try await trigger(h.api, "create-note", input: ["ticket": "..", "text": "x", "count": 1, "tag": "t"])
            #expect(dots.status == .badRequest && dots.errorCode == "invalid_action_input")
            // What the app got wrong, before anything runs.
            #expect(try await trigger(h.api, "nope").errorCode == "unknown_action")
            #expect(try await h.api.send(.post, "/action/trigger", body: ["action_name": "boom"], headers: ["Connection-Id": "zz", "Provider-Config-Key": "echo"]).status == .notFound)
            #expect(try await h.api.send(.post, "/action/trigger", body: ["action_name": "boom"], headers: ["Provider-Config-Key": "echo"]).errorCode == "missing_connection_id")
            #expect(try await h.api.send(.post, "/action/trigger", body: ["action_name": "boom", "extra": 1], headers: Self.target).errorCode == "invalid_body")
            #expect(try await trigger(h.api, "boom", headers: ["X-Max-Retries": "6"]).errorCode == "invalid_headers")
            #expect(try await trigger(h.api, "boom", headers: ["X-Async": "maybe"]).errorCode == "invalid_headers")
            #expect(try await h.api.send(.get, "/action/not-a-uuid").errorCode == "invalid_uri_params")
            #expect(try await h.api.send(.get, "/action/\(UUID().uuidString)").status == .notFound)
            // Every failure was recorded as such.
            let runs = try await h.store.actionRuns(environment: "dev", connection: nil, limit: 20)
            #expect(runs.count == 7 && runs.allSatisfy { $0.status == .failed })
        }
    }

    @Test func anAsyncActionIsRetriedUnderOneIdempotencyKeyAndItsResultRead() async throws {
        try await withActions { h in
            let queued = try await trigger(h.api, "flaky", input: ["n": 1], headers: ["X-Async": "true", "X-Max-Retries": "2"])
            #expect(queued.status == .accepted)
            let id = try #require(queued.json["id"]?.stringValue)
            #expect(queued.json["statusUrl"] == .string("/action/\(id)") && queued.headers[.location] == "/action/\(id)")
            try await eventually("the async action ended") { try await h.api.send(.get, "/action/\(id)").status == .ok }
            let result = try await h.api.send(.get, "/action/\(id)")
            #expect(result.json == ["attempt": 2, "input": ["n": 1]], "the first attempt's 503 was retried")
            #expect(h.attempts.keys.withLock { $0 } == [id, id], "one idempotency key for every attempt")
            let run = try #require(try await h.store.actionRun(id, environment: "dev"))
            #expect(run.status == .succeeded && run.retryableFailures == 1 && run.attempts == 2)
            // The app is told it ended (Nango's async_action webhook, signed like every other).
            let delivery = try #require(try await h.store.deliveries(DeliveryQuery(environment: "dev")).first)
            #expect(try JSONParser.parse(delivery.body) == [
                "from": "nango", "type": "async_action", "connectionId": "c1", "providerConfigKey": "echo",
                "payload": ["id": .string(id), "statusUrl": .string("/action/\(id)")],
            ])
            // An async failure is read back with its error; an action with no retries fails at once.
            let failing = try await trigger(h.api, "boom", headers: ["X-Async": "1"])
            let failedId = try #require(failing.json["id"]?.stringValue)
            try await eventually("the failing action ended") { try await h.api.send(.get, "/action/\(failedId)").status != .notFound }
            let failed = try await h.api.send(.get, "/action/\(failedId)")
            #expect(failed.status == .internalServerError && failed.errorCode == "action_script_runtime_error")
            #expect(failed.json["error"]?["payload"] == ["reason": "no such ticket", "ticket": 7])
            // A synchronous execution is not readable there (Nango's getAsyncActionResult is for async ones).
            _ = try await trigger(h.api, "picked")
            let sync = try #require(try await h.store.actionRuns(environment: "dev", connection: nil, limit: 1).first)
            #expect(try await h.api.send(.get, "/action/\(sync.id)").status == .notFound)
        }
    }
}
