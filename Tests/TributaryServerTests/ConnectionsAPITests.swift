import Foundation
import HTTPTypes
import Testing
import TributaryCore
import TributaryServer
import TributaryStore

@Suite("API: auth, integrations, connections, metadata")
struct ConnectionsAPITests {
    @Test func healthAndOpenAPINeedNoKeyEverythingElseDoes() async throws {
        let f = try await ServerFixture()
        try await f.withRouter { api in
            let health = try await api.send(.get, "/health", key: nil)
            #expect(health.status == .ok)
            #expect(health.json == ["result": "ok"])
            let document = try await api.send(.get, "/openapi.yaml", key: nil)
            #expect(document.status == .ok)
            #expect(document.contentType?.hasPrefix("application/yaml") == true)
            #expect(try await api.send(.get, "/integrations", key: nil).errorCode == "missing_auth_header")
            let unknown = try await api.send(.get, "/integrations", key: "not-a-key-at-all-000000")
            #expect(unknown.status == .unauthorized)
            #expect(unknown.errorCode == "unknown_account")
            let malformed = try await api.send(.get, "/integrations", key: nil, headers: ["Authorization": "Basic abc"])
            #expect(malformed.errorCode == "malformed_auth_header")
            let missingRoute = try await api.send(.get, "/nothing-here")
            #expect(missingRoute.status == .notFound)
            #expect(missingRoute.errorCode == "not_found")
            // A path the API serves, with a method it does not: 405 and the methods it does (RFC 9110).
            let wrongMethod = try await api.send(.delete, "/integrations", key: nil)
            #expect(wrongMethod.status == .methodNotAllowed)
            #expect(wrongMethod.errorCode == "method_not_allowed")
            #expect(wrongMethod.headers[.allow] == "GET")
            let withParameter = try await api.send(.put, "/connections/acme")
            #expect(withParameter.status == .methodNotAllowed)
            #expect(withParameter.headers[.allow]?.contains("DELETE") == true && withParameter.headers[.allow]?.contains("GET") == true)
            // A literal path is its own route, not a value of `/connections/{connectionId}`.
            #expect(try await api.send(.get, "/connections/metadata").headers[.allow] == "POST, PATCH")
            // A handler's own "not found" stays a 404, and so does a path no route has.
            #expect(try await api.send(.delete, "/connections/acme/extra").status == .notFound)
        }
    }

    /// Every route, asked with every method: the ones it declares are served (never 405), the
    /// others answer 405 naming it in `Allow` — so the 405 table agrees with the router, route by route.
    @Test func everyRouteAnswers405ForTheMethodsItDoesNotServe() async throws {
        let f = try await ServerFixture()
        let routes = f.api.routes
        try await f.withRouter { api in
            for route in routes {
                let path = route.path.replacingOccurrences(of: "{anyPath}", with: "x/y")
                    .replacingOccurrences(of: #"\{[A-Za-z]+\}"#, with: "x", options: .regularExpression)
                let declared = routes.filter { $0.path == route.path }.map(\.method)
                for method in [HTTPRequest.Method.get, .post, .put, .patch, .delete] {
                    let answer = try await api.send(method, path)
                    if declared.contains(method) {
                        #expect(answer.status != .methodNotAllowed, "\(method) \(path) is served")
                    } else {
                        #expect(answer.status == .methodNotAllowed, "\(method) \(path): \(answer.status)")
                        #expect(answer.headers[.allow]?.contains(route.method.rawValue) == true, "\(method) \(path): Allow \(answer.headers[.allow] ?? "none")")
                    }
                }
            }
        }
    }

    @Test func integrationsAreScopedToTheKeysEnvironment() async throws {
        let f = try await ServerFixture()
        try await f.withRouter { api in
            let dev = try await api.send(.get, "/integrations")
            #expect(dev.json["data"]?.arrayValue?.compactMap { $0["unique_key"]?.stringValue } == ["shop", "keyed"])
            let prod = try await api.send(.get, "/integrations", key: prodKey)
            #expect(prod.json["data"]?.arrayValue?.compactMap { $0["unique_key"]?.stringValue } == ["shop", "keyed", "prod-only"])
            let one = try await api.send(.get, "/integrations/shop")
            #expect(one.json["data"]?["syncs"]?.arrayValue?.compactMap { $0["name"]?.stringValue } == ["items", "slow"])
            #expect(one.json["data"]?["syncs"]?.arrayValue?.first?["track_deletes"] == true)
            let hidden = try await api.send(.get, "/integrations/prod-only")
            #expect(hidden.status == .notFound)
            #expect(hidden.errorCode == "unknown_provider_config")
            #expect(try await api.send(.get, "/integrations?x=1").errorCode == "invalid_query_params")
            // What the SDK's getIntegration(key, {include: [...]}) sends: include once (its last value) or repeated.
            #expect(one.json["data"]?["logo"]?.stringValue?.hasPrefix("data:image/svg+xml;base64,") == true, "a string, as Nango's type says")
            #expect(one.json["data"]?["webhook_url"] == nil, "only when asked for")
            let webhook = try await api.send(.get, "/integrations/shop?include=webhook")
            #expect(webhook.json["data"]?["webhook_url"] == "https://sync.example.test/webhook/dev/shop", "built from server.public_url")
            let both = try await api.send(.get, "/integrations/shop?include=webhook&include=credentials")
            #expect(both.status == .ok && both.json["data"]?["credentials"] == .null, "no OAuth client for this auth")
            #expect(try await api.send(.get, "/integrations/shop?include=credentials", key: prodKey).status == .forbidden, "prod keeps credentials to itself")
            #expect(try await api.send(.get, "/integrations/shop?include=logos").errorCode == "invalid_query_params")
        }
    }

    @Test func importingAConnectionCreatesBaseVariantsAndKeepsSecretsPrivate() async throws {
        let f = try await ServerFixture()
        try await f.withRouter { api in
            let created = try await api.send(
                .post, "/connections",
                body: [
                    "provider_config_key": "keyed", "connection_id": "c1", "credentials": ["type": "API_KEY", "api_key": "sk_live_very_secret"],
                    "metadata": ["plan": "pro"], "connection_config": ["region": "eu"],
                ])
            #expect(created.status == .created)
            #expect(created.json["connection_id"] == "c1")
            #expect(created.json["credentials"] == ["type": "API_KEY"])
            #expect(created.json["metadata"] == ["plan": "pro"])
            #expect(created.json["connection_config"] == ["region": "eu"])
            let text = JSONWriter.string(created.json)
            #expect(!text.contains("sk_live_very_secret"))
            let ref = ConnectionRef(environment: "dev", providerConfigKey: "keyed", connectionId: "c1")
            #expect(try await f.store.variants(of: ref).map { "\($0.ref.syncName)::\($0.ref.variant)" } == ["contacts::base"])
            // Stored sealed, not in clear.
            let stored = try #require(try await f.store.connection(ref))
            let sealed = try #require(stored.sealedCredentials)
            #expect(!String(decoding: sealed, as: UTF8.self).contains("sk_live_very_secret"))
            #expect(String(decoding: try f.api.cipher.open(sealed), as: UTF8.self).contains("sk_live_very_secret"))
            // Import again: 200, replaced.
            let again = try await api.send(
                .post, "/connections", body: ["provider_config_key": "keyed", "connection_id": "c1", "credentials": ["type": "API_KEY", "api_key": "other"]])
            #expect(again.status == .ok)
            #expect(again.json["metadata"] == [:])
            let fetched = try await api.send(.get, "/connections/c1?provider_config_key=keyed")
            #expect(fetched.status == .ok)
            #expect(fetched.json["credentials"] == ["type": "API_KEY", "apiKey": "other"], "to the secret-key holder, as Nango does")
        }
    }

    /// What the Node SDK's `getConnection`/`getToken`/`getMetadata` send and read; Nango's import
    /// shape; the environment that keeps credentials to itself.
    @Test func credentialsReachTheAppInNangosShapeUnlessTheEnvironmentSaysNo() async throws {
        let f = try await ServerFixture()
        try await f.withRouter { api in
            let created = try await api.send(
                .post, "/connections",
                body: ["provider_config_key": "keyed", "connection_id": "n1", "credentials": ["type": "API_KEY", "apiKey": "sk_nango_shape"]])
            #expect(created.status == .created, "Nango's current import shape (apiKey)")
            let sdk = "/connections/n1?provider_config_key=keyed&force_refresh=false&refresh_token=false&refresh_github_app_jwt_token=false"
            let fetched = try await api.send(.get, sdk)
            #expect(fetched.status == .ok, "\(fetched.json)")
            #expect(fetched.json["credentials"] == ["type": "API_KEY", "apiKey": "sk_nango_shape"])
            #expect(fetched.json["metadata"] == [:] && fetched.json["end_user"] == .null)
            let bothSpellings = try await api.send(
                .post, "/connections",
                body: ["provider_config_key": "keyed", "connection_id": "n2", "credentials": ["type": "API_KEY", "apiKey": "a", "api_key": "b"]])
            #expect(bothSpellings.errorCode == "invalid_body")
            #expect(try await api.send(.get, "/connections/n1?provider_config_key=keyed&force_refresh=maybe").errorCode == "invalid_query_params")
            // prod says expose_credentials: false — the connection reads without them; asking for more is refused.
            let prod = try await api.send(
                .post, "/connections",
                body: ["provider_config_key": "keyed", "connection_id": "p1", "credentials": ["type": "API_KEY", "apiKey": "sk_prod_private"]], key: prodKey)
            #expect(prod.status == .created)
            let hidden = try await api.send(.get, "/connections/p1?provider_config_key=keyed&force_refresh=false&refresh_token=false", key: prodKey)
            #expect(hidden.status == .ok && hidden.json["credentials"] == [:])
            #expect(!JSONWriter.string(hidden.json).contains("sk_prod_private"))
            let forced = try await api.send(.get, "/connections/p1?provider_config_key=keyed&force_refresh=true", key: prodKey)
            #expect(forced.status == .forbidden)
            #expect(forced.errorMessage?.contains("expose_credentials: false") == true)
        }
    }

    @Test func endUsersAndTagsAreSetFilteredAndPagedAsNangoDoes() async throws {
        let f = try await ServerFixture()
        try await f.withRouter { api in
            for index in 1...5 {
                let body: JSONValue = [
                    "provider_config_key": "shop", "connection_id": .string("u\(index)"), "credentials": ["type": "NONE"],
                    "end_user": ["id": .string("user-\(index % 2)"), "email": "a@example.com", "organization": ["id": .string("org-\(index % 3)")]],
                    "tags": ["Plan": .string(index <= 2 ? "pro" : "free"), "region": "eu"],
                ]
                #expect(try await api.send(.post, "/connections", body: body).status == .created)
            }
            func ids(_ query: String) async throws -> [String] {
                let answer = try await api.send(.get, "/connections" + query)
                #expect(answer.status == .ok, "\(query): \(answer.json)")
                return answer.json["connections"]?.arrayValue?.compactMap { $0["connection_id"]?.stringValue } ?? []
            }
            #expect(try await ids("?endUserId=user-1") == ["u1", "u3", "u5"])
            #expect(try await ids("?endUserOrganizationId=org-0") == ["u3"])
            #expect(try await ids("?tags%5Bplan%5D=pro") == ["u1", "u2"], "tag keys are lowercase, as the SDK sends them")
            #expect(try await ids("?tags[plan]=free&tags[region]=eu&endUserId=user-0") == ["u4"])
            #expect(try await ids("?limit=2&page=1") == ["u3", "u4"])
            #expect(try await ids("?limit=2&page=2") == ["u5"])
            #expect(try await api.send(.get, "/connections?limit=0").errorCode == "invalid_query_params")
            #expect(try await api.send(.get, "/connections?tags[1bad]=x").errorCode == "invalid_query_params")
            let listed = try await api.send(.get, "/connections?connectionId=u1")
            #expect(
                listed.json["connections"]?[0]?["tags"]
                    == ["plan": "pro", "region": "eu", "end_user_id": "user-1", "end_user_email": "a@example.com", "organization_id": "org-1"],
                "with the tags Nango derives from the end user")
            // What the SDK's listConnections({email}) sends.
            #expect(try await ids("?tags%5Bend_user_email%5D=a%40example.com&tags%5Borganization_id%5D=org-2") == ["u2", "u5"])
            let tooMany = (0...64).map { "tags%5Bk\($0)%5D=v" }.joined(separator: "&")
            #expect(try await api.send(.get, "/connections?" + tooMany).errorCode == "invalid_query_params", "filters are bounded")
            let twice = try await api.send(
                .post, "/connections", body: ["provider_config_key": "shop", "connection_id": "t", "credentials": ["type": "NONE"], "tags": ["Plan": "a", "plan": "b"]])
            #expect(twice.errorCode == "invalid_body", "one key, two spellings")
            #expect(listed.json["connections"]?[0]?["end_user"]?["organization"]?["id"] == "org-1")
            // PATCH replaces what it is given.
            let patched = try await api.send(
                .patch, "/connections/u1?provider_config_key=shop",
                body: ["end_user": ["id": "user-9", "display_name": "Ada", "email": .null, "organization": ["id": "o9", "display_name": .null]], "tags": ["plan": "enterprise"]])
            #expect(patched.status == .ok && patched.json == ["success": true])
            let one = try await api.send(.get, "/connections/u1?provider_config_key=shop")
            #expect(one.json["end_user"] == ["id": "user-9", "display_name": "Ada", "organization": ["id": "o9"]], "nulls are left out")
            #expect(one.json["tags"] == ["plan": "enterprise", "end_user_id": "user-9", "end_user_display_name": "Ada", "organization_id": "o9"])
            // Only the tags change: the derived ones stay with the end user.
            _ = try await api.send(.patch, "/connections/u1?provider_config_key=shop", body: ["tags": ["plan": "free"]])
            #expect(try await api.send(.get, "/connections/u1?provider_config_key=shop").json["tags"]?["end_user_id"] == "user-9")
            #expect(try await api.send(.patch, "/connections/u1?provider_config_key=shop", body: ["end_user": ["email": "x@y"]]).errorCode == "invalid_body")
            #expect(try await api.send(.patch, "/connections/u1?provider_config_key=shop", body: ["webhook": "x"]).errorCode == "invalid_body")
            #expect(try await api.send(.patch, "/connections/zz?provider_config_key=shop", body: ["tags": [:]]).status == .notFound)
        }
    }

    @Test(arguments: [
        (#"{"provider_config_key":"keyed","connection_id":"c","credentials":{"type":"NONE"}}"#, "invalid_body", "auth api_key"),
        (#"{"provider_config_key":"keyed","connection_id":"c","credentials":{"type":"API_KEY"}}"#, "invalid_body", "credentials.api_key is required"),
        (#"{"provider_config_key":"shop","connection_id":"c","credentials":{"type":"NONE","x":1}}"#, "invalid_body", "credentials.x"),
        (#"{"provider_config_key":"shop","connection_id":"c","credentials":{"type":"MAGIC"}}"#, "invalid_body", "not supported"),
        (#"{"provider_config_key":"shop","connection_id":"c"}"#, "invalid_body", "'credentials' is required"),
        (#"{"provider_config_key":"shop","connection_id":"c","credentials":{"type":"NONE"},"extra":true}"#, "invalid_body", "Unknown field 'extra'"),
        (#"{"provider_config_key":"nope","connection_id":"c","credentials":{"type":"NONE"}}"#, "unknown_provider_config", "does not exist"),
        (#"{"provider_config_key":"shop","connection_id":5,"credentials":{"type":"NONE"}}"#, "invalid_body", "'connection_id' must be a string"),
        (#"[1,2]"#, "invalid_body", "must be a JSON object"),
        (#"{"provider_config_key": "#, "invalid_body", "not valid JSON"),
        ("", "invalid_body", "empty"),
    ])
    func badConnectionImportsAreRefusedClearly(_ body: String, _ code: String, _ message: String) async throws {
        let f = try await ServerFixture()
        try await f.withRouter { api in
            let response = try await api.send(.post, "/connections", rawBody: body)
            #expect(response.status.code >= 400 && response.status.code < 500)
            #expect(response.errorCode == code)
            #expect(response.json["error"]?["message"]?.stringValue?.contains(message) == true, "\(response.json)")
            #expect(try await f.store.connections(ConnectionFilter(environment: "dev")).isEmpty, "nothing changed")
        }
    }

    @Test func oversizeBodiesAreRefused() async throws {
        let f = try await ServerFixture()
        try await f.withRouter { api in
            let huge = #"{"provider_config_key":"shop","connection_id":"c","metadata":{"blob":""# + String(repeating: "x", count: 1_100_000) + "\"}}"
            let response = try await api.send(.post, "/connections", rawBody: huge)
            #expect(response.status == .contentTooLarge)
            #expect(response.errorCode == "payload_too_large")
        }
    }

    @Test func listGetAndDeleteConnections() async throws {
        let f = try await ServerFixture()
        try await f.withRouter { api in
            try await api.connect("alpha")
            try await api.connect("beta")
            try await api.send(.post, "/connections", body: ["provider_config_key": "keyed", "connection_id": "gamma", "credentials": ["type": "API_KEY", "api_key": "k"]])
            try await api.connect("prod-1", key: prodKey)
            let all = try await api.send(.get, "/connections")
            #expect(all.json["connections"]?.arrayValue?.compactMap { $0["connection_id"]?.stringValue } == ["alpha", "beta", "gamma"])
            #expect(all.json["connections"]?.arrayValue?.first?["created"]?.stringValue?.hasSuffix("+00:00") == true)
            let filtered = try await api.send(.get, "/connections?integrationId=keyed")
            #expect(filtered.json["connections"]?.arrayValue?.count == 1)
            let searched = try await api.send(.get, "/connections?search=et")
            #expect(searched.json["connections"]?.arrayValue?.compactMap { $0["connection_id"]?.stringValue } == ["beta"])
            #expect(try await api.send(.get, "/connections?bogus=1").errorCode == "invalid_query_params")
            #expect(try await api.send(.get, "/connections/alpha").errorCode == "invalid_query_params")
            let otherEnvironment = try await api.send(.get, "/connections/prod-1?provider_config_key=shop")
            #expect(otherEnvironment.status == .notFound)
            #expect(otherEnvironment.errorCode == "unknown_connection")

            // Delete removes its records and variants.
            _ = try await api.send(.post, "/sync/trigger", body: ["provider_config_key": "shop", "connection_id": "alpha", "syncs": ["items"]])
            _ = try await f.waitForRuns(VariantRef(connection: ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "alpha"), syncName: "items"))
            let deleted = try await api.send(.delete, "/connections/alpha?provider_config_key=shop")
            #expect(deleted.json == ["success": true])
            #expect(try await api.send(.get, "/connections/alpha?provider_config_key=shop").status == .notFound)
            #expect(try await api.send(.delete, "/connections/alpha?provider_config_key=shop").status == .notFound)
            let records = try await api.send(.get, "/records?model=Item", headers: ["Connection-Id": "alpha", "Provider-Config-Key": "shop"])
            #expect(records.errorCode == "unknown_connection")
        }
    }

    @Test func metadataOverwriteMergeAndAllOrNothing() async throws {
        let f = try await ServerFixture()
        try await f.withRouter { api in
            try await api.connect("a")
            try await api.connect("b")
            let set = try await api.send(
                .post, "/connections/metadata", body: ["connection_id": ["a", "b"], "provider_config_key": "shop", "metadata": ["x": 1, "nested": ["y": 1]]])
            #expect(set.status == .created)
            #expect(set.json["connection_id"] == ["a", "b"])
            let merged = try await api.send(
                .patch, "/connections/metadata", body: ["connection_id": "a", "provider_config_key": "shop", "metadata": ["nested": ["z": 2], "w": true]])
            #expect(merged.status == .ok)
            let a = ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "a")
            let b = ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "b")
            #expect(try await f.store.metadata(of: a) == ["x": 1, "nested": ["z": 2], "w": true])
            #expect(try await f.store.metadata(of: b) == ["x": 1, "nested": ["y": 1]])
            let partial = try await api.send(
                .post, "/connections/metadata", body: ["connection_id": ["b", "missing"], "provider_config_key": "shop", "metadata": ["gone": true]])
            #expect(partial.status == .notFound)
            #expect(partial.errorCode == "unknown_connection")
            #expect(try await f.store.metadata(of: b) == ["x": 1, "nested": ["y": 1]], "one unknown connection changes nothing")
            let legacy = try await api.send(.post, "/connection/metadata", body: ["connection_id": "b", "provider_config_key": "shop", "metadata": ["l": 1]])
            #expect(legacy.status == .created)
            #expect(try await f.store.metadata(of: b) == ["l": 1])
            #expect(try await api.send(.post, "/connections/metadata", body: ["connection_id": "b", "provider_config_key": "shop", "metadata": [1]]).errorCode == "invalid_body")
            #expect(try await api.send(.post, "/connections/metadata", body: ["connection_id": [], "provider_config_key": "shop", "metadata": [:]]).errorCode == "invalid_body")
            #expect(try await api.send(.patch, "/connections/metadata", body: ["connection_id": "b", "metadata": [:]]).errorCode == "invalid_body")
        }
    }
}
