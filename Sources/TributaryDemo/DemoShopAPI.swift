#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import HTTPTypes
import Logging
import Hummingbird
import NIOCore
import Synchronization
import TributaryCore

/// ``DemoShop`` as a real REST API on a loopback port — the provider the demo syncs call with
/// `tributary demo` and `tributary demo-provider`. It behaves like a typical shop API:
///
/// - `GET /stores/{store}/orders?limit=&cursor=&updated_after=` lists a store's orders, oldest
///   first, as `{"orders": [...], "next_cursor": "…" | null}`. Any store name exists (each is its
///   own partition, with its own pace); orders change status over time and old ones disappear.
/// - `GET /stores/{store}/orders/{id}` returns one order (404 when it is not listed).
/// - Every route but `/health` needs the `X-Api-Key` header; a wrong or missing key answers 401.
/// - Every `rateLimitEvery`-th request answers 429 with `Retry-After: 1`, as real APIs do now and
///   then (0 turns this off).
public struct DemoShopAPI: Sendable {
    /// The header that carries the API key.
    public static let apiKeyHeader = "X-Api-Key"
    /// The API key of the demo connection when none is chosen.
    public static let defaultAPIKey = "demo-shop-key"
    /// The largest page.
    public static let maxLimit = 250

    public var apiKey: String
    public var rateLimitEvery: Int
    /// Time each order list page takes to answer (a slow API; 0: at once).
    public var pageDelay: Duration
    /// The shop's clock (tests stop it).
    public var now: @Sendable () -> Date

    private let requests = Counter()

    public init(
        apiKey: String = DemoShopAPI.defaultAPIKey, rateLimitEvery: Int = 17, pageDelay: Duration = .zero,
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.pageDelay = pageDelay
        self.apiKey = apiKey
        self.rateLimitEvery = max(0, rateLimitEvery)
        self.now = now
    }

    /// The API's routes.
    public func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.get("/health") { _, _ in Self.json(["status": "ok"]) }
        let api = router.group().add(middleware: Gate(api: self))
        api.get("/stores/:store/orders") { request, context in
            if self.pageDelay > .zero { try await Task.sleep(for: self.pageDelay) }
            return try self.listOrders(request, context)
        }
        api.get("/stores/:store/orders/:id") { _, context in
            let store = try Self.store(context)
            let id = context.parameters.get("id") ?? ""
            guard let order = DemoShop.orders(store: store, at: self.now()).first(where: { $0["id"]?.stringValue == id }) else {
                return Self.error(.notFound, "Order '\(id.prefix(80))' does not exist in store '\(store)'.")
            }
            return Self.json(.object(order))
        }
        return router
    }

    /// An application serving the API on `host:port`.
    public func application(host: String = "127.0.0.1", port: Int, logger: Logger) -> some ApplicationProtocol {
        Application(
            router: router(), configuration: ApplicationConfiguration(address: .hostname(host, port: port), serverName: "tributary-demo-shop"),
            logger: logger)
    }

    func listOrders(_ request: Request, _ context: BasicRequestContext) throws -> Response {
        let store = try Self.store(context)
        let query = request.uri.queryParameters
        var limit = 50
        if let text = query.get("limit") {
            guard let value = Int(text), (1...Self.maxLimit).contains(value) else {
                return Self.error(.badRequest, "limit must be a whole number from 1 to \(Self.maxLimit).")
            }
            limit = value
        }
        var after: Int64 = -1
        if let text = query.get("cursor") {
            guard let value = Self.decodeCursor(text) else { return Self.error(.badRequest, "cursor is not a cursor this API returned.") }
            after = value
        }
        var since: Int64? = nil
        if let text = query.get("updated_after") {
            guard let time = Timestamp(iso8601: text) else { return Self.error(.badRequest, "updated_after must be an ISO 8601 date-time.") }
            since = time.microseconds
        }
        // Oldest first by order number: a cursor stays valid while new orders arrive at the end
        // and old ones drop off the front.
        let matching = DemoShop.orders(store: store, at: now()).filter { order in
            guard Self.index(order) > after else { return false }
            guard let since else { return true }
            return (order["updated_at"]?.stringValue.flatMap(Timestamp.init(iso8601:))?.microseconds ?? 0) > since
        }
        let page = matching.prefix(limit)
        let next: JSONValue = matching.count > limit ? .string(Self.encodeCursor(Self.index(page.last!))) : .null
        return Self.json(["orders": .array(page.map { .object($0) }), "next_cursor": next])
    }

    /// Checks the key and sometimes answers 429.
    struct Gate: RouterMiddleware {
        let api: DemoShopAPI

        func handle(_ request: Request, context: BasicRequestContext, next: (Request, BasicRequestContext) async throws -> Response) async throws -> Response {
            guard let name = HTTPField.Name(DemoShopAPI.apiKeyHeader), request.headers[name] == api.apiKey else {
                return DemoShopAPI.error(.unauthorized, "A valid \(DemoShopAPI.apiKeyHeader) header is required.")
            }
            if api.rateLimitEvery > 0, api.requests.next() % api.rateLimitEvery == 0 {
                var response = DemoShopAPI.error(.tooManyRequests, "Too many requests; retry in a second.")
                response.headers[.retryAfter] = "1"
                return response
            }
            return try await next(request, context)
        }
    }

    final class Counter: Sendable {
        private let value = Mutex(0)
        func next() -> Int { value.withLock { $0 += 1; return $0 } }
    }

    static func store(_ context: BasicRequestContext) throws -> String {
        let store = context.parameters.get("store") ?? ""
        guard !store.isEmpty, store.utf8.count <= 64, store.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else {
            throw HTTPError(.badRequest, message: "A store name is 1 to 64 letters, digits, '-' or '_'.")
        }
        return store
    }

    static func index(_ order: JSONObject) -> Int64 { (order["number"]?.int64Value ?? 1000) - 1000 }

    static func encodeCursor(_ index: Int64) -> String { Data("after:\(index)".utf8).base64EncodedString() }

    static func decodeCursor(_ text: String) -> Int64? {
        guard let data = Data(base64Encoded: text), let plain = String(data: data, encoding: .utf8), plain.hasPrefix("after:") else { return nil }
        return Int64(plain.dropFirst(6))
    }

    static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        Response(
            status: status, headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: JSONWriter.bytes(value, canonical: false))))
    }

    static func error(_ status: HTTPResponse.Status, _ message: String) -> Response {
        json(["error": ["message": .string(message)]], status: status)
    }
}
