import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Synchronization
import Testing
import TributaryCore
import TributaryStore
import TributaryTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// `tributary serve` as a child process, with a declarative sync whose variants carry hostile
/// metadata and whose provider (in this test process, over loopback) answers with everything a
/// careless or malicious API can send: `Retry-After: inf`, a page over the cap, nesting beyond any
/// parser, links to another host or with the API key and a `user:password@` in them, cursors too
/// long to checkpoint, error bodies echoing the key, pages that never end.
///
/// The process must stay up, every run must end (succeeded, or failed with an error naming the
/// problem), a run on an endless listing must stop when its variant is paused, and the API key must
/// appear nowhere: not in the log, the database file, API answers, dashboard pages or webhooks.
@Suite("Hostile metadata and a hostile provider against serve (child process)")
struct HostileServeProcessTests {
    static let apiKey = "pk-LEAK-3c9f1e77"
    /// The key and user info in a checkpoint "an older version" saved (planted by the test, so in the
    /// database by construction): they must not show anywhere else.
    static let oldKey = "pk-OLD-55aa0d12"
    static let oldUserInfo = "olduser:oldpw"
    static let secretKey = "dev-secret-key-0000000001"
    static let signingKey = "hook-signing-key-00000001"

    /// What each variant's metadata names as its store, and how its run must end (nil: succeeded).
    static let variants: [(variant: String, store: String, failure: String?)] = [
        ("base", "ok", nil),
        ("space", "my store", nil),
        ("query", "x?y=1#z", nil),
        ("template", "{metadata.base.store}", nil),
        ("unicode", "ünï/cödé", nil),
        ("relative", "relative", nil),
        ("weird", "weird", nil),
        ("dots", "..", "'.' or '..' segment"),
        ("long", String(repeating: "l", count: 3_000), "2048"),
        ("retry", "retry-inf", "HTTP 429"),
        ("huge", "huge", "outbound.max_page_bytes"),
        ("foreign", "foreign", "outside the integration's base_url"),
        ("badjson", "badjson", "JSON"),
        ("deep", "deep", "nesting deeper than"),
        ("longlink", "longlink", "longer than 4000 bytes"),
        ("echo400", "echo400", "HTTP 400"),
        ("noid", "noid", "id"),
        ("schemerel", "schemerel", "HTTP 404"),
    ]

    /// The hostile provider and the app's webhook receiver, on one loopback port.
    final class Provider: Sendable {
        let port = Mutex(0)
        let stores = Mutex<[String]>([])
        let webhooks = Mutex<[String]>([])
        let endlessPages = Mutex(0)

        static func json(_ text: String, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
            var fields = headers
            fields[.contentType] = "application/json"
            return Response(status: status, headers: fields, body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
        }

        static func page(_ ids: [String], next: String?) -> Response {
            let records = ids.map { #"{"id":"\#($0)","total":1}"# }.joined(separator: ",")
            let link = next.map { "\"\($0.replacingOccurrences(of: "\"", with: "\\\""))\"" } ?? "null"
            return json(#"{"data":[\#(records)],"next":\#(link)}"#)
        }

        func router() -> Router<BasicRequestContext> {
            let router = Router()
            router.post("/hook") { request, _ in
                let body = try await request.body.collect(upTo: 1 << 20)
                self.webhooks.withLock { $0.append(String(buffer: body)) }
                return Response(status: .ok)
            }
            router.get("/api/stores/:store/orders") { request, context in
                guard request.uri.queryParameters.get("api_key") == HostileServeProcessTests.apiKey else {
                    return Self.json(#"{"error":"unauthorized"}"#, status: .unauthorized)
                }
                let raw = context.parameters.get("store") ?? ""
                let store = raw.removingPercentEncoding ?? raw
                self.stores.withLock { $0.append(store) }
                let page = Int(request.uri.queryParameters.get("p") ?? "1") ?? 1
                let port = self.port.withLock { $0 }
                let key = HostileServeProcessTests.apiKey
                switch store {
                case "ok":
                    // An absolute next link with a user:password@ and the API key echoed in it.
                    return page == 1
                        ? Self.page(["ok-1", "ok-2"], next: "http://user:pw@127.0.0.1:\(port)/api/stores/ok/orders?p=2&api_key=\(key)")
                        : Self.page(["ok-3", "ok-4"], next: nil)
                case "relative":
                    return page == 1 ? Self.page(["rel-1"], next: "?p=2&api_key=\(key)") : Self.page(["rel-2"], next: nil)
                case "retry-inf":
                    return Self.json("{}", status: .tooManyRequests, headers: [HTTPField.Name("Retry-After")!: "inf"])
                case "huge":
                    return Self.page((0..<3_000).map { "huge-\($0)-" + String(repeating: "h", count: 20) }, next: nil)
                case "foreign":
                    return Self.page(["f-1"], next: "http://example.invalid/api/stores/foreign/orders?p=2&api_key=\(key)")
                case "badjson":
                    return Self.json(#"{"data":[{"id":"b-1"},"#)
                case "deep":
                    return Self.json(#"{"data":"# + String(repeating: "[", count: 20_000))
                case "weird":
                    return Self.json(
                        #"{"data":[{"id":"w-1","nul":"a\u0000b","big":1e400,"neg":-0,"int":123456789012345678901234567890,"#
                            + #""emoji":"\ud83d\ude00","lone":"\ud800x","ctl":"\u0007"},{"id":"w-2","nested":{"a":[[[[{"b":null}]]]]}}],"next":""}"#)
                case "longlink":
                    // Five pages, each next link too long to checkpoint: whichever pages the run saves
                    // together first, their checkpoint names the page after them. (Two pages with one
                    // link, the second repeating it, ended the listing after them: saved in one write,
                    // they needed no checkpoint, and the run then succeeded.)
                    return Self.page(["ll-\(page)"], next: page < 5 ? "/api/stores/longlink/orders?p=\(page + 1)&pad=" + String(repeating: "a", count: 5_000) : nil)
                case "echo400":
                    return Self.json(#"{"error":"bad request for api_key=\#(key)"}"#, status: .badRequest)
                case "schemerel":
                    // Scheme-relative, with a port Foundation cannot parse: kept as text, so its user info must go by hand.
                    return Self.page(["sr-1"], next: "//user:pw@127.0.0.1:x/api/stores/schemerel/orders?p=2")
                case "legacy":
                    // Resumed from a checkpoint an older version saved with the key in its link: only the
                    // current key may arrive (once), and the provider is down.
                    if request.uri.queryParameters.getAll("api_key") != [key] { return Self.json(#"{"error":"two keys"}"#, status: .badRequest) }
                    return Self.json("{}", status: .serviceUnavailable)
                case "noid":
                    return Self.json(#"{"data":[{"name":"no id here"}],"next":null}"#)
                case "endless":
                    // A listing that never ends, slowly: only a pause stops the run.
                    self.endlessPages.withLock { $0 += 1 }
                    try await Task.sleep(for: .milliseconds(100))
                    return Self.page(["e-\(page)"], next: "/api/stores/endless/orders?p=\(page + 1)&api_key=\(key)")
                default:
                    return Self.page(["s-\(store.utf8.count)"], next: nil)
                }
            }
            return router
        }
    }

    static func config(port: Int) -> String {
        """
        environments:
          dev:
            secret_key: \(secretKey)
            webhooks: { urls: ["http://127.0.0.1:\(port)/hook"], signing_key: \(signingKey) }
        scheduler:
          tick_seconds: 0.1
          lease_seconds: 5
          drain_seconds: 0
          retry_max_attempts: 0
        outbound:
          retries: 0
          timeout_seconds: 10
          max_page_bytes: 65536
        integrations:
          hostile:
            base_url: http://127.0.0.1:\(port)/api
            auth: { type: api_key, query_parameter: api_key }
            syncs:
              orders:
                models: [Order]
                frequency: every hour
                sync_type: full
                track_deletes: true
                endpoint: /stores/{metadata.{variant}.store}/orders
                pagination: { type: link, next_url_path: next }
                records_path: data
              legacy_orders:
                models: [LegacyOrder]
                frequency: every hour
                auto_start: false
                endpoint: /stores/{metadata.{variant}.store}/orders
                pagination: { type: link, next_url_path: next }
                records_path: data
        """
    }

    struct Answer {
        let status: Int
        let body: String
        let headers: [(String, String)]
    }

    static func call(_ http: HTTPClient, _ method: HTTPRequest.Method, _ url: String, body: String? = nil, headers: [String: String] = [:]) async throws -> Answer {
        var request = HTTPClientRequest(url: url)
        request.method = .init(rawValue: method.rawValue)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(string: body)) }
        let response = try await http.execute(request, timeout: .seconds(30))
        let bytes = try await response.body.collect(upTo: 16 << 20)
        return Answer(status: Int(response.status.code), body: String(buffer: bytes), headers: response.headers.map { ($0.name, $0.value) })
    }

    @Test func theProcessStaysUpEveryRunEndsAndTheKeyAppearsNowhere() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: ServeProcessTests.binary.path), "build the tributary product first")
        let database = try await TestStore(.sqlite)
        let provider = Provider()
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        do {
            try await scenario(database, provider, http)
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }

    func scenario(_ database: TestStore, _ provider: Provider, _ http: HTTPClient) async throws {
        let app = Application(router: provider.router(), configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            let port = try #require(client.port)
            provider.port.withLock { $0 = port }
            let configFile = database.directory.appendingPathComponent("tributary.yaml")
            try Self.config(port: port).write(to: configFile, atomically: true, encoding: .utf8)
            let apiPort = try childProcessPorts()[0]
            let log = database.directory.appendingPathComponent("serve.log")
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            let process = Process()
            process.executableURL = ServeProcessTests.binary
            process.currentDirectoryURL = database.directory
            process.arguments = [
                "serve", "--config", configFile.path, "--database", database.location, "--port", "\(apiPort)", "--insecure-dev-key", "--log-level", "debug",
            ]
            let logHandle = try FileHandle(forWritingTo: log)
            process.standardOutput = logHandle
            process.standardError = logHandle
            try process.run()
            defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
            let api = "http://127.0.0.1:\(apiPort)"
            let auth = ["Authorization": "Bearer \(Self.secretKey)", "Content-Type": "application/json"]
            var up = false
            for _ in 0..<1_200 where !up {
                try await Task.sleep(for: .milliseconds(50))
                up = (try? await Self.call(http, .get, api + "/health"))?.status == 200
            }
            try #require(up, "serve answers")

            // The connection, with every variant's hostile store in its metadata.
            var metadata = JSONObject()
            for item in Self.variants { metadata["\(item.variant).store"] = .string(item.store) }
            metadata["endless.store"] = "endless"
            metadata["legacy.store"] = "legacy"
            let body: JSONValue = [
                "provider_config_key": "hostile", "connection_id": "victim",
                "credentials": ["type": "API_KEY", "api_key": .string(Self.apiKey)], "metadata": .object(metadata),
            ]
            let created = try await Self.call(http, .post, api + "/connections", body: JSONWriter.string(body), headers: auth)
            #expect(created.status == 201, "\(created.body)")
            for name in Self.variants.map(\.variant).filter({ $0 != "base" }) + ["endless"] {
                let made = try await Self.call(
                    http, .post, api + "/sync/orders/variant/\(name)", body: #"{"provider_config_key":"hostile","connection_id":"victim"}"#, headers: auth)
                #expect(made.status == 200, "\(name): \(made.body)")
            }

            // A variant of a sync that does not start on its own, with a checkpoint as an older version
            // saved it: the next link holds a user:password@ and an old API key.
            let made = try await Self.call(
                http, .post, api + "/sync/legacy_orders/variant/legacy", body: #"{"provider_config_key":"hostile","connection_id":"victim"}"#, headers: auth)
            #expect(made.status == 200, "\(made.body)")
            let connection = ConnectionRef(environment: "dev", providerConfigKey: "hostile", connectionId: "victim")
            let legacy = VariantRef(connection: connection, syncName: "legacy_orders", variant: "legacy")
            try await database.store.saveCheckpoint(
                ["next": .string("http://\(Self.oldUserInfo)@127.0.0.1:\(port)/api/stores/legacy/orders?p=2&api_key=\(Self.oldKey)")], for: legacy)
            let legacyStatus = try await Self.call(
                http, .get, api + "/sync/status?syncs=legacy_orders::legacy&provider_config_key=hostile&connection_id=victim", headers: auth)
            #expect(legacyStatus.body.contains("/api/stores/legacy/orders?p=2"), "the old checkpoint is shown (\(legacyStatus.body))")
            for action in ["start", "trigger"] {
                let answer = try await Self.call(
                    http, .post, api + "/sync/\(action)",
                    body: #"{"provider_config_key":"hostile","connection_id":"victim","syncs":[{"name":"legacy_orders","variant":"legacy"}]}"#, headers: auth)
                // Started, the variant is due at once: the scheduler may queue its run before the trigger does.
                #expect(answer.status == 200 || (action == "trigger" && answer.body.contains("sync_running")), "\(action): \(answer.body)")
            }

            // Every variant's first run ends; the endless one keeps reading until it is paused.
            var ended: [String: RunRecord] = [:]
            for _ in 0..<1_200 where ended.count < Self.variants.count {
                try await Task.sleep(for: .milliseconds(100))
                #expect(process.isRunning, "serve is still up")
                guard process.isRunning else { break }
                for item in Self.variants where ended[item.variant] == nil {
                    let runs = try await database.store.runs(of: VariantRef(connection: connection, syncName: "orders", variant: item.variant), limit: 5)
                    if let run = runs.last(where: { $0.status.isFinished }) { ended[item.variant] = run }
                }
            }
            for item in Self.variants {
                let run = try #require(ended[item.variant], "\(item.variant): its run ended")
                if let failure = item.failure {
                    #expect(run.status == .failed, "\(item.variant): \(run.status) \(run.error ?? "")")
                    #expect(run.error?.contains(failure) == true, "\(item.variant): '\(run.error ?? "")' names \(failure)")
                } else {
                    #expect(run.status == .succeeded, "\(item.variant): \(run.error ?? "")")
                }
            }
            var legacyRun: RunRecord? = nil
            for _ in 0..<300 where legacyRun == nil {
                legacyRun = try await database.store.runs(of: legacy, limit: 1).first.flatMap { $0.status.isFinished ? $0 : nil }
                if legacyRun == nil { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(legacyRun?.status == .failed && legacyRun?.error?.contains("HTTP 503") == true, "resumed with the current key only: \(legacyRun?.error ?? "")")
            let seen = provider.stores.withLock { $0 }
            for store in ["my store", "x?y=1#z", "{metadata.base.store}", "ünï/cödé"] {
                #expect(seen.contains(store), "the provider received '\(store)' as one path segment, as it is")
            }
            let records = try await Self.call(
                http, .get, api + "/records?model=Order&variant=base", headers: auth.merging(["Connection-Id": "victim", "Provider-Config-Key": "hostile"]) { $1 })
            #expect(records.body.contains("ok-4") && !records.body.contains("ok-5"), "both pages of the absolute link were read")

            // The endless listing is stopped by a pause, within seconds.
            let endless = VariantRef(connection: connection, syncName: "orders", variant: "endless")
            for _ in 0..<400 where provider.endlessPages.withLock({ $0 }) < 4 { try await Task.sleep(for: .milliseconds(50)) }
            #expect(provider.endlessPages.withLock { $0 } >= 4, "the endless run is reading")
            let midway = try await Self.call(http, .get, api + "/sync/status?syncs=orders::endless&provider_config_key=hostile&connection_id=victim", headers: auth)
            #expect(midway.body.contains("/api/stores/endless/orders?p="), "its checkpoint holds the next link (\(midway.body))")
            let paused = try await Self.call(
                http, .post, api + "/sync/pause", body: #"{"provider_config_key":"hostile","connection_id":"victim","syncs":[{"name":"orders","variant":"endless"}]}"#,
                headers: auth)
            #expect(paused.status == 200, "\(paused.body)")
            var stopped: RunRecord? = nil
            for _ in 0..<300 where stopped == nil {
                try await Task.sleep(for: .milliseconds(100))
                stopped = try await database.store.runs(of: endless, limit: 1).first.flatMap { $0.status.isFinished ? $0 : nil }
            }
            #expect(stopped?.status == .cancelled, "pausing ends a run on a listing that never ends")
            let pagesAtPause = provider.endlessPages.withLock { $0 }
            try await Task.sleep(for: .milliseconds(500))
            #expect(provider.endlessPages.withLock { $0 } <= pagesAtPause + 1, "and nothing reads it any more")

            // Webhooks went out (the receiver is this process); wait for the failed runs' ones.
            for _ in 0..<600 where provider.webhooks.withLock({ $0.count }) < Self.variants.count {
                try await Task.sleep(for: .milliseconds(100))
            }
            let webhooks = provider.webhooks.withLock { $0 }
            #expect(webhooks.count >= Self.variants.count, "one webhook per ended run at least (\(webhooks.count))")

            // What an app, an operator or a dashboard user can read — none of it holds the key.
            var answers: [(String, String)] = []
            let connectionHeaders = auth.merging(["Connection-Id": "victim", "Provider-Config-Key": "hostile"]) { $1 }
            for path in [
                "/connections", "/sync/status?syncs=*&provider_config_key=hostile&connection_id=victim",
                "/sync/runs?provider_config_key=hostile&connection_id=victim&sync=orders&variant=base",
                "/sync/runs?provider_config_key=hostile&connection_id=victim&sync=orders&variant=echo400",
                "/sync/runs?provider_config_key=hostile&connection_id=victim&sync=orders&variant=foreign",
                "/sync/status?syncs=legacy_orders::legacy&provider_config_key=hostile&connection_id=victim",
                "/sync/runs?provider_config_key=hostile&connection_id=victim&sync=legacy_orders&variant=legacy",
                "/webhooks/deliveries", "/integrations/hostile",
            ] {
                let answer = try await Self.call(http, .get, api + path, headers: connectionHeaders)
                #expect(answer.status == 200, "\(path): \(answer.body)")
                answers.append((path, answer.body))
            }
            for item in Self.variants + [("endless", "endless", nil)] {
                let answer = try await Self.call(http, .get, api + "/records?model=Order&variant=\(item.variant)", headers: connectionHeaders)
                answers.append(("/records \(item.variant)", answer.body))
            }
            // The one answer that hands the credentials to the app, by design (as Nango does) — and
            // without the old key of the planted checkpoint.
            let own = try await Self.call(http, .get, api + "/connections/victim?provider_config_key=hostile", headers: auth)
            #expect(own.status == 200 && own.body.contains(Self.apiKey) && !own.body.contains(Self.oldKey))
            let statusAnswer = answers.first { $0.0.hasPrefix("/sync/status") }?.1 ?? ""
            #expect(statusAnswer.contains("\"checkpoint\""), "the status answer really shows checkpoints")
            // The dashboard, logged in as a browser would be.
            let login = try await Self.call(
                http, .post, api + "/dashboard/login", body: "secret_key=\(Self.secretKey)", headers: ["Content-Type": "application/x-www-form-urlencoded"])
            let cookie = login.headers.first { $0.0.lowercased() == "set-cookie" }?.1.split(separator: ";").first.map(String.init)
            let session = try #require(cookie, "the dashboard logs in (\(login.status))")
            let runIds = ended.values.map(\.id) + (stopped.map { [$0.id] } ?? [])
            var pages = ["/dashboard", "/dashboard/connection?integration=hostile&connection=victim"]
            pages += (Self.variants.map(\.variant) + ["endless"]).map { "/dashboard/variant?integration=hostile&connection=victim&sync=orders&variant=\($0)" }
            pages += ["/dashboard/variant?integration=hostile&connection=victim&sync=legacy_orders&variant=legacy"]
            pages += (runIds + (legacyRun.map { [$0.id] } ?? [])).map { "/dashboard/runs/\($0)" }
            pages += ["/dashboard/records?integration=hostile&connection=victim&sync=orders&variant=base&model=Order"]
            for page in pages {
                let answer = try await Self.call(http, .get, api + page, headers: ["Cookie": session])
                #expect(answer.status == 200, "\(page): \(answer.status)")
                answers.append((page, answer.body))
            }
            #expect(answers.contains { $0.0.hasPrefix("/dashboard/runs/") && $0.1.contains("HTTP 400") }, "the run pages really show errors")

            process.terminate()
            for _ in 0..<200 where process.isRunning { try await Task.sleep(for: .milliseconds(25)) }
            #expect(!process.isRunning && process.terminationReason == .exit && process.terminationStatus == 0, "serve stops cleanly")
            try logHandle.close()

            let logText = try String(contentsOf: log, encoding: .utf8)
            #expect(logText.contains("run finished"), "the debug log is really captured")
            var files: [(String, String)] = [("the log", logText)]
            for suffix in ["", "-wal", "-shm"] {
                if let data = FileManager.default.contents(atPath: database.location + suffix) {
                    files.append(("the database file\(suffix)", String(decoding: data, as: UTF8.self)))
                }
            }
            #expect(files.dropFirst().contains { $0.1.contains("ok-4") }, "the database files are really read (a record is in them)")
            for (name, text) in files + answers + webhooks.map({ ("a webhook", $0) }) {
                let (key, userInfo) = (text.contains(Self.apiKey), text.contains("user:pw"))  // (not the text itself into the test's output)
                #expect(!key, "the API key leaked into \(name)")
                #expect(!userInfo, "a link's user:password@ leaked into \(name)")
            }
            for (name, text) in [files[0]] + answers + webhooks.map({ ("a webhook", $0) }) {
                let (key, userInfo) = (text.contains(Self.oldKey), text.contains(Self.oldUserInfo))
                #expect(!key, "the old checkpoint's key leaked into \(name)")
                #expect(!userInfo, "the old checkpoint's user info leaked into \(name)")
            }
        }
    }
}
