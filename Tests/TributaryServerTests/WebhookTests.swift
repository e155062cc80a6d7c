import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
import Testing
import TributaryCore
import TributaryEngine
import TributarySQLite
import TributaryServer
import TributaryStore
import TributaryTestSupport

/// The app's webhook endpoint on a loopback port: records every request; answers 503 to the first
/// `failFirst` ones, 200 after.
final class WebhookReceiver: Sendable {
    struct Received: Sendable {
        let headers: [String: String]
        let body: [UInt8]
        let answered: Int
    }

    let received = Mutex<[Received]>([])
    let failFirst: Int

    init(failFirst: Int = 0) { self.failFirst = failFirst }

    var successes: [Received] { received.withLock { $0.filter { $0.answered == 200 } } }

    /// Serves on `port` until `body` returns.
    func serve(port: Int, _ body: @escaping @Sendable () async throws -> Void) async throws {
        let router = Router()
        router.post("/hooks") { request, _ -> Response in
            var request = request
            let bytes = Array(try await request.collectBody(upTo: 1_000_000).readableBytesView)
            var headers: [String: String] = [:]
            for field in request.headers { headers[field.name.canonicalName.lowercased()] = field.value }
            let status = self.received.withLock { received -> Int in
                let status = received.count < self.failFirst ? 503 : 200
                received.append(Received(headers: headers, body: bytes, answered: status))
                return status
            }
            return Response(status: HTTPResponse.Status(code: status))
        }
        var logger = Logger(label: "receiver")
        logger.logLevel = .critical
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)), logger: logger)
        try await runServices([app], while: body)
    }
}

/// Runs `services` in a service group while `body` runs, then shuts them down gracefully.
func runServices(_ services: [any Service], while body: @escaping @Sendable () async throws -> Void) async throws {
    var logger = Logger(label: "services")
    logger.logLevel = .critical
    let group = ServiceGroup(services: services, gracefulShutdownSignals: [], logger: logger)
    try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        do {
            try await body()
        } catch {
            await group.triggerGracefulShutdown()
            throw error
        }
        await group.triggerGracefulShutdown()
        try await tasks.waitForAll()
    }
}

/// The ids the test provider lists.
final class ProviderListing: Sendable {
    let ids: Mutex<[String]>
    init(_ ids: [String]) { self.ids = Mutex(ids) }
}

let signingKey = "whsec-0123456789abcdef0123"
let providerSecret = "shop-webhook-secret-1"

@Suite("Webhooks: durable signed webhooks to the app, provider webhooks in")
struct WebhookTests {
    func directory() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-webhooks-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }

    var logger: Logger {
        var logger = Logger(label: "webhook-test")
        logger.logLevel = .critical
        return logger
    }

    @Test func whileTheReceiverIsDownWebhooksWaitSurviveARestartAndArriveOnceEachInRunOrderSigned() async throws {
        let directory = try directory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let port = try childProcessPorts()[0]
        let config = try ConfigLoader.parse(
            yaml: """
                webhook_delivery: { timeout_seconds: 2, retry_base_seconds: 0.05, retry_max_seconds: 0.2, poll_seconds: 0.05 }
                environments:
                  dev:
                    secret_key: \(devKey)
                    webhooks: { urls: ["http://127.0.0.1:\(port)/hooks"], signing_key: \(signingKey) }
                integrations:
                  shop:
                    syncs:
                      orders: { models: [Order], frequency: every hour }
                """, file: "w.yaml", environment: [:])
        let sync = try #require(config.integration("shop", in: "dev")?.sync(named: "orders"))
        let ref = VariantRef(connection: ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "c1"), syncName: "orders")
        let path = directory.appendingPathComponent("w.sqlite").path

        // Three runs while nothing listens: 3 added, then 1 updated, then a failure.
        let step = Mutex(0)
        let orders = ClosureSyncFunction(name: "orders") { nango in
            let round = step.withLock { $0 += 1; return $0 }
            if round == 3 { throw TributaryError(.providerError, "the shop answered 500") }
            try await nango.batchSave((1...3).map { ["id": .string("o\($0)"), "total": .number(JSONNumber(round == 2 && $0 == 1 ? 99 : 10))] }, model: "Order")
        }
        var store = try SQLiteStore(path: path)
        try await store.migrate()
        let executor = SyncExecutor(
            store: store, functions: try SyncFunctionRegistry([orders]), webhooks: SyncWebhookPlanner(config: config), logger: logger)
        for _ in 0..<3 { _ = try await executor.run(ref, sync: sync) }
        let queued = try await store.deliveries(DeliveryQuery(environment: "dev")).reversed().map(\.self)
        #expect(queued.count == 3)

        // First process: the receiver is down; attempts and the last error show through the API.
        let http1 = OutboundHTTP()
        let service1 = WebhookDeliveryService(store: store, config: config, http: http1, logger: logger)
        try await runServices([http1, service1]) { [store] in
            try await eventually("several failed attempts") {
                try await store.delivery(queued[0].id, environment: "dev")!.attempts >= 3
            }
        }
        let api = API(config: config, runs: RunQueue(store: store), cipher: CredentialCipher.insecureDevelopment)
        try await buildApplication(api: api, logger: logger).test(.router) { client in
            let client = APIClient(client: client)
            let listed = try await client.send(.get, "/webhooks/deliveries?status=pending")
            #expect(listed.status == .ok)
            let deliveries = try #require(listed.json["deliveries"]?.arrayValue)
            #expect(deliveries.count == 3)
            let head = try #require(deliveries.last)
            #expect(head["attempts"]?.int64Value ?? 0 >= 3)
            #expect(head["last_error"]?.stringValue?.contains("could not be reached") == true)
            #expect(head["next_attempt_at"]?.stringValue != nil)
            #expect(deliveries.first?["attempts"] == 0, "later webhooks wait behind the head: order is kept")
            let one = try await client.send(.get, "/webhooks/deliveries/\(queued[0].id)")
            #expect(one.json["body"]?["syncType"] == "INITIAL" && one.json["body"]?["responseResults"]?["added"] == 3)
            #expect(try await client.send(.get, "/webhooks/deliveries/\(queued[0].id)", key: prodKey).status == .unauthorized)
            #expect(try await client.send(.get, "/webhooks/deliveries?status=sent").errorCode == "invalid_query_params")
            #expect(try await client.send(.get, "/webhooks/deliveries/999999").errorCode == "unknown_delivery")
        }
        // Restart: a new process opens the same file.
        try store.close()
        store = try SQLiteStore(path: path)
        try await store.migrate()
        defer { try? store.close() }

        // The receiver comes back, answering 503 twice before it recovers.
        let receiver = WebhookReceiver(failFirst: 2)
        let http2 = OutboundHTTP()
        let service2 = WebhookDeliveryService(store: store, config: config, http: http2, logger: logger)
        try await receiver.serve(port: port) { [store] in
            try await runServices([http2, service2]) {
                try await eventually("every webhook delivered") {
                    try await store.deliveries(DeliveryQuery(environment: "dev", status: .delivered)).count == 3
                }
                // Nothing more arrives afterwards.
                try await Task.sleep(for: .milliseconds(300))
            }
        }
        let successes = receiver.successes
        #expect(receiver.received.withLock { $0.count } == 5, "two 503s, then each webhook once")
        #expect(successes.map { $0.headers["idempotency-key"] } == queued.map(\.idempotencyKey), "once each, in run order")
        for request in receiver.received.withLock({ $0 }) {
            #expect(request.headers["x-nango-hmac-sha256"] == WebhookSignature.sign(request.body, key: signingKey))
            // Nango's older signature, which its SDK's verifyWebhookSignature checks: SHA-256 of key + JSON.stringify(body),
            // and the body is already in JSON.stringify's form (compact, keys in order) — checked by re-serialising it.
            #expect(request.headers["x-nango-signature"] == WebhookSignature.legacySign(request.body, key: signingKey))
            let reserialised = try JSONWriter.bytes(JSONParser.parse(request.body), canonical: false)
            #expect(reserialised == request.body, "the body reads back byte for byte as JSON.stringify would write it")
            if NodeJS.executable != nil {
                let signature = try #require(request.headers["x-nango-signature"])
                #expect(try NodeJS.verifiesLegacySignature(signature, body: request.body, key: signingKey), "verified in Node as the SDK does")
                #expect(try !NodeJS.verifiesLegacySignature(signature, body: request.body, key: signingKey + "x"))
            }
            #expect(request.headers["content-type"] == "application/json")
        }
        let bodies = try successes.map { try #require(try JSONParser.parse($0.body).objectValue) }
        #expect(bodies.map { $0["syncType"] } == ["INITIAL", "INCREMENTAL", "INCREMENTAL"])
        #expect(bodies.allSatisfy { $0["checkpoint"] != nil }, "every sync webhook carries the variant's checkpoint (or null)")
        #expect(bodies[0]["responseResults"] == ["added": 3, "deleted": 0, "updated": 0])
        #expect(bodies[1]["responseResults"] == ["added": 0, "deleted": 0, "updated": 1])
        #expect(bodies[2]["success"] == false && bodies[2]["error"]?["description"] == "the shop answered 500")
        #expect(successes.map(\.body) == queued.map(\.body), "the exact stored bytes")
        let delivered = try #require(try await store.delivery(queued[0].id, environment: "dev"))
        #expect(delivered.status == .delivered && delivered.lastError == nil && delivered.attempts >= 4 && delivered.lastStatusCode == 200)
    }

    /// A process (API + worker + provider webhook worker) for the inbound tests, live on loopback.
    struct InboundProcess {
        let store: SQLiteStore
        let client: APIClient
        let gate: Gate
        let provider: ProviderListing

        func run(_ variant: String = "base") async throws -> RunRecord {
            let ref = VariantRef(connection: ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "c1"), syncName: "orders", variant: variant)
            let before = try await store.runs(of: ref, limit: 100, includingWebhooks: false).count
            let trigger = try await client.send(.post, "/sync/trigger", body: ["provider_config_key": "shop", "connection_id": "c1", "syncs": [.string("orders::\(variant)")]])
            #expect(trigger.status == .ok)
            try await eventually("run of \(variant)") { [store] in
                let runs = try await store.runs(of: ref, limit: 100, includingWebhooks: false)
                return runs.count > before && runs[0].status.isFinished
            }
            return try await store.runs(of: ref, limit: 1, includingWebhooks: false)[0]
        }

        func webhook(_ body: String, secret: String = providerSecret, environment: String = "dev") async throws -> APIResponse {
            try await client.send(
                .post, "/webhook/\(environment)/shop", rawBody: body, key: nil,
                headers: ["X-Shop-Signature": "sha256=" + WebhookSignature.sign(Array(body.utf8), key: secret)])
        }

        func webhookRuns(_ count: Int) async throws {
            let ref = VariantRef(connection: ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "c1"), syncName: "orders")
            try await eventually("\(count) webhook runs") { [store] in
                let runs = try await store.runs(of: ref, limit: 100).filter { $0.kind == .webhook }
                return runs.count >= count && runs.allSatisfy(\.status.isFinished)
            }
        }

        func live(_ variant: String, model: String = "Order") async throws -> [String] {
            try await client.allRecords(connection: "c1", model: model, variant: variant, pageSize: 100).filter {
                $0["_nango_metadata"]?["deleted_at"]?.isNull ?? true
            }.compactMap { $0["id"]?.stringValue }.sorted()
        }
    }

    func withInboundProcess(_ test: @escaping @Sendable (InboundProcess) async throws -> Void) async throws {
        let directory = try directory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = try ConfigLoader.parse(
            yaml: """
                environments:
                  dev:
                    secret_key: \(devKey)
                    webhooks: { urls: ["http://127.0.0.1:9/hooks"], signing_key: \(signingKey) }
                  prod:
                    secret_key: \(prodKey)
                integrations:
                  shop:
                    webhooks:
                      secret: \(providerSecret)
                      signature_header: X-Shop-Signature
                      connection_path: store
                      type_path: event
                    syncs:
                      orders:
                        models: [Order]
                        frequency: every hour
                        track_deletes: true
                        webhook_subscriptions: [order.updated, order.deleted]
                        webhook: { records_path: order, delete_types: [order.deleted] }
                      notes:
                        models: [Note]
                        frequency: every hour
                        auto_start: false
                        webhook_subscriptions: [note.created]
                """, file: "in.yaml", environment: [:])
        let store = try SQLiteStore(path: directory.appendingPathComponent("in.sqlite").path)
        defer { try? store.close() }
        try await store.migrate()
        let gate = Gate()
        let provider = ProviderListing(["1", "2"])
        // The provider's listing, read before an optional pause (a full refresh mid-way).
        let orders = ClosureSyncFunction(name: "orders") { nango in
            let listing = provider.ids.withLock { $0 }
            try await nango.batchSave(listing.map { ["id": .string($0), "from": "listing"] }, model: "Order")
            if nango.variant == "base", (try await nango.getMetadata())["pause"] == true {
                gate.enter()
                while !gate.isOpen {
                    try await Task.sleep(for: .milliseconds(5))
                    try nango.checkCancellation()
                }
            }
        }
        let notes = ClosureSyncFunction(
            name: "notes",
            onWebhook: { nango, payload in
                guard let note = payload["note"]?.objectValue else { throw TributaryError(.invalidRecord, "no note") }
                try await nango.batchSave([note], model: "Note")
                await nango.log("note \(note["id"]?.stringValue ?? "?") from a webhook")
            }, { _ in })
        let executor = SyncExecutor(
            store: store, functions: try SyncFunctionRegistry([orders, notes]), webhooks: SyncWebhookPlanner(config: config), logger: logger)
        let worker = RunCoordinator(executor: executor, config: config, logger: logger)
        let webhookWorker = ProviderWebhookWorker(executor: executor, config: config, poll: .milliseconds(50), logger: logger)
        let api = API(config: config, runs: RunQueue(store: store, worker: worker), cipher: CredentialCipher.insecureDevelopment, webhookWorker: webhookWorker)
        try await buildApplication(api: api, services: [worker, webhookWorker], logger: logger, port: 0).test(.live) { client in
            let client = APIClient(client: client)
            #expect(try await client.connect("c1").status == .created)
            #expect(try await client.send(.post, "/sync/orders/variant/eu", body: ["provider_config_key": "shop", "connection_id": "c1"]).status == .ok)
            try await test(InboundProcess(store: store, client: client, gate: gate, provider: provider))
        }
    }

    @Test func badProviderWebhooksAreRefusedWithClearErrorsAndStoreNothing() async throws {
        try await withInboundProcess { process in
            let body = #"{"event":"order.updated","store":"c1","order":{"id":"3"}}"#
            let unsigned = try await process.client.send(.post, "/webhook/dev/shop", rawBody: body, key: nil)
            #expect(unsigned.status == .unauthorized && unsigned.errorCode == "missing_signature")
            let forged = try await process.webhook(body, secret: "not-the-secret")
            #expect(forged.status == .unauthorized && forged.errorCode == "invalid_signature")
            #expect(try await process.webhook(body, environment: "staging").errorCode == "unknown_environment")
            let otherEnvironment = try await process.client.send(.post, "/webhook/dev/nope", rawBody: body, key: nil)
            #expect(otherEnvironment.status == .notFound && otherEnvironment.errorCode == "unknown_provider_config")
            #expect(try await process.webhook("{not json").errorCode == "invalid_body")
            #expect(try await process.webhook(#"{"event":"order.updated","order":{}}"#).errorCode == "missing_connection")
            // Unknown connections and unsubscribed types are acknowledged with nothing to do.
            let stranger = try await process.webhook(#"{"event":"order.updated","store":"c9","order":{"id":"3"}}"#)
            #expect(stranger.status == .ok && stranger.json["tasks"] == 0)
            #expect(stranger.json["connections"] == nil, "the answer never tells which connections exist")
            let ignored = try await process.webhook(#"{"event":"order.archived","store":"c1"}"#)
            #expect(ignored.status == .ok && ignored.json["tasks"] == 0 && ignored.json["syncs"] == [])
            let ref = VariantRef(connection: ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "c1"), syncName: "orders")
            try await Task.sleep(for: .milliseconds(200))
            #expect(try await process.store.runs(of: ref, limit: 10).filter { $0.kind == .webhook }.isEmpty)
        }
    }

    @Test func providerWebhooksUpdateOnlyTheBaseVariantAndNeverCauseFalseDeletions() async throws {
        try await withInboundProcess { process in
            _ = try await process.run("base")
            _ = try await process.run("eu")
            #expect(try await process.live("base") == ["1", "2"])
            #expect(try await process.live("eu") == ["1", "2"])

            let added = try await process.webhook(#"{"event":"order.updated","store":"c1","order":{"id":"3","total":5}}"#)
            #expect(added.status == .accepted && added.json["tasks"] == 1 && added.json["syncs"] == ["orders"] && added.json["type"] == "order.updated")
            try await process.webhookRuns(1)
            #expect(try await process.live("base") == ["1", "2", "3"])
            #expect(try await process.live("eu") == ["1", "2"], "variants other than base never see provider webhooks")

            let deleted = try await process.webhook(#"{"event":"order.deleted","store":"c1","order":{"id":"1"}}"#)
            #expect(deleted.status == .accepted)
            try await process.webhookRuns(2)
            #expect(try await process.live("base") == ["2", "3"])
            #expect(try await process.live("eu") == ["1", "2"])

            // A full refresh lists the provider ("2" only: "3" is not listed yet), pauses; meanwhile
            // a webhook brings "4". The refresh then ends: "3" (unseen in its window) is deleted, "4"
            // — saved by the webhook during the window — is not.
            process.provider.ids.withLock { $0 = ["2"] }
            #expect(try await process.client.send(.post, "/connections/metadata", body: ["connection_id": "c1", "provider_config_key": "shop", "metadata": ["pause": true]]).status == .created)
            let trigger = try await process.client.send(.post, "/sync/trigger", body: ["provider_config_key": "shop", "connection_id": "c1", "syncs": ["orders"]])
            #expect(trigger.status == .ok)
            try await eventually("the refresh to pause") { process.gate.entries == 1 }
            #expect(try await process.webhook(#"{"event":"order.updated","store":"c1","order":{"id":"4"}}"#).status == .accepted)
            try await process.webhookRuns(3)
            #expect(try await process.live("base") == ["2", "3", "4"], "the webhook ran beside the paused refresh")
            process.gate.release()
            let base = VariantRef(connection: ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "c1"), syncName: "orders")
            try await eventually("the refresh to finish") { [store = process.store] in
                try await store.runs(of: base, limit: 1, includingWebhooks: false).first?.status == .succeeded
            }
            #expect(try await process.live("base") == ["2", "4"])
            let refresh = try await process.store.runs(of: base, limit: 1, includingWebhooks: false)[0]
            #expect(refresh.results["Order"]?.deleted == 1)

            // Each webhook execution is a WEBHOOK run with its own sync webhook to the app.
            let webhookRuns = try await process.store.runs(of: base, limit: 20).filter { $0.kind == .webhook }
            #expect(webhookRuns.count == 3 && webhookRuns.allSatisfy { $0.status == .succeeded })
            let outbox = try await process.store.deliveries(DeliveryQuery(environment: "dev", limit: 100))
            let webhookBodies = try outbox.compactMap { try JSONParser.parse($0.body).objectValue }.filter { $0["syncType"] == "WEBHOOK" }
            #expect(webhookBodies.count == 3 && webhookBodies.allSatisfy { $0["syncVariant"] == "base" && $0["model"] == "Order" })
            let runs = try await process.client.send(.get, "/sync/runs?provider_config_key=shop&connection_id=c1&sync=orders")
            #expect(runs.json["runs"]?.arrayValue?.contains { $0["type"] == "WEBHOOK" } == true)
            // The variant's status is about its own runs.
            let status = try await process.client.send(.get, "/sync/status?provider_config_key=shop&connection_id=c1&syncs=orders")
            #expect(status.json["syncs"]?[0]?["latestResult"]?["Order"]?["deleted"] == 1)
        }
    }

    @Test func aSwiftOnWebhookHandlerRunsOnTheBaseVariant() async throws {
        try await withInboundProcess { process in
            let response = try await process.webhook(#"{"event":"note.created","store":"c1","note":{"id":"n1","text":"hello"}}"#)
            #expect(response.status == .accepted && response.json["syncs"] == ["notes"])
            let notes = VariantRef(connection: ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "c1"), syncName: "notes")
            try await eventually("the note handler") { [store = process.store] in
                try await store.runs(of: notes, limit: 1).first?.status == .succeeded
            }
            #expect(try await process.live("base", model: "Note") == ["n1"])
            let run = try await process.store.runs(of: notes, limit: 1)[0]
            #expect(run.kind == .webhook && run.results["Note"]?.added == 1)
            #expect(try await process.store.logs(ofRun: run.id, limit: 10).contains { $0.message == "note n1 from a webhook" })
            // A handler that throws fails its run, visibly.
            #expect(try await process.webhook(#"{"event":"note.created","store":"c1"}"#).status == .accepted)
            try await eventually("the failing handler") { [store = process.store] in
                try await store.runs(of: notes, limit: 1).first?.status == .failed
            }
            #expect(try await process.store.runs(of: notes, limit: 1)[0].error?.contains("no note") == true)
        }
    }
}
