import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Synchronization
import Testing
import TributaryCore
import TributaryDemo
import TributaryEngine
import TributarySQLite
import TributaryStore
import TributaryTestSupport

/// The shop's clock, moved by the test.
final class ShopClock: Sendable {
    let time = Mutex(Date())
    var now: Date { time.withLock { $0 } }
    func advance(seconds: Double) { time.withLock { $0 = $0.addingTimeInterval(seconds) } }
}

/// The built-in demo provider over real HTTP, and the built-in demo configuration syncing from it.
@Suite("Demo shop API")
struct DemoShopTests {
    static func serve(_ api: DemoShopAPI, _ body: @escaping @Sendable (any TestClientProtocol, String) async throws -> Void) async throws {
        let app = Application(router: api.router(), configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in try await body(client, "http://127.0.0.1:\(client.port!)") }
    }

    static func get(_ client: any TestClientProtocol, _ uri: String, key: String? = "k") async throws -> (HTTPResponse.Status, JSONValue, HTTPFields) {
        var headers: HTTPFields = [:]
        if let key { headers[HTTPField.Name(DemoShopAPI.apiKeyHeader)!] = key }
        let response = try await client.execute(uri: uri, method: .get, headers: headers, body: nil)
        return (response.status, try JSONParser.parse(Array(response.body.readableBytesView)), response.headers)
    }

    @Test func listsAStoreInCursorPagesFilteredByUpdatedAfterBehindAnAPIKey() async throws {
        let clock = ShopClock()
        try await Self.serve(DemoShopAPI(apiKey: "k", rateLimitEvery: 0, now: { clock.now })) { client, _ in
            #expect(try await Self.get(client, "/stores/store-eu/orders", key: nil).0 == .unauthorized)
            #expect(try await Self.get(client, "/stores/store-eu/orders", key: "wrong").0 == .unauthorized)

            var ids: [String] = []
            var cursor: String? = nil
            var pages = 0
            repeat {
                let (status, body, _) = try await Self.get(client, "/stores/store-eu/orders?limit=50" + (cursor.map { "&cursor=\($0)" } ?? ""))
                #expect(status == .ok)
                ids += body["orders"]?.arrayValue?.compactMap { $0["id"]?.stringValue } ?? []
                cursor = body["next_cursor"]?.stringValue
                pages += 1
            } while cursor != nil && pages < 10
            let expected = DemoShop.orders(store: "store-eu", at: clock.now).compactMap { $0["id"]?.stringValue }
            #expect(pages == 3)
            #expect(ids == expected, "every listed order once, oldest first")
            #expect(ids.count == DemoShop.window)

            // updated_after: only orders changed since then.
            let since = clock.now.addingTimeInterval(-100)
            let (_, recent, _) = try await Self.get(client, "/stores/store-eu/orders?limit=250&updated_after=\(Timestamp(since).iso8601.replacingOccurrences(of: "+", with: "%2B"))")
            let recentIDs = recent["orders"]?.arrayValue?.compactMap { $0["id"]?.stringValue } ?? []
            let changed = DemoShop.changes(store: "store-eu", since: since, at: clock.now).changed.compactMap { $0["id"]?.stringValue }
            #expect(!recentIDs.isEmpty && recentIDs.count < DemoShop.window)
            #expect(Set(recentIDs) == Set(changed))

            // One order; bad input answers 400/404 with a message.
            let (found, order, _) = try await Self.get(client, "/stores/store-eu/orders/\(ids[0])")
            #expect(found == .ok)
            #expect(order["id"]?.stringValue == ids[0])
            #expect(try await Self.get(client, "/stores/store-eu/orders/store-eu-0").0 == .notFound)
            #expect(try await Self.get(client, "/stores/store-eu/orders?limit=0").0 == .badRequest)
            #expect(try await Self.get(client, "/stores/store-eu/orders?cursor=bogus").0 == .badRequest)
            #expect(try await Self.get(client, "/stores/store-eu/orders?updated_after=yesterday").0 == .badRequest)

            // Time passes: new orders arrive, the oldest drop out of the listing.
            clock.advance(seconds: 120)
            let (_, later, _) = try await Self.get(client, "/stores/store-eu/orders?limit=250")
            let laterIDs = later["orders"]?.arrayValue?.compactMap { $0["id"]?.stringValue } ?? []
            #expect(laterIDs.count == DemoShop.window)
            #expect(!laterIDs.contains(ids[0]), "old orders disappear")
            #expect(Set(laterIDs).subtracting(ids).count > 0, "new orders appear")
        }
    }

    @Test func answersEveryNthRequestWith429AndRetryAfter() async throws {
        try await Self.serve(DemoShopAPI(apiKey: "k", rateLimitEvery: 3)) { client, _ in
            var statuses: [HTTPResponse.Status] = []
            var retryAfter: String? = nil
            for _ in 0..<6 {
                let (status, _, headers) = try await Self.get(client, "/stores/main/orders?limit=1")
                statuses.append(status)
                if status == .tooManyRequests { retryAfter = headers[.retryAfter] }
            }
            #expect(statuses == [.ok, .ok, .tooManyRequests, .ok, .ok, .tooManyRequests])
            #expect(retryAfter == "1")
        }
    }

    @Test(arguments: StoreKind.available) func theDemoConfigurationSyncsEveryVariantOverHTTPWithDeletesAndIncrementalRuns(_ kind: StoreKind) async throws {
        let clock = ShopClock()
        try await Self.serve(DemoShopAPI(rateLimitEvery: 5, now: { clock.now })) { _, baseURL in
            let config = try ConfigLoader.parse(
                yaml: DemoConfiguration.yaml, file: "demo.yaml", environment: ["TRIBUTARY_DEMO_PROVIDER_URL": baseURL])
            let engine = try await EngineFixture([], kind: kind)
            let http = OutboundHTTP()
            defer { Task { try? await http.shutdown() } }
            var logger = Logger(label: "demo")
            logger.logLevel = .critical
            // Fast retries so the shop's 429s cost milliseconds.
            let access = ProviderAccess(
                config: config, store: engine.store, cipher: .insecureDevelopment, http: http,
                policy: OutboundPolicy(retries: 3, baseDelay: .milliseconds(5), maxRetryAfter: .seconds(2)), logger: logger)
            let executor = SyncExecutor(store: engine.store, functions: try SyncFunctionRegistry([]), providers: access, logger: logger)
            let connection = ConnectionRef(environment: "dev", providerConfigKey: DemoConfiguration.integration, connectionId: DemoConfiguration.connection)
            _ = try await engine.store.importConnection(
                ConnectionImport(
                    ref: connection, metadata: [:], connectionConfig: [:], credentialsType: "API_KEY",
                    sealedCredentials: try CredentialCipher.insecureDevelopment.seal(
                        JSONWriter.bytes(["type": "API_KEY", "api_key": .string(DemoShopAPI.defaultAPIKey)]))),
                baseVariantsOf: ["orders", "order-changes"])
            let variants = [Variant.base] + DemoConfiguration.variants
            for sync in ["orders", "order-changes"] {
                for variant in DemoConfiguration.variants {
                    _ = try await engine.store.createVariant(VariantRef(connection: connection, syncName: sync, variant: variant), maximumPerSync: 10, paused: false)
                }
            }
            let orders = try #require(config.sync(for: VariantRef(connection: connection, syncName: "orders")))
            let changes = try #require(config.sync(for: VariantRef(connection: connection, syncName: "order-changes")))

            for variant in variants {
                let full = try await executor.run(VariantRef(connection: connection, syncName: "orders", variant: variant), sync: orders, createsVariant: false)
                #expect(full.status == .succeeded, "\(full.error ?? "")")
                #expect(full.results["Order"] == ModelResult(added: DemoShop.window))
                let incremental = try await executor.run(
                    VariantRef(connection: connection, syncName: "order-changes", variant: variant), sync: changes, createsVariant: false)
                #expect(incremental.results["OrderChange"] == ModelResult(added: DemoShop.window))
            }
            // Each variant holds its own store's orders, mapped by the configuration.
            let eu = try await engine.store.changes(try ChangeQuery(dataset: DatasetRef(connection: connection, model: "OrderChange", variant: "store-eu")))
            let first = try #require(try JSONParser.parse(eu.records[0].json).objectValue)
            #expect(first["id"]?.stringValue?.hasPrefix("store-eu-") == true)
            #expect(Set(first.keys) == ["id", "number", "status", "total", "currency", "updated_at"])

            // Two minutes later: the full refresh adds the new orders and deletes the dropped ones;
            // the incremental run reads only what changed since its last run.
            clock.advance(seconds: 120)
            let ref = VariantRef(connection: connection, syncName: "orders", variant: "store-us")
            let before = Set(DemoShop.orders(store: "store-us", at: clock.now.addingTimeInterval(-120)).compactMap { $0["id"]?.stringValue })
            let after = Set(DemoShop.orders(store: "store-us", at: clock.now).compactMap { $0["id"]?.stringValue })
            let refresh = try await executor.run(ref, sync: orders, createsVariant: false)
            #expect(refresh.results["Order"]?.added == after.subtracting(before).count)
            #expect(refresh.results["Order"]?.deleted == before.subtracting(after).count)
            #expect((refresh.results["Order"]?.deleted ?? 0) > 0)
            #expect(try await engine.store.recordCounts(of: ref)["Order"] == DemoShop.window)

            let changesRef = VariantRef(connection: connection, syncName: "order-changes", variant: "store-us")
            let lastSync = try #require(try await engine.store.variantState(changesRef)?.lastSyncDate)
            let expected = DemoShop.changes(store: "store-us", since: lastSync.date, at: clock.now).changed.count
            let delta = try await executor.run(changesRef, sync: changes, createsVariant: false)
            #expect(delta.kind == .incremental)
            #expect(expected > 0)
            #expect((delta.results["OrderChange"]?.added ?? 0) + (delta.results["OrderChange"]?.updated ?? 0) == expected)
        }
    }
}
