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
import TributaryServer
import TributaryStore

/// A provider on a loopback port that answers every request with what it received: method, path,
/// query, headers and body. `?status=N` makes it answer N (429 with `Retry-After: 0`).
final class EchoProvider: Sendable {
    let calls = Mutex(0)

    func serve(_ body: @escaping @Sendable (String) async throws -> Void) async throws {
        let router = Router()
        router.on("/**", method: .get) { request, context in try await self.echo(request, context) }
        router.on("/**", method: .post) { request, context in try await self.echo(request, context) }
        router.on("/**", method: .put) { request, context in try await self.echo(request, context) }
        router.on("/**", method: .patch) { request, context in try await self.echo(request, context) }
        router.on("/**", method: .delete) { request, context in try await self.echo(request, context) }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in try await body("http://127.0.0.1:\(client.port!)") }
    }

    func echo(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        calls.withLock { $0 += 1 }
        var request = request
        let body = try await request.collectBody(upTo: 1_000_000)
        var headers = JSONObject()
        for field in request.headers { headers[field.name.canonicalName] = .string(field.value) }
        let echo: JSONValue = [
            "method": .string(request.method.rawValue), "path": .string(request.uri.path), "query": .string(request.uri.query ?? ""),
            "headers": .object(headers), "body": .string(String(buffer: body)),
        ]
        let status = request.uri.queryParameters.get("status").flatMap { Int($0) } ?? 200
        var fields: HTTPFields = [.contentType: "application/json", HTTPField.Name("X-Provider")!: "echo"]
        if status == 429 { fields[.retryAfter] = "0" }
        return Response(
            status: HTTPResponse.Status(code: status), headers: fields, body: ResponseBody(byteBuffer: ByteBuffer(bytes: JSONWriter.bytes(echo))))
    }
}

/// `/proxy/*`: the connection's credentials added, everything else passed through both ways.
@Suite("Proxy endpoint")
struct ProxyAPITests {
    static let providerKey = "sk_live_PROXY_SECRET"

    /// The API (live, loopback) in front of a live echo provider, with connection `c1` of
    /// integration `echo` (API key in `X-Api-Key`) and `down` (a base_url where nothing listens).
    func withProxy(providers enabled: Bool = true, _ test: @escaping @Sendable (APIClient, EchoProvider) async throws -> Void) async throws {
        let echo = EchoProvider()
        try await echo.serve { baseURL in
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-proxy-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let config = try ConfigLoader.parse(
                yaml: """
                    environments:
                      dev:
                        secret_key: \(devKey)
                    integrations:
                      echo:
                        base_url: \(baseURL)/api
                        auth: { type: api_key, header: X-Api-Key }
                        syncs: {}
                      down:
                        base_url: http://127.0.0.1:9
                        syncs: {}
                    """, file: "proxy.yaml", environment: [:])
            let store = try SQLiteStore(path: directory.appendingPathComponent("p.sqlite").path)
            defer { try? store.close() }
            try await store.migrate()
            var logger = Logger(label: "proxy-test")
            logger.logLevel = .critical
            let cipher = try CredentialCipher(base64Key: Data(repeating: 7, count: 32).base64EncodedString())
            let http = OutboundHTTP()
            let providers = ProviderAccess(
                config: config, store: store, cipher: cipher, http: http,
                policy: OutboundPolicy(timeout: .seconds(5), retries: 3, baseDelay: .milliseconds(5), maxDelay: .milliseconds(20)), logger: logger)
            let api = API(config: config, runs: RunQueue(store: store, worker: nil), cipher: cipher, providers: enabled ? providers : nil)
            do {
                try await buildApplication(api: api, logger: logger, port: 0).test(.live) { client in
                    let client = APIClient(client: client)
                    let created = try await client.send(
                        .post, "/connections",
                        body: ["provider_config_key": "echo", "connection_id": "c1", "credentials": ["type": "API_KEY", "api_key": .string(Self.providerKey)]])
                    #expect(created.status == .created)
                    try await client.send(.post, "/connections", body: ["provider_config_key": "down", "connection_id": "c1", "credentials": ["type": "NONE"]])
                    try await test(client, echo)
                }
            } catch {
                try? await http.shutdown()
                throw error
            }
            try await http.shutdown()
        }
    }

    static let target = ["Connection-Id": "c1", "Provider-Config-Key": "echo"]

    @Test func forwardsMethodPathQueryAndBodyWithTheConnectionsCredentials() async throws {
        try await withProxy { api, _ in
            let got = try await api.send(
                .get, "/proxy/v1/orders/o%2F1?limit=2&q=a%20b",
                headers: Self.target.merging(["Accept": "application/json", "X-Other": "not forwarded", "Nango-Proxy-X-Trace": "t-1"]) { a, _ in a })
            #expect(got.status == .ok)
            #expect(got.json["method"] == "GET")
            #expect(got.json["path"] == "/api/v1/orders/o%2F1", "below base_url, percent-encoding kept")
            #expect(got.json["query"] == "limit=2&q=a%20b")
            let headers = got.json["headers"]
            #expect(headers?["x-api-key"]?.stringValue == Self.providerKey, "credentials injected")
            #expect(headers?["x-trace"] == "t-1", "Nango-Proxy- headers forwarded without the prefix")
            #expect(headers?["accept"] == "application/json")
            #expect(headers?["x-other"] == nil)
            #expect(headers?["authorization"] == nil, "Tributary's secret key never reaches the provider")
            #expect(got.headers[HTTPField.Name("X-Provider")!] == "echo", "provider headers come back")

            for method in [HTTPRequest.Method.post, .put, .patch, .delete] {
                let sent = try await api.send(method, "/proxy/items", rawBody: #"{"name":"widget"}"#, headers: Self.target)
                #expect(sent.json["method"]?.stringValue == method.rawValue)
                #expect(sent.json["body"] == #"{"name":"widget"}"#)
                #expect(sent.json["headers"]?["content-type"] == "application/json")
            }
        }
    }

    @Test func providerErrorsComeBackAsTheyAreAndRetriesFollowTheRetriesHeader() async throws {
        try await withProxy { api, echo in
            let missing = try await api.send(.get, "/proxy/x?status=404", headers: Self.target)
            #expect(missing.status == .notFound)
            #expect(missing.json["path"] == "/api/x", "the provider's own body, not a Tributary error")

            let limited = try await api.send(.get, "/proxy/x?status=429", headers: Self.target)
            #expect(limited.status == .tooManyRequests)
            #expect(limited.headers[.retryAfter] == "0")
            #expect(echo.calls.withLock { $0 } == 2, "no retry by default (Nango's proxy default)")

            let failing = try await api.send(.get, "/proxy/x?status=503", headers: Self.target.merging(["Retries": "2"]) { a, _ in a })
            #expect(failing.status == .serviceUnavailable)
            #expect(echo.calls.withLock { $0 } == 5, "one call and two retries")

            let unreachable = try await api.send(.get, "/proxy/x", headers: ["Connection-Id": "c1", "Provider-Config-Key": "down"])
            #expect(unreachable.status == .badGateway)
            #expect(unreachable.errorCode == "provider_unreachable")
        }
    }

    @Test func badProxyRequestsGetClearErrorsAndNeverReachTheProvider() async throws {
        try await withProxy { api, echo in
            let cases: [([String: String], String, HTTPResponse.Status, String)] = [
                (["Provider-Config-Key": "echo"], "/proxy/x", .badRequest, "missing_connection_id"),
                (["Connection-Id": "c1"], "/proxy/x", .badRequest, "missing_provider_config_key"),
                (["Connection-Id": "nobody", "Provider-Config-Key": "echo"], "/proxy/x", .notFound, "unknown_connection"),
                (["Connection-Id": "c1", "Provider-Config-Key": "nope"], "/proxy/x", .notFound, "unknown_provider_config"),
                (Self.target.merging(["Retries": "many"]) { a, _ in a }, "/proxy/x", .badRequest, "invalid_headers"),
                (Self.target.merging(["Base-Url-Override": "https://evil.example"]) { a, _ in a }, "/proxy/x", .badRequest, "invalid_headers"),
                (Self.target, "/proxy/a/%2e%2e/b", .badRequest, "invalid_uri_params"),
                (Self.target, "/proxy/a/.%2E/b", .badRequest, "invalid_uri_params"),
                (Self.target, "/proxy/a/%2E./b", .badRequest, "invalid_uri_params"),
                (Self.target, "/proxy/a/%2e", .badRequest, "invalid_uri_params"),
                (Self.target, "/proxy/a/%zz", .badRequest, "invalid_uri_params"),
            ]
            for (headers, path, status, code) in cases {
                let answer = try await api.send(.get, path, headers: headers)
                #expect(answer.status == status, "\(path) \(headers)")
                #expect(answer.errorCode == code, "\(path) \(headers)")
            }
            #expect(try await api.send(.get, "/proxy/x", key: nil, headers: Self.target).status == .unauthorized)
            #expect(echo.calls.withLock { $0 } == 0)
        }
    }

    @Test func aProcessWithoutProviderAccessSaysSo() async throws {
        try await withProxy(providers: false) { api, echo in
            let answer = try await api.send(.get, "/proxy/x", headers: Self.target)
            #expect(answer.status == .serviceUnavailable)
            #expect(answer.errorCode == "proxy_unavailable")
            #expect(echo.calls.withLock { $0 } == 0)
        }
    }
}
