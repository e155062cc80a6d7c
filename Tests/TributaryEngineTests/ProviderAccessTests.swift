import Foundation
import Logging
import Synchronization
import Testing
import TributaryCore
import TributaryEngine
import TributarySQLite
import TributaryStore
import TributaryTestSupport

/// Collects every log line (message and metadata) so a test can look for secrets in them.
final class LogCapture: Sendable {
    let lines = Mutex<[String]>([])

    struct Handler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let all = metadata.merging(event.metadata ?? [:]) { $1 }
            capture.lines.withLock { $0.append("\(event.message) \(all)") }
        }
    }

    var logger: Logger { Logger(label: "capture") { _ in Handler(capture: self) } }
}

/// A store with one connection per auth scheme, and provider access to a fake provider.
struct ProviderFixture {
    let engine: EngineFixture
    let access: ProviderAccess
    let config: TributaryConfig
    let policy: OutboundPolicy
    let http: OutboundHTTP
    let cipher = CredentialCipher.insecureDevelopment
    let logs = LogCapture()

    init(
        baseURL: String, policy: OutboundPolicy = OutboundPolicy(baseDelay: .milliseconds(20)), rateLimit: Double? = nil, kind: StoreKind = .sqlite
    ) async throws {
        engine = try await EngineFixture([], kind: kind)
        self.policy = policy
        config = try ConfigLoader.parse(
            yaml: """
                environments:
                  dev: { secret_key: dev-key-0000000000000001 }
                integrations:
                  key-header: { base_url: "\(baseURL)", auth: { type: api_key, header: X-Api-Key } }
                  key-query: { base_url: "\(baseURL)", auth: { type: api_key, query_parameter: api_key } }
                  bearer: { base_url: "\(baseURL)", auth: { type: bearer } }
                  basic: { base_url: "\(baseURL)", auth: { type: basic } }
                  oauth: { base_url: "\(baseURL)", auth: { type: oauth2, token_url: "\(baseURL)/oauth/token", client_id: client-1, client_secret: "\(FakeProviderServer.clientSecret)" } }
                  cc: { base_url: "\(baseURL)", auth: { type: oauth2_client_credentials, token_url: "\(baseURL)/oauth/token", scopes: [read, write] } }
                  open: { base_url: "\(baseURL)"\(rateLimit.map { ", rate_limit_per_second: \($0)" } ?? "") }
                """,
            file: "test.yaml", environment: [:])
        http = OutboundHTTP()
        access = ProviderAccess(config: config, store: engine.store, cipher: cipher, http: http, policy: policy, logger: logs.logger)
        let credentials: [String: JSONObject] = [
            "key-header": ["type": "API_KEY", "api_key": .string(FakeProviderServer.apiKey)],
            "key-query": ["type": "API_KEY", "api_key": .string(FakeProviderServer.apiKey)],
            "bearer": ["type": "API_KEY", "api_key": .string(FakeProviderServer.apiKey)],
            "basic": ["type": "BASIC", "username": "user", "password": .string(FakeProviderServer.apiKey)],
            // Expired an hour ago: the first call refreshes it.
            "oauth": [
                "type": "OAUTH2", "access_token": "at-stale", "refresh_token": .string(FakeProviderServer.refreshToken),
                "expires_at": .string(Timestamp(microseconds: Timestamp.now().microseconds - 3_600_000_000).iso8601),
            ],
            "cc": ["type": "OAUTH2_CC", "token": "", "client_id": "cc-client", "client_secret": .string(FakeProviderServer.clientSecret)],
        ]
        for key in ["key-header", "key-query", "bearer", "basic", "oauth", "cc", "open"] {
            let creds = credentials[key]
            _ = try await engine.store.importConnection(
                ConnectionImport(
                    ref: Self.connection(key), metadata: [:], connectionConfig: [:], credentialsType: creds?["type"]?.stringValue ?? "NONE",
                    sealedCredentials: try creds.map { try cipher.seal(JSONWriter.bytes(.object($0))) }),
                baseVariantsOf: [])
        }
    }

    static func connection(_ key: String) -> ConnectionRef { ConnectionRef(environment: "dev", providerConfigKey: key, connectionId: "c1") }

    /// Provider access of another process on the same database (its own store instance and vault).
    func otherProcess() async throws -> ProviderAccess {
        ProviderAccess(config: config, store: try await engine.testStore.reopen(), cipher: cipher, http: http, policy: policy, logger: logs.logger)
    }

    func get(_ key: String, _ path: String, query: [(name: String, value: String)] = []) async throws -> ProviderResponse {
        try await access.send(ProviderRequest(.GET, path, query: query), for: Self.connection(key))
    }

    func storedCredentials(_ key: String) async throws -> JSONObject {
        let record = try #require(try await engine.store.connection(Self.connection(key)))
        return try JSONParser.parse(try cipher.open(try #require(record.sealedCredentials))).objectValue ?? [:]
    }
}

@Suite("Provider access over real HTTP")
struct ProviderAccessTests {
    @Test(arguments: StoreKind.available) func everyCredentialKindReachesTheProvider(_ kind: StoreKind) async throws {
        let server = FakeProviderServer()
        try await server.serve { base in
            let f = try await ProviderFixture(baseURL: base, kind: kind)
            defer { Task { try? await f.http.shutdown() } }
            #expect(try await f.get("key-header", "/key-header").status == 200)
            let query = try await f.get("key-query", "/key-query", query: [("q", "a b&c")])
            #expect(query.status == 200)
            #expect(try query.json()["q"] == "a b&c", "the caller's parameters are escaped and kept beside the key")
            #expect(try await f.get("bearer", "/bearer").status == 200)
            #expect(try await f.get("basic", "/basic").status == 200)
            // Without credentials the same routes refuse: the 200s above came from the injected ones.
            #expect(try await f.get("open", "/key-header").status == 401)
            #expect(try await f.get("open", "/basic").status == 401)

            // OAuth 2: the stored token expired, so the first call refreshes before calling, and persists the new tokens.
            #expect(try await f.get("oauth", "/oauth").status == 200)
            #expect(server.state.withLock { $0.refreshCalls } == 1)
            let stored = try await f.storedCredentials("oauth")
            #expect(stored["access_token"] == "at-1")
            #expect(stored["refresh_token"] == .string(FakeProviderServer.refreshToken))
            let expires = try #require(stored["expires_at"]?.stringValue.flatMap(Timestamp.init(iso8601:)))
            #expect(expires.microseconds > Timestamp.now().microseconds + 3_000_000_000)
            #expect(!server.state.withLock { $0.seenAuthorization }.contains("Bearer at-stale"), "an expired token is never sent")

            // Client credentials: no token yet → one is fetched with the connection's client id/secret and scopes.
            #expect(try await f.get("cc", "/oauth").status == 200)
            #expect(server.state.withLock { $0.ccCalls } == 1)
            #expect(try await f.storedCredentials("cc")["token"]?.stringValue?.hasPrefix("at-") == true)
        }
    }

    @Test(arguments: StoreKind.available) func a401RefreshesOnceAndConcurrentRefreshesCollapse(_ kind: StoreKind) async throws {
        let server = FakeProviderServer()
        try await server.serve { base in
            let f = try await ProviderFixture(baseURL: base, kind: kind)
            defer { Task { try? await f.http.shutdown() } }
            _ = try await f.get("oauth", "/oauth")
            #expect(server.state.withLock { $0.refreshCalls } == 1)
            // The provider revokes the token (it still looks valid to us): eight calls at once get 401,
            // one refresh serves them all, and each call is repeated once with the new token.
            server.state.withLock { $0.validToken = "revoked-elsewhere" }
            server.state.withLock { $0.issued = 10 }
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<8 { group.addTask { try await f.get("oauth", "/oauth").status } }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(statuses == Array(repeating: 200, count: 8))
            #expect(server.state.withLock { $0.refreshCalls } == 2, "one refresh for eight concurrent 401s")
            #expect(try await f.storedCredentials("oauth")["access_token"] == "at-11")
        }
    }

    /// A provider that rotates refresh tokens (each one works once; reusing one revokes nothing here
    /// but is refused, as real providers do): two processes hitting a 401 at once refresh once, under
    /// the connection's refresh lock in the store, and both go on with the new token.
    @Test(arguments: StoreKind.available) func twoProcessesRefreshingARotatingTokenUseItOnce(_ kind: StoreKind) async throws {
        let server = FakeProviderServer()
        server.state.withLock { $0.rotatingRefreshToken = FakeProviderServer.refreshToken }
        try await server.serve { base in
            let f = try await ProviderFixture(baseURL: base, kind: kind)
            let other = try await f.otherProcess()
            _ = try await f.get("oauth", "/oauth")
            #expect(server.state.withLock { $0.refreshCalls } == 1)
            server.state.withLock { $0.validToken = "revoked-elsewhere" }
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for index in 0..<6 {
                    let access = index % 2 == 0 ? f.access : other
                    group.addTask { try await access.send(ProviderRequest(.GET, "/oauth"), for: ProviderFixture.connection("oauth")).status }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(statuses == Array(repeating: 200, count: 6))
            #expect(server.state.withLock { $0.refreshCalls } == 2, "one refresh across both processes")
            #expect(server.state.withLock { $0.refusedRefreshes } == 0, "no process used a spent refresh token")
            let stored = try await f.storedCredentials("oauth")
            #expect(stored["refresh_token"] == .string(server.state.withLock { $0.rotatingRefreshToken ?? "" }))
            try await f.http.shutdown()
        }
    }

    /// What `GET /connections/{id}?force_refresh=true` uses: an expired token is refreshed once, and a
    /// forced refresh right after it (or in a loop) does not call the token endpoint again.
    @Test func forcedRefreshesAreBoundedAndKeepTheRawAnswer() async throws {
        let server = FakeProviderServer()
        try await server.serve { base in
            let f = try await ProviderFixture(baseURL: base)
            defer { Task { try? await f.http.shutdown() } }
            let connection = ProviderFixture.connection("oauth")
            let first = try await f.access.credentials(for: connection, forceRefresh: true)
            for _ in 0..<5 { _ = try await f.access.credentials(for: connection, forceRefresh: true) }
            #expect(server.state.withLock { $0.refreshCalls } == 1, "the expired token was refreshed once; forced refreshes within a minute reuse it")
            #expect(first["access_token"] == "at-1")
            #expect(first["raw"]?["expires_in"] == 3600 && first["raw"]?["token_type"] == "bearer", "the token endpoint's answer, kept as raw")
            let shown = ConnectionCredentials.nangoShape(first, type: "OAUTH2", includeRefreshToken: false)
            #expect(shown["refreshed_at"] == nil && shown["raw"]?["refresh_token"] == nil)
        }
    }

    /// Credentials opened for a call serve the connection's next calls for the reuse time, not longer;
    /// the proxy (`freshCredentials`) and the API's credentials read the store every time.
    @Test(arguments: StoreKind.available) func openedCredentialsServeCallsForTheReuseTimeOnly(_ kind: StoreKind) async throws {
        let server = FakeProviderServer()
        try await server.serve { base in
            let f = try await ProviderFixture(baseURL: base, kind: kind)
            defer { Task { try? await f.http.shutdown() } }
            let connection = ProviderFixture.connection("key-header")
            func access(reuse: Duration) -> ProviderAccess {
                ProviderAccess(config: f.config, store: f.engine.store, cipher: f.cipher, http: f.http, policy: f.policy, credentialReuse: reuse, logger: f.logs.logger)
            }
            func call(_ access: ProviderAccess, fresh: Bool = false) async throws -> Int {
                try await access.send(ProviderRequest(.GET, "/key-header"), for: connection, freshCredentials: fresh).status
            }
            let long = access(reuse: .seconds(3600)), api = access(reuse: .seconds(3600))
            let short = access(reuse: .milliseconds(200)), never = access(reuse: .zero)
            for access in [long, api, short, never] { #expect(try await call(access) == 200) }

            // The app replaces the key (the provider does not know the new one).
            let replaced: JSONObject = ["type": "API_KEY", "api_key": "key-replaced"]
            try await f.engine.store.updateCredentials(try f.cipher.seal(JSONWriter.bytes(.object(replaced))), type: "API_KEY", of: connection)

            #expect(try await call(never) == 401, "without reuse every call reads the store")
            #expect(try await call(long) == 200, "within the reuse time the opened key is used again")
            #expect(try await api.credentials(for: connection, forceRefresh: false)["api_key"] == "key-replaced", "the API reads the store")
            #expect(try await call(long, fresh: true) == 401, "the proxy reads the store")
            #expect(try await call(long) == 401, "and what it read serves the next calls")
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await call(short) == 401, "past the reuse time the store is read again")

            // The API forgets what a process kept when it replaces or deletes a connection's credentials.
            let good: JSONObject = ["type": "API_KEY", "api_key": .string(FakeProviderServer.apiKey)]
            try await f.engine.store.updateCredentials(try f.cipher.seal(JSONWriter.bytes(.object(good))), type: "API_KEY", of: connection)
            #expect(try await call(long) == 401, "still the replaced key, kept")
            await long.forgetCredentials(of: connection)
            #expect(try await call(long) == 200, "forgotten: the store is read")
        }
    }

    /// A run waiting for a token refresh that another process holds stops waiting when it is
    /// cancelled (pause, reset, delete, shutdown) — not when the other process's lock runs out.
    @Test func waitingForAnotherProcesssRefreshEndsWhenCancelled() async throws {
        let server = FakeProviderServer()
        try await server.serve { base in
            let f = try await ProviderFixture(baseURL: base)
            defer { Task { try? await f.http.shutdown() } }
            // Another process holds this connection's refresh lock for five minutes.
            let grant = try await f.engine.store.beginCredentialRefresh(of: ProviderFixture.connection("oauth"), holder: "elsewhere/1", seconds: 300)
            if case .busy = grant { Issue.record("the lock was free") }
            let call = Task { try await f.get("oauth", "/oauth") }
            try await Task.sleep(for: .milliseconds(300))
            let cancelledAt = ContinuousClock.now
            call.cancel()
            let outcome = await call.result
            #expect(ContinuousClock.now - cancelledAt < .seconds(2), "the wait ends at once")
            #expect(throws: CancellationError.self) { try outcome.get() }
            #expect(server.state.withLock { $0.refreshCalls } == 0, "nothing refreshed behind the other process's back")
        }
    }

    @Test(arguments: StoreKind.available) func retriesBackOffAndHonourRetryAfter(_ kind: StoreKind) async throws {
        let server = FakeProviderServer()
        try await server.serve { base in
            let f = try await ProviderFixture(baseURL: base, kind: kind)
            defer { Task { try? await f.http.shutdown() } }
            // Two 503s, then 200: retried with backoff.
            let flaky = try await f.get("open", "/flaky")
            #expect(flaky.status == 200)
            #expect(server.state.withLock { $0.flakyCalls } == 3)
            // Two 429s with Retry-After: 1 → the retries wait a second each.
            #expect(try await f.get("open", "/limited").status == 200)
            let times = server.state.withLock { $0.limitedTimes }
            #expect(times.count == 3)
            #expect(times[1] - times[0] >= .milliseconds(950) && times[2] - times[1] >= .milliseconds(950), "Retry-After honoured")
            // Always down: every retry fails → ProviderUnavailable, which the run's retry policy treats as temporary.
            let error = await #expect(throws: ProviderUnavailable.self) { try await f.get("open", "/down") }
            #expect(error?.status == 502)
            // A Retry-After longer than a call may wait ends the call at once, carrying the wait to the run's retry.
            let started = ContinuousClock.now
            let long = await #expect(throws: ProviderUnavailable.self) { try await f.get("open", "/limited-long") }
            #expect(long?.retryAfterSeconds == 3600)
            #expect(ContinuousClock.now - started < .seconds(2))
            // Client errors are answers, not failures: returned as they are, not retried.
            #expect(try await f.get("open", "/missing").status == 404)
        }
    }

    @Test(arguments: StoreKind.available) func unreachableProvidersBoundedResponsesAndForeignHostsFailClearly(_ kind: StoreKind) async throws {
        // Nothing listens on this port: network errors are retried, then reported without the URL.
        let f = try await ProviderFixture(baseURL: "http://127.0.0.1:1", policy: OutboundPolicy(timeout: .seconds(1), retries: 1, baseDelay: .milliseconds(10)), kind: kind)
        defer { Task { try? await f.http.shutdown() } }
        let error = await #expect(throws: ProviderUnavailable.self) { try await f.get("key-query", "/key-query") }
        #expect(error?.status == nil)
        #expect(!"\(error.map { "\($0)" } ?? "")".contains(FakeProviderServer.apiKey))

        let server = FakeProviderServer()
        try await server.serve { base in
            let small = try await ProviderFixture(baseURL: base, policy: OutboundPolicy(maxResponseBytes: 1000), kind: kind)
            defer { Task { try? await small.http.shutdown() } }
            let tooBig = await #expect(throws: TributaryError.self) { try await small.get("open", "/big") }
            #expect(tooBig?.message.contains("larger than the limit of 1000 bytes") == true)
            // A page of a listing has its own, smaller cap (memory per run): the same 5 KB answer is
            // fine for a single call, too large for a page.
            let paged = try await ProviderFixture(baseURL: base, policy: OutboundPolicy(maxResponseBytes: 10_000, maxPageBytes: 1000), kind: kind)
            defer { Task { try? await paged.http.shutdown() } }
            #expect(try await paged.get("open", "/big").status == 200)
            let pages = ProviderPages(request: ProviderRequest(.GET, "/big"), pagination: Pagination(.page(pageParameter: "page", firstPage: 1))) {
                try await paged.access.send($0, for: ProviderFixture.connection("open"))
            }
            var iterator = pages.makeAsyncIterator()
            let tooBigPage = await #expect(throws: TributaryError.self) { _ = try await iterator.next() }
            #expect(tooBigPage?.message.contains("larger than the limit of 1000 bytes (outbound.max_page_bytes)") == true)
            // Credentials only go below base_url: an absolute URL elsewhere is refused before anything is sent.
            let foreign = await #expect(throws: TributaryError.self) {
                try await small.access.send(ProviderRequest(.GET, "http://example.invalid/steal"), for: ProviderFixture.connection("bearer"))
            }
            #expect(foreign?.message.contains("outside the integration's base_url") == true)
        }
    }

    /// What a provider or a function puts into a request — a `Retry-After` of `inf`, an id with a space
    /// or a `?`, a relative `Link` — never traps the process: it is clamped, escaped or refused clearly.
    @Test func hostileValuesInRequestsAndAnswersNeverTrap() async throws {
        let server = FakeProviderServer()
        try await server.serve { base in
            let f = try await ProviderFixture(baseURL: base, policy: OutboundPolicy(retries: 1, baseDelay: .milliseconds(10)))
            defer { Task { try? await f.http.shutdown() } }
            // Retry-After beyond any wait (or not a number) ends the call with the wait clamped to a day.
            for value in ["inf", "1e20", "99999999999999999999"] {
                let error = await #expect(throws: ProviderUnavailable.self) { try await f.get("open", "/retry-after/\(value)") }
                #expect(error?.retryAfterSeconds == 86_400, "\(value)")
            }
            for value in ["nan", "-5", "soon"] {
                let error = await #expect(throws: ProviderUnavailable.self) { try await f.get("open", "/retry-after/\(value)") }
                #expect(error?.status == 429 && error?.retryAfterSeconds == nil, "\(value): ignored, backoff instead")
            }
            // An id with a space, a `?` taken as the query, a fragment never sent: escaped, sent, answered.
            let echoed = try await f.get("open", "/api/echo/my store 1?x=a b#frag")
            let answer = try echoed.json()
            #expect(echoed.status == 200)
            #expect(answer["path"]?.stringValue == "/api/echo/my%20store%201")
            #expect(answer["query"]?.stringValue == "x=a%20b")
            // Dot segments, in any spelling, never leave base_url.
            for path in ["/a/../admin", "/a/%2e%2E/admin", "/a/.%2e"] {
                let refused = await #expect(throws: TributaryError.self) { try await f.get("open", path) }
                #expect(refused?.message.contains("'.' or '..' segment") == true, "\(path)")
            }
        }
    }

    // Timing at the provider, and the store plays no part: SQLite only.
    @Test func thePerConnectionRateLimitSpacesCalls() async throws {
        let server = FakeProviderServer()
        try await server.serve { base in
            let f = try await ProviderFixture(baseURL: base, rateLimit: 10)
            defer { Task { try? await f.http.shutdown() } }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<6 { group.addTask { _ = try await f.get("open", "/ticks") } }
                try await group.waitForAll()
            }
            let times = server.state.withLock { $0.limitedTimes }.sorted()
            #expect(times.count == 6)
            // 6 calls at 10/s are sent over half a second; arrival jitter on a loaded machine (the first call
            // also opens its connection) can shorten the spread seen here, but never to the few milliseconds
            // unlimited concurrent calls take.
            #expect(times[5] - times[0] >= .milliseconds(250), "6 calls at 10/s arrive spread out (\(times[5] - times[0]))")
        }
    }

    @Test(arguments: StoreKind.available) func secretsNeverAppearInLogsOrErrors(_ kind: StoreKind) async throws {
        let server = FakeProviderServer()
        try await server.serve { base in
            let f = try await ProviderFixture(baseURL: base, kind: kind)
            defer { Task { try? await f.http.shutdown() } }
            var errors: [String] = []
            _ = try await f.get("key-query", "/key-query")
            _ = try await f.get("oauth", "/oauth")
            server.state.withLock { $0.validToken = "revoked" }
            _ = try await f.get("oauth", "/oauth")
            do { _ = try await f.get("key-query", "/down") } catch { errors.append("\(error)") }
            let lines = f.logs.lines.withLock { $0 }
            #expect(lines.contains { $0.contains("refreshing the token") }, "the log is really captured")
            let stored = try await f.storedCredentials("oauth")
            let secrets = [FakeProviderServer.apiKey, FakeProviderServer.clientSecret, FakeProviderServer.refreshToken, stored["access_token"]?.stringValue ?? "?"]
            for secret in secrets {
                #expect(!lines.contains { $0.contains(secret) }, "\(secret) leaked into the log")
                #expect(!errors.contains { $0.contains(secret) }, "\(secret) leaked into an error")
            }
        }
    }
}

@Suite("Pagination over real HTTP")
struct PaginationTests {
    func ids(_ pages: ProviderPages) async throws -> (ids: [String], pages: Int, nexts: [String?]) {
        var ids: [String] = []
        var count = 0
        var nexts: [String?] = []
        for try await page in pages {
            ids += page.records.compactMap { $0["id"]?.stringValue }
            count += 1
            nexts.append(page.next)
        }
        return (ids, count, nexts)
    }

    @Test(arguments: StoreKind.available) func everyStyleReadsEveryRecordOnceAndCanResume(_ kind: StoreKind) async throws {
        let server = FakeProviderServer()
        try await server.serve { base in
            let f = try await ProviderFixture(baseURL: base, kind: kind)
            defer { Task { try? await f.http.shutdown() } }
            let send: @Sendable (ProviderRequest) async throws -> ProviderResponse = { try await f.access.send($0, for: ProviderFixture.connection("open")) }
            let all = FakeProviderServer.items.compactMap { $0["id"]?.stringValue }
            let styles: [(String, Pagination)] = [
                ("/cursor", Pagination(.cursor(nextCursorPath: "meta.next_cursor", cursorParameter: "cursor"), recordsPath: "data.orders", limitParameter: "limit", limit: 10)),
                ("/link", Pagination(.link(nextURLPath: nil))),
                ("/link-body", Pagination(.link(nextURLPath: "paging.next"), recordsPath: "results")),
                ("/offset", Pagination(.offset(offsetParameter: "offset"), recordsPath: "items", limitParameter: "limit", limit: 10)),
                ("/page", Pagination(.page(pageParameter: "page", firstPage: 1), recordsPath: "items", limitParameter: "per_page", limit: 10)),
            ]
            for (path, pagination) in styles {
                let read = try await ids(ProviderPages(request: ProviderRequest(.GET, path), pagination: pagination, send: send))
                #expect(read.ids == all, "\(path)")
                #expect(read.pages == 3, "\(path): 10 + 10 + 3")
                #expect(read.nexts.last == .some(nil), "\(path): the last page has no next")
                // Resuming after the first page reads the rest, nothing twice.
                let resumed = try await ids(ProviderPages(request: ProviderRequest(.GET, path), pagination: pagination, resumingAfter: read.nexts[0], send: send))
                #expect(resumed.ids == Array(all.dropFirst(10)), "\(path) resumed")
            }
            // A response without records where the pagination says fails clearly.
            let wrong = ProviderPages(request: ProviderRequest(.GET, "/cursor"), pagination: Pagination(.offset(offsetParameter: "offset"), recordsPath: "nope"), send: send)
            await #expect(throws: TributaryError.self) { _ = try await ids(wrong) }
        }
    }

    /// A next link that carries the query credential is kept without it (it goes into checkpoints,
    /// logs and errors); the credential is added again on the call.
    @Test func aNextLinkEchoingTheQueryCredentialIsKeptWithoutIt() async throws {
        let server = FakeProviderServer()
        try await server.serve { base in
            let f = try await ProviderFixture(baseURL: base)
            defer { Task { try? await f.http.shutdown() } }
            let send: @Sendable (ProviderRequest) async throws -> ProviderResponse = { try await f.access.send($0, for: ProviderFixture.connection("key-query")) }
            let read = try await ids(ProviderPages(request: ProviderRequest(.GET, "/key-query-link"), pagination: Pagination(.link(nextURLPath: nil)), send: send))
            #expect(read.ids == FakeProviderServer.items.compactMap { $0["id"]?.stringValue }, "every page read, each call authorised")
            #expect(read.nexts.first == .some(base + "/key-query-link?p=1"))
            #expect(!read.nexts.contains { $0?.contains(FakeProviderServer.apiKey) == true })
            #expect(!f.logs.lines.withLock { $0 }.contains { $0.contains(FakeProviderServer.apiKey) })
            // A link saved with an (old) key in it, by a version before links lost it, is resumed with
            // the connection's current key only — not both, which a provider would read as the old one.
            let resumed = try await f.get("key-query", base + "/key-query?q=1&api_key=revoked-key")
            #expect(resumed.status == 200)
            #expect(try resumed.json()["q"] == "1")
        }
    }

    @Test func oldCheckpointsAreShownWithoutTheLinkCredentials() throws {
        let saved: Checkpoint = ["next": "https://me:pw@p.test/o?p=2&api_key=s3cret", "since": "2026-01-01T00:00:00Z", "page": 3]
        let shown = saved.redactingLinkCredentials(["api_key"])
        #expect(shown["next"] == "https://p.test/o?p=2")
        #expect(shown["since"] == "2026-01-01T00:00:00Z" && shown["page"] == 3)
        #expect(saved.redactingLinkCredentials([])["next"] == "https://p.test/o?p=2&api_key=s3cret", "user info always goes; names only when given")
    }

    /// A relative `Link` resolves against the URL that returned it (RFC 3986), also when base_url has a path.
    @Test func relativeLinksResolveAgainstThePageThatSentThem() async throws {
        let server = FakeProviderServer()
        try await server.serve { base in
            let f = try await ProviderFixture(baseURL: base + "/api")
            defer { Task { try? await f.http.shutdown() } }
            let send: @Sendable (ProviderRequest) async throws -> ProviderResponse = { try await f.access.send($0, for: ProviderFixture.connection("open")) }
            let read = try await ids(ProviderPages(request: ProviderRequest(.GET, "/rel-link"), pagination: Pagination(.link(nextURLPath: nil)), send: send))
            #expect(read.ids == FakeProviderServer.items.compactMap { $0["id"]?.stringValue })
            #expect(read.pages == 3)
            #expect(read.nexts.first == .some(base + "/api/rel-link?p=1"))
        }
    }
}

@Suite("Page prefetching")
struct PagePrefetchTests {
    /// Ten pages of two records behind an offset cursor; counts requests as they start.
    final class Source: Sendable {
        let requested = Mutex<[Int]>([])

        func send(_ request: ProviderRequest) async throws -> ProviderResponse {
            let offset = Int(request.query.first { $0.name == "offset" }?.value ?? "0") ?? 0
            requested.withLock { $0.append(offset) }
            let records = offset >= 20 ? [] : [#"{"id":"r\#(offset)"}"#, #"{"id":"r\#(offset + 1)"}"#]
            return ProviderResponse(status: 200, headers: [], body: Array(#"{"items":[\#(records.joined(separator: ","))]}"#.utf8))
        }
        var count: Int { requested.withLock { $0.count } }
    }

    func pages(_ source: Source) -> ProviderPages {
        ProviderPages(request: ProviderRequest(.GET, "/items"), pagination: Pagination(.offset(offsetParameter: "offset"), recordsPath: "items")) {
            try await source.send($0)
        }
    }

    @Test func fetchesTheNextPageWhileOneIsProcessedInOrder() async throws {
        let source = Source()
        var ids: [String] = []
        var prefetched = 0
        try await pages(source).forEachPage { page in
            // The request for the page after this one starts while this one is being processed
            // (the last page, the empty one, has none after it).
            if page.next != nil {
                let deadline = ContinuousClock.now + .seconds(5)
                while source.count < (ids.count / 2) + 2, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(1)) }
                if source.count >= (ids.count / 2) + 2 { prefetched += 1 }
            }
            ids += page.records.compactMap { $0["id"]?.stringValue }
        }
        #expect(ids == (0..<20).map { "r\($0)" })
        #expect(prefetched == 10, "every page's successor was requested while it was processed")
        #expect(source.requested.withLock { $0 } == Array(stride(from: 0, through: 20, by: 2)), "each page requested once, in order, up to the empty one")
    }

    @Test func anErrorInTheBodyStopsFetching() async throws {
        struct Stop: Error {}
        let source = Source()
        var seen = 0
        await #expect(throws: Stop.self) {
            try await pages(source).forEachPage { _ in
                seen += 1
                if seen == 3 { throw Stop() }
            }
        }
        #expect(seen == 3)
        #expect(source.count <= 6, "at most three pages ahead of the failing one were requested")
    }

    @Test func theFetchingSideRunsAtMostThreePagesAhead() async throws {
        let source = Source()
        var held = false
        var pagesSeen = 0
        try await pages(source).forEachPage { _ in
            pagesSeen += 1
            guard !held else { return }
            held = true
            // While the first page is held here, the pages after it are fetched, but no more than
            // three: four pages in memory at most.
            let deadline = ContinuousClock.now + .seconds(5)
            while source.count < 4, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(1)) }
            try await Task.sleep(for: .milliseconds(100))
            #expect(source.count == 4)
        }
        #expect(pagesSeen == 11, "ten pages and the empty one")
    }

    @Test func aCancelledListingThrowsAndStopsFetching() async throws {
        let source = Source()
        let started = Mutex(0)
        let listing = Task {
            try await pages(source).forEachPage { _ in
                started.withLock { $0 += 1 }
                try await Task.sleep(for: .seconds(30))  // held until cancelled
            }
        }
        let deadline = ContinuousClock.now + .seconds(5)
        while started.withLock({ $0 }) == 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(1)) }
        listing.cancel()
        await #expect(throws: CancellationError.self) { try await listing.value }
        let requested = source.count
        try await Task.sleep(for: .milliseconds(50))
        #expect(source.count == requested && requested <= 4, "nothing fetched after the cancellation, at most three pages ahead before it")
        #expect(started.withLock { $0 } == 1)
    }

    /// A body slower than the fetching side gets the pages that waited for it together, two at
    /// most, in order; each page once.
    @Test func aSlowBodyTakesThePagesReadyForItTwoAtATime() async throws {
        let source = Source()
        let spec = DeclarativeSpec(endpoint: "/items", recordsPath: "items")
        var batches: [[[String]]] = []
        try await pages(source).forEachBatch(preparedBy: spec) { batch in
            if batches.isEmpty {
                // Held until the fetching side has four pages in memory (this call's among them)
                // and stopped: two or more are ready after it by then.
                let deadline = ContinuousClock.now + .seconds(5)
                while source.count < 4, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(1)) }
                try await Task.sleep(for: .milliseconds(100))
                #expect(source.count == 4, "no more than four pages in memory")
            }
            batches.append(batch.map { $0.records.map(\.id) })
        }
        let first = try #require(batches.first)
        let firstPages = first.count
        #expect((1...2).contains(firstPages))
        let expectedSecond = (firstPages..<(firstPages + 2)).map { ["r\($0 * 2)", "r\($0 * 2 + 1)"] }
        #expect(batches.dropFirst().first == expectedSecond, "the two pages that waited, in one call")
        #expect(batches.allSatisfy { !$0.isEmpty && $0.count <= 2 })
        #expect(batches.flatMap { $0 }.flatMap { $0 } == (0..<20).map { "r\($0)" }, "every record once, in order")
        #expect(source.requested.withLock { $0 } == Array(stride(from: 0, through: 20, by: 2)), "each page requested once, in order, up to the empty one")
    }

    /// A serial queue as a write executor, telling whether the current code runs on it.
    final class QueueExecutor: WriteExecutor, @unchecked Sendable {
        let queue = DispatchQueue(label: "test.write-executor")
        let key = DispatchSpecificKey<Bool>()
        let tenants = WriteExecutorTenants()
        func join() { tenants.join() }
        func leave() { tenants.leave() }
        var isAlone: Bool { tenants.isAlone }
        init() { queue.setSpecific(key: key, value: true) }
        var isCurrent: Bool { DispatchQueue.getSpecific(key: key) == true }
        func enqueue(_ job: consuming ExecutorJob) {
            let job = UnownedJob(job)
            queue.async { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
        }
    }

    /// With a write executor (a store's writer thread), the body runs on it and the fetching side
    /// never does — not even when the caller itself prefers that executor — and the pages come as
    /// without one.
    @Test(arguments: [false, true])
    func theWritingSideRunsOnTheWriteExecutorAndTheFetchingSideElsewhere(callerPrefersIt: Bool) async throws {
        let executor = QueueExecutor()
        let fetchesOnIt = Mutex(0)
        let source = Source()
        let listing = ProviderPages(request: ProviderRequest(.GET, "/items"), pagination: Pagination(.offset(offsetParameter: "offset"), recordsPath: "items")) {
            if executor.isCurrent { fetchesOnIt.withLock { $0 += 1 } }
            return try await source.send($0)
        }
        let spec = DeclarativeSpec(endpoint: "/items", recordsPath: "items")
        var ids: [String] = []
        var bodiesElsewhere = 0
        try await withTaskExecutorPreference(callerPrefersIt ? executor : nil) {
            try await listing.forEachBatch(preparedBy: spec, writingOn: executor) { batch in
                if !executor.isCurrent { bodiesElsewhere += 1 }
                try await Task.sleep(for: .milliseconds(1))  // a write: the body suspends and goes on
                if !executor.isCurrent { bodiesElsewhere += 1 }
                ids += batch.flatMap { $0.records.map(\.id) }
            }
        }
        #expect(ids == (0..<20).map { "r\($0)" }, "every record once, in order")
        #expect(bodiesElsewhere == 0, "the body ran on the write executor, before and after suspending")
        #expect(fetchesOnIt.withLock { $0 } == 0, "no fetch ran on the write executor")
        #expect(source.count == 11)
    }

    /// While another writing side has joined the write executor, a listing's body runs off it (the
    /// writer is busy with both sides' writes; its work there would hold up theirs) — also when the
    /// caller itself prefers that executor; once that side leaves — between two calls — the body goes
    /// back to it, and off again when another joins. The listing leaves when it ends.
    @Test(arguments: [false, true])
    func theWritingSideLeavesTheWriteExecutorWhileAnotherSideWritesThere(callerPrefersIt: Bool) async throws {
        let executor = QueueExecutor()
        let source = Source()
        let spec = DeclarativeSpec(endpoint: "/items", recordsPath: "items")
        executor.join()  // another writing side
        var placements: [Bool] = []
        var ids: [String] = []
        try await withTaskExecutorPreference(callerPrefersIt ? executor : nil) {
            try await pages(source).forEachBatch(preparedBy: spec, writingOn: executor) { batch in
                if placements.count < 4 { #expect(!executor.isAlone, "this listing joined too") }
                placements.append(executor.isCurrent)
                try await Task.sleep(for: .milliseconds(1))
                placements.append(executor.isCurrent)
                if placements.count == 4 { executor.leave() }  // the other side ends after this call
                if placements.count == 8 { executor.join() }  // and another starts after this one
                ids += batch.flatMap { $0.records.map(\.id) }
            }
        }
        // Ten pages, two at most per call: five calls at least.
        #expect(placements.count >= 10)
        #expect(placements.prefix(4).allSatisfy { !$0 }, "off the executor while the other side wrote: \(placements)")
        #expect(placements.dropFirst(4).prefix(4).allSatisfy { $0 }, "on it once alone: \(placements)")
        #expect(placements.dropFirst(8).allSatisfy { !$0 }, "off it again once another joined: \(placements)")
        #expect(ids == (0..<20).map { "r\($0)" }, "every record once, in order")
        #expect(executor.isAlone, "the listing left when it ended (only the last side is left)")
        executor.leave()
    }

    @Test func aDeclarativeCursorReadFromInsideTheRecordsFollowsEveryPage() async throws {
        // The next cursor is the last record's id (`data.1.id`): the body keeps its records for it.
        let spec = DeclarativeSpec(endpoint: "/items", recordsPath: "data")
        let pagination = Pagination(.cursor(nextCursorPath: "data.1.id", cursorParameter: "after"), recordsPath: "data")
        let listing = ProviderPages(request: ProviderRequest(.GET, "/items"), pagination: pagination) { request in
            let after = Int(request.query.first { $0.name == "after" }?.value ?? "0") ?? 0
            let records = after >= 10 ? "" : #"{"id":\#(after + 1),"v":"x"},{"id":\#(after + 2),"v":"y"}"#
            return ProviderResponse(status: 200, headers: [], body: Array(#"{"data":[\#(records)]}"#.utf8))
        }
        var ids: [String] = []
        try await listing.forEachPage(preparedBy: spec) { page in ids += page.records.map(\.id) }
        #expect(ids == (1...10).map(String.init))
    }

    @Test func aFailedFetchEndsTheListingAfterThePagesBeforeIt() async throws {
        struct Unreachable: Error {}
        let source = Source()
        var ids: [String] = []
        let failing = ProviderPages(request: ProviderRequest(.GET, "/items"), pagination: Pagination(.offset(offsetParameter: "offset"), recordsPath: "items")) {
            if $0.query.contains(where: { $0.name == "offset" && $0.value == "6" }) { throw Unreachable() }
            return try await source.send($0)
        }
        await #expect(throws: Unreachable.self) {
            try await failing.forEachPage { page in
                try await Task.sleep(for: .milliseconds(5))  // the fetching side runs into the failure first
                ids += page.records.compactMap { $0["id"]?.stringValue }
            }
        }
        #expect(ids == (0..<6).map { "r\($0)" }, "the pages before the failed one were all processed")
    }
}
