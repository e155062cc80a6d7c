import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Synchronization
import Testing
import TributaryCore
import TributaryEngine
import TributarySQLite
import TributaryStore
import TributaryTestSupport

/// A small shop API for declarative syncs: orders per store, cursor pages, an `updated_after` filter,
/// API-key auth. It remembers every query it answered.
final class ShopServer: Sendable {
    struct Order: Sendable {
        var id: String
        var store: String
        var total: Int
        var updatedAt: String
    }
    let orders = Mutex<[Order]>([])
    let queries = Mutex<[[String: String]]>([])
    let failAfterPages = Mutex<Int?>(nil)

    func serve(_ body: @escaping @Sendable (String) async throws -> Void) async throws {
        let router = Router()
        router.get("/shops/:shop/orders") { request, context -> Response in
            guard request.headers[HTTPField.Name("X-Api-Key")!] == "shop-key" else { return FakeProviderServer.unauthorized }
            let shop = context.parameters.get("shop") ?? ""
            var query: [String: String] = ["shop": shop]
            for (key, value) in request.uri.queryParameters { query[String(key)] = String(value) }
            let served = self.queries.withLock { q -> Int in
                q.append(query)
                return q.count
            }
            if let limit = self.failAfterPages.withLock({ $0 }), served > limit { return FakeProviderServer.json(["error": "boom"], status: .badRequest) }
            let after = query["updated_after"] ?? ""
            let list = self.orders.withLock { $0 }.filter { $0.store == shop && $0.updatedAt > after }.sorted { $0.id < $1.id }
            let start = Int(query["cursor"] ?? "0") ?? 0
            let limit = Int(query["limit"] ?? "2") ?? 2
            let page = list.dropFirst(start).prefix(limit).map { order -> JSONValue in
                ["order_id": .string(order.id), "amount": ["total": .number(JSONNumber(order.total))], "updated_at": .string(order.updatedAt), "internal": "x"]
            }
            let next: JSONValue = start + limit < list.count ? .string(String(start + limit)) : .null
            return FakeProviderServer.json(["result": ["orders": .array(page)], "next": next])
        }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in try await body("http://127.0.0.1:\(client.port!)") }
    }
}

@Suite("Declarative syncs end to end")
struct DeclarativeSyncTests {
    @Test(arguments: StoreKind.available) func baseAndVariantsReadTheirOwnPartitionIncrementallyAndResume(_ kind: StoreKind) async throws {
        let shop = ShopServer()
        shop.orders.withLock {
            $0 = (1...5).map { .init(id: "m\($0)", store: "main-shop", total: $0 * 100, updatedAt: "2026-01-01T00:00:0\($0)Z") }
                + (1...3).map { .init(id: "e\($0)", store: "eu-shop", total: $0, updatedAt: "2026-01-01T00:00:0\($0)Z") }
        }
        try await shop.serve { base in
            let config = try ConfigLoader.parse(
                yaml: """
                    environments:
                      dev: { secret_key: dev-key-0000000000000001 }
                    integrations:
                      shop:
                        base_url: "\(base)"
                        auth: { type: api_key, header: X-Api-Key }
                        syncs:
                          orders:
                            models: [Order]
                            frequency: every hour
                            sync_type: incremental
                            endpoint: /shops/{metadata.{variant}.shop}/orders
                            params: { channel: "{variant}" }
                            pagination: { type: cursor, cursor_path: next, cursor_param: cursor, limit_param: limit, limit: 2 }
                            records_path: result.orders
                            id_field: order_id
                            incremental_param: updated_after
                            fields: [order_id, amount.total, updated_at]
                            rename: { amount.total: total, updated_at: updatedAt }
                    """,
                file: "test.yaml", environment: [:])
            let sync = try #require(config.sync(for: VariantRef(connection: ProviderFixture.connection("shop"), syncName: "orders")))
            #expect(sync.declarative != nil)
            let engine = try await EngineFixture([], kind: kind)
            let http = OutboundHTTP()
            var logger = Logger(label: "declarative")
            logger.logLevel = .critical
            let access = ProviderAccess(config: config, store: engine.store, cipher: .insecureDevelopment, http: http, logger: logger)
            let executor = SyncExecutor(store: engine.store, functions: try SyncFunctionRegistry([]), providers: access, logger: logger)
            let connection = ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "acme")
            _ = try await engine.store.importConnection(
                ConnectionImport(
                    ref: connection, metadata: ["base.shop": "main-shop", "eu.shop": "eu-shop"], connectionConfig: [:], credentialsType: "API_KEY",
                    sealedCredentials: try CredentialCipher.insecureDevelopment.seal(JSONWriter.bytes(["type": "API_KEY", "api_key": "shop-key"]))),
                baseVariantsOf: ["orders"])
            let baseRef = VariantRef(connection: connection, syncName: "orders")
            let euRef = VariantRef(connection: connection, syncName: "orders", variant: "eu")
            _ = try await engine.store.createVariant(euRef, maximumPerSync: 10, paused: false)

            let first = try await executor.run(baseRef, sync: sync, createsVariant: false)
            #expect(first.status == .succeeded, "\(first.error ?? "")")
            #expect(first.results["Order"] == ModelResult(added: 5))
            let eu = try await executor.run(euRef, sync: sync, createsVariant: false)
            #expect(eu.results["Order"] == ModelResult(added: 3))
            // Each variant read its own partition, paged by 2, with its own name templated in.
            let queries = shop.queries.withLock { $0 }
            #expect(queries.filter { $0["shop"] == "main-shop" }.count == 3)
            #expect(queries.filter { $0["shop"] == "eu-shop" }.allSatisfy { $0["channel"] == "eu" && $0["limit"] == "2" })
            #expect(queries.allSatisfy { $0["updated_after"] == nil }, "the first runs read everything")
            // Records are mapped: id from order_id, selected and renamed fields only.
            let records = try await engine.store.changes(try ChangeQuery(dataset: euRef.dataset("Order")))
            let object = try #require(try JSONParser.parse(records.records[0].json).objectValue)
            #expect(Set(object.keys) == ["id", "order_id", "total", "updatedAt"])
            #expect(object["id"] == "e1")
            #expect(object["total"] == 1)

            // Incremental: only changes after lastSyncDate are asked for.
            shop.queries.withLock { $0 = [] }
            shop.orders.withLock { $0.append(.init(id: "m6", store: "main-shop", total: 600, updatedAt: "2099-01-01T00:00:00Z")) }
            let second = try await executor.run(baseRef, sync: sync, createsVariant: false)
            #expect(second.results["Order"] == ModelResult(added: 1))
            let since = try #require(shop.queries.withLock { $0 }.first?["updated_after"])
            #expect(Timestamp(iso8601: since) == first.startedAt, "updated_after is the last successful run's start")

            // A run that fails after its first page keeps a checkpoint; the next run resumes at the
            // second page with the same updated_after, and reads nothing twice.
            shop.orders.withLock { orders in
                for i in 7...10 { orders.append(.init(id: "m\(i)", store: "main-shop", total: i, updatedAt: "2099-02-01T00:00:00Z")) }
            }
            shop.queries.withLock { $0 = [] }
            shop.failAfterPages.withLock { $0 = 1 }
            let failed = try await executor.run(baseRef, sync: sync, createsVariant: false)
            #expect(failed.status == .failed)
            // Its first page (m10, m6 by id) was saved: m10 is new, m6 unchanged.
            #expect(failed.results["Order"] == ModelResult(added: 1))
            let checkpoint = try #require(try await engine.store.variantState(baseRef)?.checkpoint)
            #expect(checkpoint["next"] == "2")
            shop.failAfterPages.withLock { $0 = nil }
            shop.queries.withLock { $0 = [] }
            let resumed = try await executor.run(baseRef, sync: sync, createsVariant: false)
            #expect(resumed.status == .succeeded)
            let resumedQueries = shop.queries.withLock { $0 }
            #expect(resumedQueries.first?["cursor"] == "2", "resumed at the page after the checkpoint")
            #expect(resumedQueries.first?["updated_after"] == checkpoint["since"]?.stringValue)
            #expect(try await engine.store.recordCounts(of: baseRef) == ["Order": 10])
            #expect(try await engine.store.variantState(baseRef)?.checkpoint == nil, "a finished listing clears its checkpoint")

            // Missing metadata for a variant fails its run with a clear message.
            let us = VariantRef(connection: connection, syncName: "orders", variant: "us")
            _ = try await engine.store.createVariant(us, maximumPerSync: 10, paused: false)
            let missing = try await executor.run(us, sync: sync, createsVariant: false)
            #expect(missing.status == .failed)
            #expect(missing.error?.contains("us.shop") == true)
            try await http.shutdown()
        }
    }
}
