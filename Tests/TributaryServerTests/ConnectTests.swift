import Foundation
import Testing
import TributaryTestSupport
import TributaryCore
import TributaryServer
import TributaryStore

/// Connect over real HTTP: sessions, the Connect page, the OAuth 2 authorization-code flow with PKCE
/// against a fake provider, API-key forms with verification, and the `auth` webhooks.
@Suite("Connect: end users connect their own accounts")
struct ConnectTests {
    @Test func anEndUserConnectsWithOAuthTheAppIsToldByASignedWebhookAndASyncRunsWithTheTokens() async throws {
        try await ConnectFixture.run { f in
            // The app creates a session for its user.
            let created = try await f.api(
                .POST, "/connect/sessions",
                [
                    "end_user": ["id": "u-1", "email": "u1@example.com", "display_name": "Ursula"], "organization": ["id": "org-9", "display_name": "Acme"],
                    "tags": ["plan": "pro"], "allowed_integrations": ["fakehub"],
                ])
            #expect(created.status == 201, "\(created.body)")
            let token = try #require(created.json["data"]?["token"]?.stringValue)
            #expect(ConnectToken.looksLikeSessionToken(token))
            #expect(created.json["data"]?["connect_link"]?.stringValue == f.tributary + "/connect?session_token=" + token, "built from server.public_url")
            let expires = try #require(created.json["data"]?["expires_at"]?.stringValue.flatMap(Timestamp.init(iso8601:)))
            #expect(abs(expires.microseconds - Timestamp.now().microseconds - 1_800_000_000) < 60_000_000, "30 minutes")
            let described = try await f.fetch(.GET, f.tributary + "/connect/session", headers: ["Authorization": "Bearer \(token)"])
            #expect(described.json["data"]?["end_user"]?["id"] == "u-1" && described.json["data"]?["organization"]?["id"] == "org-9")
            #expect(described.json["data"]?["allowed_integrations"] == ["fakehub"] && described.json["data"]?["isReconnecting"] == false)

            // The Connect page: one allowed integration, so its page at once.
            let page = try await f.fetch(.GET, f.tributary + "/connect?session_token=" + token)
            #expect(page.status == 200 && page.body.contains("Continue to Fakehub"))
            #expect(page.headers["referrer-policy"] == "no-referrer" && page.headers["cache-control"] == "no-store")
            let continueHref = try #require(page.attribute("href", of: "id=\"oauth-continue\""))

            // Continue: a redirect to the provider with the flow's parameters, and a cookie binding the
            // authorization to this browser.
            let redirect = try await f.fetch(.GET, f.tributary + continueHref)
            #expect(redirect.status == 302)
            let setCookie = try #require(redirect.headers["set-cookie"])
            #expect(setCookie.contains("HttpOnly") && setCookie.contains("SameSite=Lax") && setCookie.contains("Path=/oauth/callback"))
            let browser = ["Cookie": String(setCookie.split(separator: ";")[0])]
            let location = try #require(redirect.location)
            #expect(location.hasPrefix(f.provider.site + "/oauth/authorize?"))
            let authorize = try await f.fetch(.GET, location)
            #expect(authorize.status == 200)
            let query = try #require(f.provider.state.withLock { $0.authorizeQueries.last })
            #expect(query["redirect_uri"] == f.tributary + "/oauth/callback")
            #expect(query["scope"] == "profile repo" && query["access_type"] == "offline" && query["code_challenge_method"] == "S256")
            #expect(query["state"]?.count == 64 && query["code_challenge"]?.count == 43)

            // A forged state is refused; nothing is exchanged.
            let forged = try await f.fetch(.GET, f.tributary + "/oauth/callback?code=code-x&state=" + ConnectToken.newState())
            #expect(forged.status == 400 && forged.body.contains("could not be matched"))
            #expect(f.provider.state.withLock { $0.codeExchanges } == 0)

            // The user allows: the callback exchanges the code with the PKCE verifier and saves the connection.
            let allow = try #require(authorize.attribute("href", of: "id=\"allow\""))
            let done = try await f.fetch(.GET, allow, headers: browser)
            #expect(done.status == 200 && done.body.contains("Connected"), "\(done.body)")
            let connectionId = try #require(done.attribute("data-connection-id", of: "id=\"outcome\""))
            #expect(done.attribute("data-event", of: "id=\"outcome\"") == "AUTHORIZATION_SUCEEDED")
            #expect(f.provider.state.withLock { ($0.codeExchanges, $0.refusedExchanges) } == (1, 0))

            // Replaying the callback does nothing more: its state was used.
            let replay = try await f.fetch(.GET, allow, headers: browser)
            #expect(replay.status == 400 && replay.body.contains("could not be matched"))
            #expect(f.provider.state.withLock { $0.codeExchanges } == 1)
            let spent = try await f.fetch(.GET, f.tributary + "/connect/session", headers: ["Authorization": "Bearer \(token)"])
            #expect(spent.status == 401 && spent.json["error"]?["code"] == "connect_session_used")
            #expect(try await f.fetch(.GET, f.tributary + "/connect?session_token=" + token).status == 401)

            // The connection: the session's end user and tags, the tokens (sealed at rest), its base variant.
            let connection = try await f.api(.GET, "/connections/\(connectionId)?provider_config_key=fakehub")
            #expect(connection.status == 200)
            let (access, refresh) = try #require(f.provider.state.withLock { state in state.accessToken.map { ($0, state.refreshToken ?? "") } })
            #expect(connection.json["credentials"]?["access_token"]?.stringValue == access)
            #expect(connection.json["end_user"]?["id"] == "u-1" && connection.json["end_user"]?["organization"]?["id"] == "org-9")
            #expect(connection.json["tags"]?["plan"] == "pro" && connection.json["tags"]?["end_user_id"] == "u-1")
            #expect(connection.json["metadata"] == ["login": "octo"], "post-connection-creation ran after the Connect page saved it")
            let file = try Data(contentsOf: URL(fileURLWithPath: f.databasePath)) + ((try? Data(contentsOf: URL(fileURLWithPath: f.databasePath + "-wal"))) ?? Data())
            #expect(file.range(of: Data(access.utf8)) == nil && file.range(of: Data(refresh.utf8)) == nil, "tokens are sealed at rest")
            #expect(file.range(of: Data(token.utf8)) == nil, "the session token is stored only as its hash")

            // The app is told: an auth webhook, signed.
            try await eventually("the auth webhook") { f.provider.webhookBodies.count == 1 }
            let (headers, bytes) = try #require(f.provider.state.withLock { $0.webhooks.first })
            #expect(headers["x-nango-hmac-sha256"] == WebhookSignature.sign(bytes, key: ConnectFixture.signing))
            let hook = try #require(f.provider.webhookBodies.first)
            #expect(hook["type"] == "auth" && hook["operation"] == "creation" && hook["success"] == true && hook["from"] == "nango")
            #expect(hook["connectionId"]?.stringValue == connectionId && hook["providerConfigKey"] == "fakehub" && hook["provider"] == "Fakehub")
            #expect(hook["authMode"] == "OAUTH2" && hook["environment"] == "dev")
            #expect(hook["endUser"]?["endUserId"] == "u-1" && hook["endUser"]?["organizationId"] == "org-9")

            // A sync runs with those tokens.
            let trigger = try await f.api(.POST, "/sync/trigger", ["syncs": ["profile"], "provider_config_key": "fakehub", "connection_id": .string(connectionId)])
            #expect(trigger.status == 200, "\(trigger.body)")
            let ref = VariantRef(connection: ConnectionRef(environment: "dev", providerConfigKey: "fakehub", connectionId: connectionId), syncName: "profile")
            try await eventually("the profile sync succeeded") { try await f.store.runs(of: ref, limit: 1).first?.status == .succeeded }
            #expect(f.provider.state.withLock { $0.apiAuthorizations } .contains("Bearer \(access)"))
            let records = try await f.fetch(
                .GET, f.tributary + "/records?model=Profile", headers: ["Authorization": "Bearer \(devKey)", "Connection-Id": connectionId, "Provider-Config-Key": "fakehub"])
            #expect(records.json["records"]?[0]?["login"] == "octo")

            // The provider revokes the refresh token and the access token stops working: the refresh
            // is refused, the run fails, and the app is told to ask its user to reconnect.
            f.provider.state.withLock {
                $0.refreshRevoked = true
                $0.accessToken = "revoked"
            }
            _ = try await f.api(.POST, "/sync/trigger", ["syncs": ["profile"], "provider_config_key": "fakehub", "connection_id": .string(connectionId)])
            try await eventually("the second run failed") { try await f.store.runs(of: ref, limit: 1).first?.status == .failed }
            try await eventually("the refresh failure webhook") { f.provider.webhookBodies.contains { $0["operation"] == "refresh" } }
            let failure = try #require(f.provider.webhookBodies.first { $0["operation"] == "refresh" })
            #expect(failure["type"] == "auth" && failure["success"] == false && failure["connectionId"]?.stringValue == connectionId)
            #expect(failure["error"]?["type"] == "refresh_token_external_error")
            #expect(failure["error"]?["description"]?.stringValue?.contains("needs new credentials") == true)
            #expect(!(String(decoding: try #require(f.provider.state.withLock { $0.webhooks.last?.body }), as: UTF8.self)).contains("SECRET"))

            // The same refused credentials again: the run fails again, the app is not told twice.
            let runsBefore = try await f.store.runs(of: ref, limit: 10).count
            _ = try await f.api(.POST, "/sync/trigger", ["syncs": ["profile"], "provider_config_key": "fakehub", "connection_id": .string(connectionId)])
            try await eventually("the third run failed") {
                let runs = try await f.store.runs(of: ref, limit: 10)
                return runs.count > runsBefore && runs[0].status == .failed
            }
            let queued = try await f.store.deliveries(DeliveryQuery(environment: "dev")).compactMap { try? JSONParser.parse($0.body).objectValue }
            #expect(queued.filter { $0["operation"] == "refresh" }.count == 1, "queued once, not once per refusal")
        }
    }

    @Test func apiKeysAreVerifiedAndExpiredReusedDeletedAndDeniedSessionsConnectNothing() async throws {
        try await ConnectFixture.run { f in
            // Without allowed_integrations: every connectable integration (not the one without auth).
            let (token, link) = try await f.session(["end_user": ["id": "u-2"]])
            let choice = try await f.fetch(.GET, link)
            #expect(choice.status == 200 && choice.body.contains(">Fakehub<") && choice.body.contains(">Keyshop<") && !choice.body.contains("plain"))
            let formHref = try #require(choice.attribute("href", of: ">Keyshop<"))
            let form = try await f.fetch(.GET, f.tributary + formHref)
            #expect(form.status == 200 && form.body.contains("name=\"api_key\""))
            let action = try #require(form.attribute("action", of: "<form"))

            // A key the provider refuses: shown in words, nothing saved.
            let wrong = try await f.fetch(.POST, f.tributary + action, form: [("session_token", token), ("api_key", "key-WRONG")])
            #expect(wrong.status == 400 && wrong.body.contains("did not accept these credentials"))
            #expect(try await f.api(.GET, "/connections").json["connections"]?.arrayValue?.isEmpty == true)

            // The right key: saved, with its base variant paused (auto_start: false).
            let right = try await f.fetch(.POST, f.tributary + action, form: [("session_token", token), ("api_key", FakeOAuthProvider.goodKey)])
            #expect(right.status == 200 && right.body.contains("Connected"))
            let connectionId = try #require(right.attribute("data-connection-id", of: "id=\"outcome\""))
            let saved = try await f.api(.GET, "/connections/\(connectionId)?provider_config_key=keyshop")
            #expect(saved.json["credentials"]?["apiKey"]?.stringValue == FakeOAuthProvider.goodKey && saved.json["end_user"]?["id"] == "u-2")
            let status = try await f.api(.GET, "/sync/status?syncs=*&provider_config_key=keyshop&connection_id=\(connectionId)")
            #expect(status.json["syncs"]?[0]?["status"] == "PAUSED", "\(status.body)")

            // The same session again: spent.
            let again = try await f.fetch(.POST, f.tributary + action, form: [("session_token", token), ("api_key", FakeOAuthProvider.goodKey)])
            #expect(again.status == 401 && again.body.contains("already used"))
            #expect(try await f.api(.GET, "/connections").json["connections"]?.arrayValue?.count == 1)

            // Reconnect: the same connection gets a new key; its metadata stays; the webhook says override.
            _ = try await f.api(.POST, "/connections/metadata", ["connection_id": .string(connectionId), "provider_config_key": "keyshop", "metadata": ["kept": true]])
            let reconnect = try await f.api(.POST, "/connect/sessions/reconnect", ["connection_id": .string(connectionId), "integration_id": "keyshop"])
            #expect(reconnect.status == 201, "\(reconnect.body)")
            let reconnectToken = try #require(reconnect.json["data"]?["token"]?.stringValue)
            let reconnectPage = try await f.fetch(.GET, f.tributary + "/connect?session_token=" + reconnectToken)
            #expect(reconnectPage.body.contains("Reconnect Keyshop"))
            let replaced = try await f.fetch(.POST, f.tributary + action, form: [("session_token", reconnectToken), ("api_key", FakeOAuthProvider.goodKey + " ")])
            #expect(replaced.status == 200 && replaced.attribute("data-connection-id", of: "id=\"outcome\"") == connectionId)
            let after = try await f.api(.GET, "/connections/\(connectionId)?provider_config_key=keyshop")
            #expect(after.json["metadata"] == ["kept": true] && after.json["end_user"]?["id"] == "u-2")
            try await eventually("creation and override webhooks") { f.provider.webhookBodies.count == 2 }
            #expect(f.provider.webhookBodies.map { $0["operation"] } == ["creation", "override"])
            #expect(f.provider.webhookBodies.allSatisfy { $0["authMode"] == "API_KEY" })

            // An expired session.
            let expiredToken = ConnectToken.newSessionToken()
            try await f.store.createConnectSession(
                ConnectSession(
                    tokenHash: ConnectToken.hash(expiredToken), environment: "dev", endUser: nil, tags: nil, allowedIntegrations: nil, integrationsConfigDefaults: [:],
                    reconnect: nil, createdAt: Timestamp(microseconds: Timestamp.now().microseconds - 3_600_000_000),
                    expiresAt: Timestamp(microseconds: Timestamp.now().microseconds - 1_800_000_000)))
            let expired = try await f.fetch(.GET, f.tributary + "/connect?session_token=" + expiredToken)
            #expect(expired.status == 401 && expired.body.contains("expired"))
            let expiredPost = try await f.fetch(.POST, f.tributary + action, form: [("session_token", expiredToken), ("api_key", FakeOAuthProvider.goodKey)])
            #expect(expiredPost.status == 401)
            #expect(try await f.fetch(.GET, f.tributary + "/connect?session_token=nango_connect_session_nothex").status == 401)

            // A deleted session.
            let (deletedToken, deletedLink) = try await f.session(["end_user": ["id": "u-3"]])
            #expect(try await f.fetch(.DELETE, f.tributary + "/connect/session", headers: ["Authorization": "Bearer \(deletedToken)"]).status == 204)
            #expect(try await f.fetch(.GET, deletedLink).status == 401)

            // Denied consent: nothing connected, said in words; the opener is told it failed.
            let (deniedToken, _) = try await f.session(["end_user": ["id": "u-4"], "allowed_integrations": ["fakehub"]])
            let redirect = try await f.fetch(.GET, f.tributary + "/connect/integrations/fakehub/authorize?session_token=" + deniedToken)
            let cookie = ["Cookie": String(try #require(redirect.headers["set-cookie"]).split(separator: ";")[0])]
            let authorize = try await f.fetch(.GET, try #require(redirect.location))
            let denied = try await f.fetch(.GET, try #require(authorize.attribute("href", of: "id=\"deny\"")), headers: cookie)
            #expect(denied.status == 400 && denied.body.contains("You declined"))
            #expect(denied.attribute("data-event", of: "id=\"outcome\"") == "AUTHORIZATION_FAILED")
            #expect(denied.attribute("data-error-type", of: "id=\"outcome\"") == "access_denied")
            #expect(try await f.api(.GET, "/connections").json["connections"]?.arrayValue?.count == 1)

            // A consent link passed to another browser: its callback (without the starting browser's
            // cookie) connects nothing and exchanges nothing; the starting browser still can.
            let (passedToken, _) = try await f.session(["end_user": ["id": "u-7"], "allowed_integrations": ["fakehub"]])
            let started = try await f.fetch(.GET, f.tributary + "/connect/integrations/fakehub/authorize?session_token=" + passedToken)
            let consent = try await f.fetch(.GET, try #require(started.location))
            let exchanges = f.provider.state.withLock { $0.codeExchanges }
            let elsewhere = try await f.fetch(.GET, try #require(consent.attribute("href", of: "id=\"allow\"")), headers: ["Cookie": "tributary_connect_oauth=guess"])
            #expect(elsewhere.status == 400 && elsewhere.body.contains("started in another browser"))
            #expect(f.provider.state.withLock { $0.codeExchanges } == exchanges)
            let original = ["Cookie": String(try #require(started.headers["set-cookie"]).split(separator: ";")[0])]
            #expect(try await f.fetch(.GET, try #require(consent.attribute("href", of: "id=\"allow\"")), headers: original).body.contains("Connected"))
            #expect(try await f.api(.GET, "/connections").json["connections"]?.arrayValue?.count == 2)

            // The authorize step reached from elsewhere (a browser says so) shows the Connect page first.
            let (linkedToken, _) = try await f.session(["end_user": ["id": "u-8"], "allowed_integrations": ["fakehub"]])
            let fromElsewhere = try await f.fetch(
                .GET, f.tributary + "/connect/integrations/fakehub/authorize?session_token=" + linkedToken, headers: ["Sec-Fetch-Site": "cross-site"])
            #expect(fromElsewhere.status == 303 && fromElsewhere.location == "/connect/integrations/fakehub?session_token=" + linkedToken)
            #expect(fromElsewhere.headers["set-cookie"] == nil)
        }
    }

    @Test func sessionRequestsAreCheckedAndSessionTokensAreTheirOwnCredential() async throws {
        try await ConnectFixture.run { f in
            let cases: [(JSONValue, Int, String)] = [
                (["allowed_integrations": ["plain"]], 400, "integration_not_connectable"),
                (["allowed_integrations": ["nope"]], 404, "unknown_provider_config"),
                (["allowed_integrations": "keyshop"], 400, "invalid_body"),
                (["end_user": ["email": "x@example.com"]], 400, "invalid_body"),
                (["organization": ["id": "o"]], 400, "invalid_body"),
                (["integrations_config_defaults": ["keyshop": ["connection_config": "x"]]], 400, "invalid_body"),
                (["surprise": true], 400, "invalid_body"),
            ]
            for (body, status, code) in cases {
                let answer = try await f.api(.POST, "/connect/sessions", body)
                #expect(answer.status == status && answer.json["error"]?["code"]?.stringValue == code, "\(JSONWriter.string(body)): \(answer.body)")
            }
            #expect(try await f.api(.POST, "/connect/sessions", ["end_user": ["id": "u"]], key: "wrong-key-000000000000").status == 401)
            let missing = try await f.api(.POST, "/connect/sessions/reconnect", ["connection_id": "ghost", "integration_id": "keyshop"])
            #expect(missing.status == 404 && missing.json["error"]?["code"] == "unknown_connection")

            // Session endpoints take the session token, not a secret key, and the reverse.
            let (token, _) = try await f.session(["end_user": ["id": "u-5"], "integrations_config_defaults": ["keyshop": ["connection_config": ["region": "eu"]]]])
            #expect(try await f.fetch(.GET, f.tributary + "/connect/session").json["error"]?["code"] == "missing_auth_header")
            #expect(try await f.api(.GET, "/connect/session").json["error"]?["code"] == "malformed_auth_header")
            #expect(try await f.fetch(.GET, f.tributary + "/connections", headers: ["Authorization": "Bearer \(token)"]).status == 401)
            let unknown = try await f.fetch(.GET, f.tributary + "/connect/session", headers: ["Authorization": "Bearer \(ConnectToken.newSessionToken())"])
            #expect(unknown.status == 401 && unknown.json["error"]?["code"] == "unknown_connect_session")

            // The config defaults reach the connection.
            let form = try await f.fetch(.GET, f.tributary + "/connect/integrations/keyshop?session_token=" + token)
            let action = try #require(form.attribute("action", of: "<form"))
            let done = try await f.fetch(.POST, f.tributary + action, form: [("session_token", token), ("api_key", FakeOAuthProvider.goodKey)])
            let id = try #require(done.attribute("data-connection-id", of: "id=\"outcome\""))
            #expect(try await f.api(.GET, "/connections/\(id)?provider_config_key=keyshop").json["connection_config"] == ["region": "eu"])
            // Another environment's key sees nothing of it.
            #expect(try await f.api(.GET, "/connections/\(id)?provider_config_key=keyshop", key: prodKey).status == 404)
        }
    }

    @Test func onEventFunctionsValidateBeforeSavingRunAroundTheConnectionsLifeAndOutliveIt() async throws {
        try await ConnectFixture.run { f in
            // validate-connection refuses an import whose token the provider does not take: nothing saved.
            let refused = try await f.api(
                .POST, "/connections", ["provider_config_key": "fakehub", "connection_id": "c-bad", "credentials": ["type": "OAUTH2", "access_token": "at-unknown"]])
            #expect(refused.status == 400 && refused.json["error"]?["code"] == "connection_validation_failed", "\(refused.body)")
            #expect(refused.json["error"]?["message"]?.stringValue?.contains("profile cannot be read (HTTP 401)") == true)
            #expect(try await f.api(.GET, "/connections/c-bad?provider_config_key=fakehub").status == 404)

            // With a token it takes: validated with that token before saving, then created, and the
            // post-connection-creation function writes the login into the metadata.
            let (access, _) = f.provider.issue()
            let imported = try await f.api(
                .POST, "/connections", ["provider_config_key": "fakehub", "connection_id": "c-good", "credentials": ["type": "OAUTH2", "access_token": .string(access)]])
            #expect(imported.status == 201, "\(imported.body)")
            #expect(try await f.api(.GET, "/connections/c-good?provider_config_key=fakehub").json["metadata"] == ["login": "octo"])
            // The dashboard shows its on-event runs with their log lines.
            let login = try await f.fetch(.POST, f.tributary + "/dashboard/login", form: [("secret_key", devKey)])
            let cookie = try #require(login.headers["set-cookie"]?.split(separator: ";").first.map(String.init))
            let dashboard = try await f.fetch(.GET, f.tributary + "/dashboard/connection?integration=fakehub&connection=c-good", headers: ["Cookie": cookie])
            #expect(dashboard.status == 200 && dashboard.body.contains("On-event functions") && dashboard.body.contains("profile of octo readable"))
            #expect(dashboard.body.contains("remember-login") && dashboard.body.contains("post-connection-creation"))

            // Deleting it runs pre-connection-deletion first, with the credentials still working.
            #expect(try await f.api(.DELETE, "/connections/c-good?provider_config_key=fakehub").status == 200)
            #expect(f.provider.state.withLock { $0.goodbyes } == ["Bearer \(access)"])
            #expect(try await f.api(.GET, "/connections/c-good?provider_config_key=fakehub").status == 404)

            // Every run is in the history with its log lines, and outlives the connection.
            let history = try await f.api(.GET, "/connection-events?provider_config_key=fakehub")
            let events = try #require(history.json["events"]?.arrayValue)
            #expect(events.map { $0["event"]?.stringValue ?? "" } == ["pre-connection-deletion", "post-connection-creation", "validate-connection", "validate-connection"])
            #expect(events.map { $0["success"] } == [true, true, true, false])
            #expect(events[3]["connection_id"] == "c-bad" && events[3]["error"]?.stringValue?.contains("HTTP 401") == true)
            #expect(events[2]["logs"]?[0]?["message"] == "profile of octo readable")
            #expect(events[0]["logs"]?[0]?["message"] == "said goodbye" && events[0]["function"] == "say-goodbye")
            let one = try await f.api(.GET, "/connection-events?provider_config_key=fakehub&connection_id=c-bad&limit=5")
            #expect(one.json["events"]?.arrayValue?.count == 1)
            #expect(try await f.api(.GET, "/connection-events", key: prodKey).json["events"]?.arrayValue?.isEmpty == true, "per environment")
            #expect(try await f.api(.GET, "/connection-events?limit=0").status == 400)

            // On the Connect page, a refusal is shown on the form, and nothing is saved or spent.
            let (token, _) = try await f.session(["end_user": ["id": "u-6"], "allowed_integrations": ["basicshop"]])
            let page = try await f.fetch(.GET, f.tributary + "/connect?session_token=" + token)
            #expect(page.body.contains("name=\"username\""))
            let action = try #require(page.attribute("action", of: "<form"))
            let denied = try await f.fetch(.POST, f.tributary + action, form: [("session_token", token), ("username", "ada"), ("password", "pw")])
            #expect(denied.status == 400 && denied.body.contains("Basicshop does not know this account."), "\(denied.body)")
            #expect(try await f.fetch(.GET, f.tributary + "/connect/session", headers: ["Authorization": "Bearer \(token)"]).status == 200, "not spent")
            let blocked = try await f.api(
                .POST, "/connections",
                ["provider_config_key": "basicshop", "connection_id": "b-1", "credentials": ["type": "BASIC", "username": "a", "password": "b"], "metadata": ["blocked": true]])
            #expect(blocked.status == 400 && blocked.json["error"]?["message"]?.stringValue?.hasSuffix("This account is blocked.") == true)
            #expect(try await f.api(.GET, "/connections?integrationId=basicshop").json["connections"]?.arrayValue?.isEmpty == true)
        }
    }
}
