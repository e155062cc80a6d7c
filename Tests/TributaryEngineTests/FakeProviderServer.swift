import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Synchronization
import TributaryCore

/// A provider API on a loopback port, for provider-access tests: one route per auth scheme, an
/// OAuth token endpoint, flaky and rate-limited routes, and one route per pagination style.
final class FakeProviderServer: Sendable {
    struct State {
        var validToken = "at-0"
        var refreshCalls = 0
        var ccCalls = 0
        var issued = 0
        var flakyCalls = 0
        var limitedCalls = 0
        var limitedTimes: [ContinuousClock.Instant] = []
        var seenAuthorization: [String] = []
        /// When set, the only refresh token accepted; each refresh replaces it (rotation).
        var rotatingRefreshToken: String? = nil
        var refusedRefreshes = 0
        /// What `/scripted` answers (property tests set it before each call).
        var script = Script(status: 200, headers: [], body: "[]")
        /// When set, the token endpoint's `expires_in`, as raw JSON text.
        var rawExpiresIn: String? = nil
    }
    struct Script: Sendable {
        var status: Int
        var headers: [(String, String)]
        var body: String
    }
    let state = Mutex(State())
    static let apiKey = "key-SECRET-123"
    static let clientSecret = "client-SECRET-456"
    static let refreshToken = "refresh-SECRET-789"
    /// 23 items for the pagination routes.
    static let items: [JSONValue] = (1...23).map { ["id": .string("item-\($0)")] }

    static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        var fields = headers
        fields[.contentType] = "application/json"
        return Response(status: status, headers: fields, body: ResponseBody(byteBuffer: ByteBuffer(bytes: JSONWriter.bytes(value, canonical: false))))
    }

    static let unauthorized = json(["error": "unauthorized"], status: .unauthorized)

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.get("/key-header") { request, _ in
            request.headers[HTTPField.Name("X-Api-Key")!] == Self.apiKey ? Self.json(["ok": true]) : Self.unauthorized
        }
        router.get("/key-query") { request, _ in
            request.uri.queryParameters.get("api_key") == Self.apiKey ? Self.json(["ok": true, "q": .string(request.uri.queryParameters.get("q") ?? "")]) : Self.unauthorized
        }
        router.get("/bearer") { request, _ in
            request.headers[.authorization] == "Bearer \(Self.apiKey)" ? Self.json(["ok": true]) : Self.unauthorized
        }
        router.get("/basic") { request, _ in
            let expected = "Basic " + Data("user:\(Self.apiKey)".utf8).base64EncodedString()
            return request.headers[.authorization] == expected ? Self.json(["ok": true]) : Self.unauthorized
        }
        router.get("/oauth") { request, _ in
            let authorization = request.headers[.authorization] ?? ""
            let valid = self.state.withLock { s in
                s.seenAuthorization.append(authorization)
                return authorization == "Bearer \(s.validToken)"
            }
            return valid ? Self.json(["ok": true]) : Self.unauthorized
        }
        router.post("/oauth/token") { request, _ in
            let body = String(buffer: try await request.body.collect(upTo: 10_000))
            let form = Dictionary(uniqueKeysWithValues: body.split(separator: "&").map { pair in
                let parts = pair.split(separator: "=", maxSplits: 1).map { String($0).removingPercentEncoding ?? "" }
                return (parts[0], parts.count > 1 ? parts[1] : "")
            })
            try await Task.sleep(for: .milliseconds(50))  // slow enough for concurrent callers to pile up
            switch form["grant_type"] {
            case "refresh_token":
                let expected = self.state.withLock { $0.rotatingRefreshToken } ?? Self.refreshToken
                guard form["refresh_token"] == expected, form["client_id"] == "client-1", form["client_secret"] == Self.clientSecret else {
                    self.state.withLock { $0.refusedRefreshes += 1 }
                    return Self.json(["error": "invalid_grant"], status: .badRequest)
                }
                let token = self.issueToken { $0.refreshCalls += 1 }
                let next = self.state.withLock { s -> String in
                    if s.rotatingRefreshToken != nil { s.rotatingRefreshToken = "\(Self.refreshToken)-\(s.issued)" }
                    return s.rotatingRefreshToken ?? Self.refreshToken
                }
                if let raw = self.state.withLock({ $0.rawExpiresIn }) {
                    let text = #"{"access_token":"\#(token)","refresh_token":"\#(next)","expires_in":\#(raw),"token_type":"bearer"}"#
                    return Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
                }
                return Self.json(["access_token": .string(token), "refresh_token": .string(next), "expires_in": 3600, "token_type": "bearer"])
            case "client_credentials":
                guard form["client_id"] == "cc-client", form["client_secret"] == Self.clientSecret, form["scope"] == "read write" else {
                    return Self.json(["error": "invalid_client"], status: .unauthorized)
                }
                let token = self.issueToken { $0.ccCalls += 1 }
                return Self.json(["access_token": .string(token), "expires_in": 3600])
            default:
                return Self.json(["error": "unsupported_grant_type"], status: .badRequest)
            }
        }
        router.get("/flaky") { _, _ in
            let call = self.state.withLock { s -> Int in
                s.flakyCalls += 1
                return s.flakyCalls
            }
            return call <= 2 ? Self.json(["error": "down"], status: .serviceUnavailable) : Self.json(["ok": true, "calls": .number(JSONNumber(call))])
        }
        router.get("/scripted") { _, _ in
            let script = self.state.withLock { $0.script }
            var fields = HTTPFields()
            for (name, value) in script.headers {
                if let name = HTTPField.Name(name) { fields.append(HTTPField(name: name, value: value)) }
            }
            return Response(
                status: HTTPResponse.Status(code: script.status), headers: fields, body: ResponseBody(byteBuffer: ByteBuffer(string: script.body)))
        }
        router.get("/down") { _, _ in Self.json(["error": "down"], status: .badGateway) }
        router.get("/limited") { _, _ in
            let call = self.state.withLock { s -> Int in
                s.limitedCalls += 1
                s.limitedTimes.append(.now)
                return s.limitedCalls
            }
            return call <= 2 ? Self.json(["error": "slow down"], status: .tooManyRequests, headers: [.retryAfter: "1"]) : Self.json(["ok": true])
        }
        router.get("/limited-long") { _, _ in Self.json(["error": "slow down"], status: .tooManyRequests, headers: [.retryAfter: "3600"]) }
        router.get("/big") { _, _ in Self.json(.string(String(repeating: "x", count: 5000))) }
        router.get("/missing") { _, _ in Self.json(["error": "no such thing"], status: .notFound) }
        router.get("/ticks") { _, _ in
            self.state.withLock { $0.limitedTimes.append(.now) }
            return Self.json(["ok": true])
        }

        // Pagination: cursor (body), link (header), link (body), offset, page.
        router.get("/cursor") { request, _ in
            let limit = Int(request.uri.queryParameters.get("limit") ?? "") ?? 10
            let start = Int(request.uri.queryParameters.get("cursor").map { String($0.dropFirst(2)) } ?? "0") ?? 0
            let slice = Array(Self.items[min(start, Self.items.count)..<min(start + limit, Self.items.count)])
            let next: JSONValue = start + limit < Self.items.count ? .string("c-\(start + limit)") : .null
            return Self.json(["data": ["orders": .array(slice)], "meta": ["next_cursor": next]])
        }
        router.get("/link") { request, context in
            let page = Int(request.uri.queryParameters.get("p") ?? "0") ?? 0
            let slice = Array(Self.items.dropFirst(page * 10).prefix(10))
            var headers: HTTPFields = [:]
            if (page + 1) * 10 < Self.items.count {
                let host = request.head.authority ?? "127.0.0.1"
                headers[HTTPField.Name("Link")!] = "<http://\(host)/link?p=\(page + 1)>; rel=\"next\", <http://\(host)/link?p=0>; rel=\"first\""
            }
            return Self.json(.array(slice), headers: headers)
        }
        // Relative links, as many APIs send them: an absolute path (`/api/...`) or a path relative to the page.
        router.get("/api/rel-link") { request, _ in
            let page = Int(request.uri.queryParameters.get("p") ?? "0") ?? 0
            let slice = Array(Self.items.dropFirst(page * 10).prefix(10))
            var headers: HTTPFields = [:]
            if (page + 1) * 10 < Self.items.count {
                let target = page % 2 == 0 ? "/api/rel-link?p=\(page + 1)" : "rel-link?p=\(page + 1)"
                headers[HTTPField.Name("Link")!] = "<\(target)>; rel=\"next\""
            }
            return Self.json(.array(slice), headers: headers)
        }
        // A provider that echoes the query credential in its next link, as many do.
        router.get("/key-query-link") { request, _ in
            guard request.uri.queryParameters.get("api_key") == Self.apiKey else { return Self.unauthorized }
            let page = Int(request.uri.queryParameters.get("p") ?? "0") ?? 0
            let slice = Array(Self.items.dropFirst(page * 10).prefix(10))
            var headers: HTTPFields = [:]
            if (page + 1) * 10 < Self.items.count {
                let host = request.head.authority ?? "127.0.0.1"
                headers[HTTPField.Name("Link")!] = "<http://\(host)/key-query-link?api_key=\(Self.apiKey)&p=\(page + 1)>; rel=\"next\""
            }
            return Self.json(.array(slice), headers: headers)
        }
        router.get("/api/echo/{segment}") { request, _ in
            Self.json(["path": .string(request.uri.path), "query": .string(request.uri.query ?? "")])
        }
        router.get("/retry-after/{value}") { request, context in
            let value = context.parameters.get("value") ?? ""
            return Self.json(["error": "slow down"], status: .tooManyRequests, headers: [.retryAfter: value])
        }
        router.get("/link-body") { request, _ in
            let page = Int(request.uri.queryParameters.get("p") ?? "0") ?? 0
            let slice = Array(Self.items.dropFirst(page * 10).prefix(10))
            let host = request.head.authority ?? "127.0.0.1"
            let next: JSONValue = (page + 1) * 10 < Self.items.count ? .string("http://\(host)/link-body?p=\(page + 1)") : .null
            return Self.json(["results": .array(slice), "paging": ["next": next]])
        }
        router.get("/offset") { request, _ in
            let offset = Int(request.uri.queryParameters.get("offset") ?? "0") ?? 0
            let limit = Int(request.uri.queryParameters.get("limit") ?? "10") ?? 10
            return Self.json(["items": .array(Array(Self.items.dropFirst(offset).prefix(limit)))])
        }
        router.get("/page") { request, _ in
            let page = Int(request.uri.queryParameters.get("page") ?? "1") ?? 1
            let size = Int(request.uri.queryParameters.get("per_page") ?? "10") ?? 10
            return Self.json(["items": .array(Array(Self.items.dropFirst((page - 1) * size).prefix(size)))])
        }
        return router
    }

    /// Issues the next token (`at-N`), which becomes the only valid one, and counts the grant.
    func issueToken(counting: (inout State) -> Void) -> String {
        state.withLock { s in
            counting(&s)
            s.issued += 1
            s.validToken = "at-\(s.issued)"
            return s.validToken
        }
    }

    /// Runs `body` with the server listening on a loopback port; passes its base URL.
    func serve(_ body: @escaping @Sendable (String) async throws -> Void) async throws {
        let app = Application(router: router(), configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            try await body("http://127.0.0.1:\(client.port!)")
        }
    }
}
