import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import Synchronization
import TributaryCore
import TributaryEngine
import TributarySQLite
import TributaryServer
import TributaryStore
import TributaryTestSupport

/// A fake OAuth 2 provider on a loopback port: an authorize page with Allow and Deny links, a token
/// endpoint that checks the client, the redirect URI and the PKCE verifier and rotates refresh
/// tokens, an API that takes only the current access token (`/api/me`) or one API key
/// (`/api/verify`), and the app's webhook endpoint (`/hooks`).
final class FakeOAuthProvider: Sendable {
    static let clientID = "tributary-client"
    static let clientSecret = "client-SECRET-xyz"
    static let goodKey = "key-GOOD-0001"

    struct Grant: Sendable {
        let redirectURI: String
        let challenge: String?
        let scope: String?
        var used = false
    }

    struct State: Sendable {
        var grants: [String: Grant] = [:]
        var accessToken: String?
        var refreshToken: String?
        var issued = 0
        var codeExchanges = 0
        var refusedExchanges = 0
        var refreshRevoked = false
        var apiAuthorizations: [String] = []
        var authorizeQueries: [[String: String]] = []
        var webhooks: [(headers: [String: String], body: [UInt8])] = []
        var goodbyes: [String] = []
    }

    let state = Mutex(State())
    let port: Int

    init(port: Int) { self.port = port }

    var base: String { "http://127.0.0.1:\(port)" }
    /// Where browsers meet the provider: `localhost` — another site than Tributary's `127.0.0.1` —
    /// so the round trip is cross-site, as with a real provider (SameSite rules apply).
    var site: String { "http://localhost:\(port)" }

    func issue() -> (String, String) {
        state.withLock { state in
            state.issued += 1
            state.accessToken = "at-SECRET-\(state.issued)"
            state.refreshToken = "rt-SECRET-\(state.issued)"
            return (state.accessToken!, state.refreshToken!)
        }
    }

    var application: some ApplicationProtocol {
        let router = Router()
        router.get("/oauth/authorize") { request, _ -> Response in
            var query: [String: String] = [:]
            for (key, value) in request.uri.queryParameters { query[String(key)] = String(value) }
            self.state.withLock { $0.authorizeQueries.append(query) }
            guard query["client_id"] == Self.clientID, query["response_type"] == "code", let redirect = query["redirect_uri"], let state = query["state"] else {
                return Self.html("<h1>Bad request</h1>", status: .badRequest)
            }
            let code = "code-\(UUID().uuidString.prefix(8))"
            let challenge = query["code_challenge_method"] == "S256" ? query["code_challenge"] : nil
            self.state.withLock { $0.grants[code] = Grant(redirectURI: redirect, challenge: challenge, scope: query["scope"]) }
            let allow = "\(redirect)?code=\(FormEncoding.escape(code))&amp;state=\(FormEncoding.escape(state))"
            let deny = "\(redirect)?error=access_denied&amp;error_description=The+user+denied+access&amp;state=\(FormEncoding.escape(state))"
            return Self.html(
                """
                <!doctype html><html lang="en"><head><meta charset="utf-8"><title>Fakehub</title></head><body>
                <h1>Fakehub</h1><p>Tributary asks for: <span id="scope">\(query["scope"] ?? "")</span></p>
                <p><a id="allow" href="\(allow)">Allow</a> <a id="deny" href="\(deny)">Deny</a></p></body></html>
                """)
        }
        router.post("/oauth/token") { request, _ -> Response in
            var request = request
            let text = String(buffer: try await request.collectBody(upTo: 65536))
            let form = try URLEncodedFormDecoder().decode([String: String].self, from: text)
            guard form["client_id"] == Self.clientID, form["client_secret"] == Self.clientSecret else {
                return Self.json(["error": "invalid_client"], status: .unauthorized)
            }
            switch form["grant_type"] {
            case "authorization_code":
                let accepted = self.state.withLock { state -> Bool in
                    state.codeExchanges += 1
                    guard let code = form["code"], var grant = state.grants[code], !grant.used, grant.redirectURI == form["redirect_uri"] else {
                        state.refusedExchanges += 1
                        return false
                    }
                    if let challenge = grant.challenge {
                        guard let verifier = form["code_verifier"], ConnectToken.challenge(for: verifier) == challenge else {
                            state.refusedExchanges += 1
                            return false
                        }
                    }
                    grant.used = true
                    state.grants[code] = grant
                    return true
                }
                guard accepted else { return Self.json(["error": "invalid_grant"], status: .badRequest) }
                let (access, refresh) = self.issue()
                return Self.json(["access_token": .string(access), "refresh_token": .string(refresh), "expires_in": 3600, "token_type": "bearer"])
            case "refresh_token":
                let current = self.state.withLock { $0.refreshRevoked ? nil : $0.refreshToken }
                guard let current, form["refresh_token"] == current else { return Self.json(["error": "invalid_grant"], status: .badRequest) }
                let (access, refresh) = self.issue()
                return Self.json(["access_token": .string(access), "refresh_token": .string(refresh), "expires_in": 3600])
            default:
                return Self.json(["error": "unsupported_grant_type"], status: .badRequest)
            }
        }
        router.get("/api/me") { request, _ -> Response in
            let authorization = request.headers[.authorization] ?? ""
            let valid = self.state.withLock { state -> Bool in
                state.apiAuthorizations.append(authorization)
                return state.accessToken.map { "Bearer \($0)" == authorization } ?? false
            }
            return valid ? Self.json(["id": "me", "login": "octo"]) : Self.json(["error": "bad token"], status: .unauthorized)
        }
        router.post("/api/goodbye") { request, _ -> Response in
            self.state.withLock { $0.goodbyes.append(request.headers[.authorization] ?? "") }
            return Self.json(["ok": true])
        }
        router.get("/api/verify") { request, _ -> Response in
            request.headers[HTTPField.Name("X-Api-Key")!] == Self.goodKey ? Self.json(["ok": true]) : Self.json(["error": "bad key"], status: .unauthorized)
        }
        // The app's page: opens the Connect link in a popup, as Nango's frontend does, and shows what
        // the popup tells it.
        router.get("/app") { request, _ -> Response in
            let link = request.uri.queryParameters.get("link") ?? ""
            let quoted = JSONWriter.string(.string(link)).replacingOccurrences(of: "<", with: "\\u003c")
            return Self.html(
                """
                <!doctype html><html lang="en"><head><meta charset="utf-8"><title>The app</title></head><body>
                <h1>The app</h1><button id="connect" type="button">Connect your account</button><pre id="result"></pre>
                <script>
                window.addEventListener("message", function (event) { document.getElementById("result").textContent = JSON.stringify(event.data); });
                document.getElementById("connect").addEventListener("click", function () { window.open(\(quoted), "tributary-connect", "popup,width=520,height=720"); });
                </script></body></html>
                """)
        }
        router.post("/hooks") { request, _ -> Response in
            var request = request
            let bytes = Array(try await request.collectBody(upTo: 1_000_000).readableBytesView)
            var headers: [String: String] = [:]
            for field in request.headers { headers[field.name.canonicalName.lowercased()] = field.value }
            self.state.withLock { $0.webhooks.append((headers, bytes)) }
            return Response(status: .ok)
        }
        var logger = Logger(label: "fake-oauth")
        logger.logLevel = .critical
        return Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)), logger: logger)
    }

    /// The webhooks received, parsed.
    var webhookBodies: [JSONObject] {
        state.withLock { $0.webhooks }.compactMap { try? JSONParser.parse($0.body).objectValue }
    }

    static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: JSONWriter.bytes(value, canonical: false))))
    }

    static func html(_ text: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "text/html; charset=utf-8"], body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }
}

/// Tributary (API, worker, webhook delivery, Connect page) on one loopback port with `server.public_url`
/// pointing at it, and the fake OAuth provider on another; every call goes over real HTTP.
struct ConnectFixture {
    let store: SQLiteStore
    let provider: FakeOAuthProvider
    let tributary: String
    let http: HTTPClient
    let databasePath: String

    static let signing = "whsec-connect-0123456789"

    static func yaml(tributaryPort: Int, providerPort: Int) -> String {
        """
        server: { public_url: "http://127.0.0.1:\(tributaryPort)" }
        webhook_delivery: { retry_base_seconds: 0.05, retry_max_seconds: 0.2, poll_seconds: 0.05 }
        outbound: { retries: 0 }
        environments:
          dev:
            secret_key: \(devKey)
            webhooks: { urls: ["http://127.0.0.1:\(providerPort)/hooks"], signing_key: \(signing) }
          prod:
            secret_key: \(prodKey)
        integrations:
          fakehub:
            provider: Fakehub
            base_url: http://127.0.0.1:\(providerPort)
            auth:
              type: oauth2
              authorization_url: http://localhost:\(providerPort)/oauth/authorize
              token_url: http://127.0.0.1:\(providerPort)/oauth/token
              client_id: \(FakeOAuthProvider.clientID)
              client_secret: \(FakeOAuthProvider.clientSecret)
              scopes: [profile, repo]
              authorization_params: { access_type: offline }
            syncs:
              profile: { function: profile, models: [Profile], frequency: every day }
            on_events:
              validate-connection: [check-profile]
              post-connection-creation: [remember-login]
              pre-connection-deletion: [say-goodbye]
          keyshop:
            provider: Keyshop
            base_url: http://127.0.0.1:\(providerPort)
            auth: { type: api_key, header: X-Api-Key, verification: { method: GET, path: /api/verify } }
            syncs:
              contacts: { function: noop, models: [Contact], frequency: every day, auto_start: false }
          basicshop:
            provider: Basicshop
            base_url: http://127.0.0.1:\(providerPort)
            auth: { type: basic }
            syncs: {}
            on_events:
              validate-connection: [refuse-blocked]
          plain:
            syncs:
              things: { function: noop, models: [Thing], frequency: every day }
        """
    }

    /// Starts everything, runs `body`, and stops everything.
    static func run(_ body: @escaping @Sendable (ConnectFixture) async throws -> Void) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-connect-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let ports = try childProcessPorts(2)
        let tributaryPort = ports[0]
        let provider = FakeOAuthProvider(port: ports[1])
        let config = try ConfigLoader.parse(yaml: yaml(tributaryPort: tributaryPort, providerPort: provider.port), file: "connect.yaml", environment: [:])
        let path = directory.appendingPathComponent("connect.sqlite").path
        let store = try SQLiteStore(path: path)
        defer { try? store.close() }
        try await store.migrate()
        var logger = Logger(label: "connect-test")
        logger.logLevel = .critical
        // Saves the provider's profile, read with the connection's token.
        let profile = ClosureSyncFunction(name: "profile") { nango in
            let me = try await nango.get("/api/me")
            guard me.isSuccess, let object = try me.json().objectValue else { throw TributaryError(.providerError, "the profile answered \(me.status)") }
            try await nango.batchSave([object], model: "Profile")
        }
        let noop = ClosureSyncFunction(name: "noop") { _ in }
        // On-event functions: a profile check with the credentials being saved, the login kept in
        // the metadata once created, a goodbye call before deletion, and a refusal by user name.
        let checkProfile = ClosureConnectionEventFunction(name: "check-profile") { nango in
            let me = try await nango.get("/api/me")
            guard me.isSuccess else { throw ConnectionEventError("The account's profile cannot be read (HTTP \(me.status)).") }
            await nango.log("profile of \(try me.json()["login"]?.stringValue ?? "?") readable")
        }
        let rememberLogin = ClosureConnectionEventFunction(name: "remember-login") { nango in
            let login = try await nango.get("/api/me").json()["login"] ?? .null
            try await nango.updateMetadata(["login": login])
        }
        let sayGoodbye = ClosureConnectionEventFunction(name: "say-goodbye") { nango in
            _ = try await nango.post("/api/goodbye", json: ["connection": .string(nango.connectionId)])
            await nango.log("said goodbye", level: .info)
        }
        let refuseBlocked = ClosureConnectionEventFunction(name: "refuse-blocked") { nango in
            if (try await nango.getMetadata())["blocked"] == true { throw ConnectionEventError("This account is blocked.") }
            let response = try await nango.get("/api/verify")
            await nango.log("verify answered \(response.status)")
            if response.status == 401 { throw ConnectionEventError("Basicshop does not know this account.") }
        }
        let functions = try SyncFunctionRegistry([profile, noop], events: [checkProfile, rememberLogin, sayGoodbye, refuseBlocked])
        let outbound = OutboundHTTP()
        let cipher = CredentialCipher.insecureDevelopment
        let providers = ProviderAccess(config: config, store: store, cipher: cipher, http: outbound, logger: logger)
        let executor = SyncExecutor(store: store, functions: functions, providers: providers, webhooks: SyncWebhookPlanner(config: config), logger: logger)
        let worker = RunCoordinator(executor: executor, config: config, logger: logger)
        let delivery = WebhookDeliveryService(store: store, config: config, http: outbound, logger: logger)
        let api = API(
            config: config, runs: RunQueue(store: store, worker: worker), cipher: cipher, providers: providers, deliveryService: delivery, functions: functions)
        let app = try buildApplication(api: api, logger: logger, port: tributaryPort)
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        let fixture = ConnectFixture(store: store, provider: provider, tributary: "http://127.0.0.1:\(tributaryPort)", http: http, databasePath: path)
        do {
            try await runServices([provider.application, outbound, delivery, worker, app]) {
                try await eventually("both servers listen") {
                    let tributaryUp = (try? await fixture.fetch(.GET, fixture.tributary + "/health").status) == 200
                    let providerUp = (try? await fixture.fetch(.GET, provider.base + "/api/verify").status) == 401
                    return tributaryUp && providerUp
                }
                try await body(fixture)
            }
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }

    struct Page: Sendable {
        let status: Int
        let headers: [String: String]
        let body: String

        var json: JSONValue { (try? JSONParser.parse(body)) ?? .null }
        var location: String? { headers["location"] }

        /// The value of `attribute` on the first element whose opening tag contains `marker`.
        func attribute(_ attribute: String, of marker: String) -> String? {
            guard let start = body.range(of: marker) else { return nil }
            let tagStart = body[...start.lowerBound].lastIndex(of: "<") ?? start.lowerBound
            let tag = body[tagStart...].prefix { $0 != ">" }
            guard let range = tag.range(of: "\(attribute)=\"") else { return nil }
            let value = tag[range.upperBound...].prefix { $0 != "\"" }
            return String(value).replacingOccurrences(of: "&amp;", with: "&").replacingOccurrences(of: "&#x2F;", with: "/").replacingOccurrences(of: "&#x3D;", with: "=")
        }
    }

    /// One request over HTTP; redirects are not followed.
    func fetch(_ method: HTTPMethod, _ url: String, json: JSONValue? = nil, form: [(String, String)]? = nil, headers: [String: String] = [:]) async throws -> Page {
        var request = HTTPClientRequest(url: url)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let json {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: JSONWriter.bytes(json, canonical: false)))
        }
        if let form {
            request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
            request.body = .bytes(ByteBuffer(string: form.map { "\(FormEncoding.escape($0.0))=\(FormEncoding.escape($0.1))" }.joined(separator: "&")))
        }
        let response = try await http.execute(request, timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 4 << 20)
        var fields: [String: String] = [:]
        for (name, value) in response.headers { fields[name.lowercased()] = value }
        return Page(status: Int(response.status.code), headers: fields, body: String(buffer: body))
    }

    /// An API call with the dev secret key.
    func api(_ method: HTTPMethod, _ path: String, _ body: JSONValue? = nil, key: String = devKey) async throws -> Page {
        try await fetch(method, tributary + path, json: body, headers: ["Authorization": "Bearer \(key)"])
    }

    /// A new session: its token and link.
    func session(_ body: JSONValue) async throws -> (token: String, link: String) {
        let created = try await api(.POST, "/connect/sessions", body)
        guard created.status == 201, let token = created.json["data"]?["token"]?.stringValue, let link = created.json["data"]?["connect_link"]?.stringValue else {
            throw TimedOut(what: "a session (got \(created.status) \(created.body))")
        }
        return (token, link)
    }
}
