import Foundation
import HTTPTypes
import Testing
import TributaryCore
@testable import TributaryServer
import TributaryStore
import TributaryTestSupport

/// The dashboard's pages and actions, as HTML, through the real router over a real SQLite file.
@Suite("Dashboard pages")
struct DashboardTests {
    static let acme = ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "acme")
    static let acmePage = "/dashboard/connection?integration=shop&connection=acme"

    func variant(_ name: String, sync: String = "items") -> VariantRef { VariantRef(connection: Self.acme, syncName: sync, variant: name) }

    /// Runs `test` with a logged-in dashboard client and an API client on the same application.
    func withDashboard(_ f: ServerFixture, _ test: @escaping @Sendable (DashboardClient, APIClient) async throws -> Void) async throws {
        try await f.withRouter { api in
            let dashboard = DashboardClient(api.client)
            let login = try await dashboard.login(devKey)
            #expect(login.status == .seeOther)
            try await test(dashboard, api)
        }
    }

    // MARK: Login and sessions

    @Test func everyPageNeedsALogin() async throws {
        let f = try await ServerFixture()
        try await f.withRouter { api in
            let browser = DashboardClient(api.client)
            let root = try await browser.get("/")
            #expect(root.status == .seeOther)
            #expect(root.location == "/dashboard")
            for page in ["/dashboard", Self.acmePage, "/dashboard/runs/1", "/dashboard/records?integration=shop&connection=acme&model=Item", "/dashboard/nope"] {
                let response = try await browser.get(page)
                #expect(response.status == .seeOther, "\(page)")
                #expect(response.location == "/dashboard/login", "\(page)")
            }
            // A forged or tampered cookie is no session.
            browser.sessionCookie = "ZGV2.99999999999.00000000000000000000000000000000.AAAA"
            #expect(try await browser.get("/dashboard").location == "/dashboard/login")
            // Actions without a session change nothing.
            try await api.connect("acme")
            let post = try await browser.post("/dashboard/connection/actions", ["integration": "shop", "connection": "acme", "sync": "items", "variant": "base", "action": "pause"])
            #expect(post.location == "/dashboard/login")
            #expect(try await f.store.variantState(variant("base"))?.paused == false)
            // The API keeps answering JSON.
            let api404 = try await api.send(.get, "/nope")
            #expect(api404.errorCode == "not_found")
        }
    }

    @Test func loginWithTheSecretKeySetsAStrictHttpOnlyCookie() async throws {
        let f = try await ServerFixture()
        try await f.withRouter { api in
            let browser = DashboardClient(api.client)
            let form = try await browser.get("/dashboard/login")
            #expect(form.status == .ok)
            #expect(form.html.contains(#"<input id="secret_key" name="secret_key" type="password""#))
            #expect(form.headers[.contentSecurityPolicy]?.contains("script-src 'self'") == true)

            let wrong = try await browser.login("not-a-key")
            #expect(wrong.status == .unauthorized)
            #expect(wrong.alert?.contains("That secret key is not valid for any environment.") == true)
            #expect(wrong.setCookies.isEmpty)
            #expect(try await browser.login("").status == .unauthorized)

            let ok = try await browser.login(devKey)
            #expect(ok.status == .seeOther)
            #expect(ok.location == "/dashboard")
            let cookie = try #require(ok.setCookies.first)
            #expect(cookie.contains("HttpOnly"))
            #expect(cookie.contains("SameSite=Strict"))
            #expect(cookie.contains("Path=/dashboard"))
            #expect(cookie.contains("Max-Age=43200"))
            #expect(!cookie.contains("Secure"), "plain HTTP: a Secure cookie would never come back")
            #expect(!cookie.contains(devKey), "the cookie never carries the key")
            let home = try await browser.get("/dashboard")
            #expect(home.status == .ok)
            #expect(home.html.contains(#"<span class="visually-hidden">Environment </span>dev</span>"#))
            #expect(try await browser.get("/dashboard/login").location == "/dashboard", "a logged-in user skips the login page")

            // Behind a TLS-terminating proxy the cookie is Secure.
            let proxied = try await DashboardClient(api.client).login(devKey, headers: [HTTPField.Name("X-Forwarded-Proto")!: "https"])
            #expect(proxied.setCookies.first?.contains("Secure") == true)

            // Logging out needs the form token, then forgets the cookie.
            let csrf = try #require(home.csrf)
            #expect(try await browser.post("/dashboard/logout", [:]).status == .forbidden)
            let out = try await browser.post("/dashboard/logout", ["csrf": csrf])
            #expect(out.location == "/dashboard/login")
            #expect(out.setCookies.first?.contains("Max-Age=0") == true)
        }
    }

    @Test func sessionsAreSignedPerEnvironmentAndExpire() throws {
        let config = try ConfigLoader.parse(yaml: ServerFixture.configYAML, file: "test.yaml", environment: [:])
        let now = Timestamp.now()
        let session = DashboardSession.issue(environment: "dev", secret: devKey, now: now)
        #expect(DashboardSession.verify(session.cookieValue, environments: config.environments, now: now) == session)
        // Another session has another CSRF token.
        #expect(DashboardSession.issue(environment: "dev", secret: devKey, now: now).csrfToken != session.csrfToken)
        // Expired.
        let later = Timestamp(secondsSince1970: now.secondsSince1970 + Double(DashboardSession.lifetimeSeconds) + 1)
        #expect(DashboardSession.verify(session.cookieValue, environments: config.environments, now: later) == nil)
        // Claiming another environment with dev's signature.
        var parts = session.cookieValue.split(separator: ".").map(String.init)
        parts[0] = Data("prod".utf8).base64EncodedString()
        #expect(DashboardSession.verify(parts.joined(separator: "."), environments: config.environments, now: now) == nil)
        // Signed with a key that is no longer configured.
        let rotated = DashboardSession.issue(environment: "dev", secret: "old-key-that-was-rotated-out", now: now)
        #expect(DashboardSession.verify(rotated.cookieValue, environments: config.environments, now: now) == nil)
        #expect(session.accepts(csrfToken: session.csrfToken))
        #expect(!session.accepts(csrfToken: rotated.csrfToken))
        #expect(!session.accepts(csrfToken: nil))
    }

    // MARK: Pages

    @Test func connectionsPageListsConnectionsPerIntegrationAndSearches() async throws {
        let f = try await ServerFixture()
        try await withDashboard(f) { browser, api in
            try await api.connect("acme")
            try await api.connect("globex")
            let keyed = try await api.send(
                .post, "/connections",
                body: ["provider_config_key": "keyed", "connection_id": "acme-keyed", "credentials": ["type": "API_KEY", "api_key": "sk_live_very_secret"]])
            #expect(keyed.status == .created)
            let page = try await browser.get("/dashboard")
            #expect(page.status == .ok)
            #expect(page.html.contains(#"<h2 id="integration-shop">shop</h2>"#))
            #expect(page.html.contains(#"<h2 id="integration-keyed">keyed</h2>"#))
            #expect(!page.html.contains("prod-only"), "another environment's integration")
            #expect(page.html.contains(#"<a href="/dashboard/connection?integration=shop&amp;connection=acme">acme</a>"#))
            #expect(page.html.contains(#"<a href="/dashboard/connection?integration=shop&amp;connection=globex">globex</a>"#))
            #expect(page.html.contains(#"<a href="/dashboard/connection?integration=keyed&amp;connection=acme-keyed">acme-keyed</a>"#))
            #expect(page.html.contains(#"<td data-label="Credentials">API_KEY</td>"#))
            #expect(!page.html.contains("sk_live_very_secret"), "credentials never reach a page")

            let search = try await browser.get("/dashboard?q=acm")
            #expect(search.html.contains(">acme</a>"))
            #expect(search.html.contains(">acme-keyed</a>"))
            #expect(!search.html.contains(">globex</a>"))
            #expect(search.html.contains(#"value="acm""#))

            let none = try await browser.get("/dashboard?q=%3Cb%3Ezz")
            #expect(none.html.contains("No connection id contains “&lt;b&gt;zz”."), "the search text is escaped")
            #expect(!none.html.contains("<b>zz"))

            // The prod key sees prod's integrations only.
            let prod = DashboardClient(api.client)
            try await prod.login(prodKey)
            let prodPage = try await prod.get("/dashboard")
            #expect(prodPage.html.contains(#"<h2 id="integration-prod-only">prod-only</h2>"#))
            #expect(!prodPage.html.contains(">acme</a>"))
            #expect(try await prod.get(Self.acmePage).status == .notFound, "dev's connection is not prod's")
        }
    }

    @Test func connectionPageShowsEveryVariantOfEverySync() async throws {
        let f = try await ServerFixture()
        try await withDashboard(f) { browser, api in
            try await api.connect("acme")
            for name in ["eu", "us"] {
                _ = try await api.send(.post, "/sync/items/variant/\(name)", body: ["provider_config_key": "shop", "connection_id": "acme"])
            }
            _ = try await api.send(
                .post, "/connections/metadata",
                body: ["connection_id": "acme", "provider_config_key": "shop", "metadata": ["eu.count": 7, "eu.label": "<script>alert(1)</script>"]])
            _ = try await api.send(
                .put, "/sync/update-connection-frequency",
                body: ["provider_config_key": "shop", "connection_id": "acme", "sync_name": "items", "sync_variant": "us", "frequency": "every 2 hours"])
            try await f.store.saveCheckpoint(["page": 4], for: variant("us"))
            _ = try await api.send(.post, "/sync/trigger", body: ["provider_config_key": "shop", "connection_id": "acme", "syncs": ["items::eu"]])
            let run = try await f.waitForRuns(variant("eu"))
            _ = try await api.send(
                .patch, "/connections/acme?provider_config_key=shop",
                body: ["end_user": ["id": "user-7", "display_name": "Ada <L>", "organization": ["id": "org-1", "display_name": "Analytical"]], "tags": ["plan": "pro"]])

            let page = try await browser.get(Self.acmePage)
            #expect(page.status == .ok)
            #expect(page.html.contains("End user <strong>user-7</strong> (Ada &lt;L&gt;)"), "the end user, escaped")
            #expect(page.html.contains("organization <strong>Analytical</strong>"))
            #expect(page.html.contains("<li><code>plan</code>: pro</li>"))
            // One section per sync, one row per variant.
            #expect(page.html.contains(#"<h2 id="sync-items">items</h2>"#))
            #expect(page.html.contains(#"<h2 id="sync-slow">slow</h2>"#))
            for id in ["variant-items--base", "variant-items--eu", "variant-items--us", "variant-slow--base"] {
                #expect(page.row(id) != nil, "\(id)")
            }
            #expect(page.count("<tr id=\"variant-") == 4)

            let eu = try #require(page.row("variant-items--eu"))
            #expect(page.status(ofRow: "variant-items--eu") == "success")
            #expect(eu.contains(">SUCCESS</span>"))
            #expect(eu.contains(#"<a href="/dashboard/runs/\#(run.id)">"#), "last run links to its page")
            #expect(eu.contains("<span title=\"added\">+7</span> <span title=\"updated\">~0</span> <span title=\"deleted\">−0</span>"))
            #expect(eu.contains(">Item&nbsp;7</a>"))
            #expect(eu.contains("/dashboard/records?integration=shop&amp;connection=acme&amp;model=Item&amp;variant=eu"))
            #expect(eu.contains(#"<td data-label="Frequency">every 1h</td>"#))
            #expect(eu.contains(#"<td data-label="Next run"><time datetime=""#))
            #expect(eu.contains(#"value="pause">Pause"#))
            #expect(eu.contains("action=delete"), "store variants can be deleted")

            let base = try #require(page.row("variant-items--base"))
            #expect(page.status(ofRow: "variant-items--base") == "not-run")
            #expect(base.contains("never"))
            #expect(!base.contains("action=delete"), "base cannot be deleted")

            let us = try #require(page.row("variant-items--us"))
            #expect(us.contains("every 2h <small>(override)</small>"))
            #expect(us.contains(#"<code class="checkpoint">{&quot;page&quot;:4}</code>"#))

            // Metadata, escaped.
            #expect(page.html.contains("&quot;eu.label&quot;: &quot;&lt;script&gt;alert(1)&lt;/script&gt;&quot;"))
            #expect(!page.html.contains("<script>alert(1)"))
            // Each sync's rows refresh from their fragment.
            #expect(page.html.contains(#"<tbody data-refresh="/dashboard/connection/rows?integration=shop&amp;connection=acme&amp;sync=items">"#))

            // Unknown connection: an HTML 404.
            let missing = try await browser.get("/dashboard/connection?integration=shop&connection=nobody")
            #expect(missing.status == .notFound)
            #expect(missing.headers[.contentType]?.hasPrefix("text/html") == true)
            #expect(missing.alert?.contains("Connection &#39;nobody&#39; of integration &#39;shop&#39; does not exist.") == true)
            #expect(try await browser.get("/dashboard/connection?integration=shop").status == .badRequest)
        }
    }

    @Test func rowsFragmentFollowsARunFromRunningToSuccess() async throws {
        let f = try await ServerFixture()
        try await withDashboard(f) { browser, api in
            try await api.connect("acme")
            let rowsURI = "/dashboard/connection/rows?integration=shop&connection=acme&sync=slow"
            let before = try await browser.get(rowsURI)
            #expect(before.status == .ok)
            #expect(before.html.trimmingCharacters(in: .whitespacesAndNewlines).hasPrefix("<tr id=\"variant-slow--base\""))
            #expect(!before.html.contains("<html"), "a fragment, not a page")
            #expect(before.status(ofRow: "variant-slow--base") == "not-run")

            let page = try await browser.get(Self.acmePage)
            let trigger = try await browser.post(
                "/dashboard/connection/actions",
                ["csrf": try #require(page.csrf), "integration": "shop", "connection": "acme", "sync": "slow", "variant": "base", "action": "trigger"])
            #expect(trigger.status == .seeOther)
            try await eventually("the slow run started") { f.gate.entries == 1 }
            let running = try await browser.get(rowsURI)
            #expect(running.status(ofRow: "variant-slow--base") == "running")

            // The running run's page refreshes its body until the run ends.
            let runId = try #require(try await f.store.activeRun(of: variant("base", sync: "slow"))?.id)
            #expect(running.row("variant-slow--base")?.contains(#"<a href="/dashboard/runs/\#(runId)" title="Open the active run">"#) == true)
            let runPage = try await browser.get("/dashboard/runs/\(runId)")
            #expect(runPage.html.contains(#"<div id="run-body" data-refresh="/dashboard/runs/\#(runId)/body">"#))
            let runningBody = try await browser.get("/dashboard/runs/\(runId)/body")
            #expect(runningBody.html.contains(#"Status <span class="status status-running">running</span>"#))
            #expect(runningBody.html.contains("No log lines yet."))
            #expect(!runningBody.html.contains("data-final"))

            f.gate.release()
            _ = try await f.waitForRuns(variant("base", sync: "slow"))
            let done = try await browser.get(rowsURI)
            #expect(done.status(ofRow: "variant-slow--base") == "success")
            #expect(done.row("variant-slow--base")?.contains("+1") == true)
            let finishedBody = try await browser.get("/dashboard/runs/\(runId)/body")
            #expect(finishedBody.html.contains(#"Status <span class="status status-succeeded">succeeded</span><span data-final hidden></span>"#))
            #expect(finishedBody.html.contains(#"<td data-label="Added">1</td>"#))
        }
    }

    @Test func actionsNeedTheSessionsFormToken() async throws {
        let f = try await ServerFixture()
        try await withDashboard(f) { browser, api in
            try await api.connect("acme")
            let fields: [String: String] = ["integration": "shop", "connection": "acme", "sync": "items", "variant": "base", "action": "pause"]
            let missing = try await browser.post("/dashboard/connection/actions", fields)
            #expect(missing.status == .forbidden)
            #expect(missing.alert?.contains("security token") == true)
            // Another session's token.
            let other = DashboardClient(api.client)
            try await other.login(devKey)
            let otherToken = try #require(try await other.get(Self.acmePage).csrf)
            let forged = try await browser.post(
                "/dashboard/connection/actions",
                ["csrf": otherToken, "integration": "shop", "connection": "acme", "sync": "items", "variant": "base", "action": "pause"])
            #expect(forged.status == .forbidden)
            let created = try await browser.post(
                "/dashboard/connection/variants", ["csrf": "nope", "integration": "shop", "connection": "acme", "sync": "items", "variant": "x"])
            #expect(created.status == .forbidden)
            #expect(try await f.store.variantState(variant("base"))?.paused == false, "nothing changed")
            #expect(try await f.store.variantState(variant("x")) == nil)
        }
    }

    @Test func everyVariantActionWorksFromItsRow() async throws {
        let f = try await ServerFixture()
        try await withDashboard(f) { browser, api in
            try await api.connect("acme")
            _ = try await api.send(.post, "/connections/metadata", body: ["connection_id": "acme", "provider_config_key": "shop", "metadata": ["eu.count": 5]])
            let csrf = try #require(try await browser.get(Self.acmePage).csrf)
            func act(_ action: String, _ variant: String, extra: [String: String] = [:]) async throws -> Page {
                let fields = ["csrf": csrf, "integration": "shop", "connection": "acme", "sync": "items", "variant": variant, "action": action]
                return try await browser.post("/dashboard/connection/actions", fields.merging(extra) { $1 })
            }

            // Create.
            let create = try await browser.post(
                "/dashboard/connection/variants", ["csrf": csrf, "integration": "shop", "connection": "acme", "sync": "items", "variant": "eu"])
            #expect(create.status == .seeOther)
            let afterCreate = try await browser.follow(create)
            #expect(afterCreate.html.contains(#"<p class="notice" role="status">Variant items › eu was created.</p>"#))
            #expect(afterCreate.row("variant-items--eu") != nil)
            #expect(try await f.store.variantState(variant("eu")) != nil)

            // Trigger.
            let trigger = try await act("trigger", "eu")
            #expect(trigger.status == .seeOther)
            #expect(try await browser.follow(trigger).html.contains("A run of items › eu is queued."))
            #expect(try await f.waitForRuns(variant("eu")).status == .succeeded)
            #expect(try await f.store.recordCounts(of: variant("eu"))["Item"] == 5)

            // Pause, then start.
            let pause = try await browser.follow(try await act("pause", "eu"))
            #expect(try await f.store.variantState(variant("eu"))?.paused == true)
            #expect(pause.status(ofRow: "variant-items--eu") == "paused")
            #expect(pause.row("variant-items--eu")?.contains(#"value="start">Start"#) == true)
            let start = try await browser.follow(try await act("start", "eu"))
            #expect(try await f.store.variantState(variant("eu"))?.paused == false)
            #expect(start.row("variant-items--eu")?.contains(#"value="pause">Pause"#) == true)

            // Reset: asks first; without the confirmation nothing happens.
            let confirm = try await browser.get("/dashboard/connection/confirm?integration=shop&connection=acme&sync=items&variant=eu&action=reset")
            #expect(confirm.status == .ok)
            #expect(confirm.html.contains("<h1>Reset items › eu?</h1>"))
            #expect(confirm.html.contains(#"name="empty_cache" value="yes""#))
            #expect(confirm.html.contains(#"<input type="hidden" name="confirm" value="yes">"#))
            let unconfirmed = try await act("reset", "eu")
            #expect(unconfirmed.status == .badRequest)
            #expect(unconfirmed.alert?.contains("A reset must be confirmed") == true)
            #expect(try await f.store.variantState(variant("eu"))?.lastSyncDate != nil, "not reset")
            let runsBefore = try await f.store.runs(of: variant("eu"), limit: 10).count
            _ = try await f.store.saveRecords(
                [try PreparedRecord(["id": "stale"])], model: "Item", of: variant("eu"))
            let reset = try await act("reset", "eu", extra: ["confirm": "yes", "empty_cache": "yes"])
            #expect(reset.status == .seeOther)
            let afterReset = try await f.waitForRuns(variant("eu"), count: runsBefore + 1)
            #expect(afterReset.kind == .initial, "a reset run starts from scratch")
            #expect(try await f.store.recordCounts(of: variant("eu"))["Item"] == 5)
            let feed = try await f.store.changes(try ChangeQuery(dataset: DatasetRef(connection: Self.acme, model: "Item", variant: "eu"), limit: 100))
            #expect(!feed.records.contains { $0.id == "stale" }, "the emptied cache forgot the record (not even a deletion is left)")

            // Delete: base refuses; a store variant goes, once confirmed.
            let deleteBase = try await browser.get("/dashboard/connection/confirm?integration=shop&connection=acme&sync=items&variant=base&action=delete")
            #expect(deleteBase.status == .badRequest)
            #expect(try await act("delete", "eu").status == .badRequest)
            let delete = try await act("delete", "eu", extra: ["confirm": "yes"])
            #expect(delete.status == .seeOther)
            let afterDelete = try await browser.follow(delete)
            #expect(afterDelete.html.contains("Variant items › eu was deleted."))
            #expect(afterDelete.row("variant-items--eu") == nil)
            #expect(try await f.store.variantState(variant("eu")) == nil)
        }
    }

    @Test func failedActionsShowTheirErrorAndChangeNothing() async throws {
        let f = try await ServerFixture()
        try await withDashboard(f) { browser, api in
            try await api.connect("acme")
            let csrf = try #require(try await browser.get(Self.acmePage).csrf)
            func create(_ name: String) async throws -> Page {
                try await browser.post(
                    "/dashboard/connection/variants", ["csrf": csrf, "integration": "shop", "connection": "acme", "sync": "items", "variant": name])
            }
            let base = try await create("Base")
            #expect(base.status == .badRequest)
            #expect(base.alert?.contains("Variant name \"base\" is protected.") == true || base.alert?.contains("Variant name &quot;base&quot; is protected.") == true)
            #expect(base.html.contains(#"<h2 id="sync-items">items</h2>"#), "the connection page is shown again with the error")
            let invalid = try await create("a b")
            #expect(invalid.status == .badRequest)
            #expect(invalid.alert?.contains("is invalid") == true)
            #expect(try await create("one").status == .seeOther)
            let duplicate = try await create("one")
            #expect(duplicate.status == .conflict)
            #expect(duplicate.alert?.contains("sync_variant_already_exists") == true)
            #expect(try await create("two").status == .seeOther)
            let capped = try await create("three")
            #expect(capped.status == .badRequest)
            #expect(capped.alert?.contains("resource_capped") == true)

            // Triggering a running variant: 409, shown.
            let trigger: [String: String] = ["csrf": csrf, "integration": "shop", "connection": "acme", "sync": "slow", "variant": "base", "action": "trigger"]
            #expect(try await browser.post("/dashboard/connection/actions", trigger).status == .seeOther)
            try await eventually("the slow run started") { f.gate.entries == 1 }
            let again = try await browser.post("/dashboard/connection/actions", trigger)
            #expect(again.status == .conflict)
            #expect(again.alert?.contains("sync_running") == true)
            f.gate.release()

            let unknown = try await browser.post(
                "/dashboard/connection/actions",
                ["csrf": csrf, "integration": "shop", "connection": "acme", "sync": "items", "variant": "ghost", "action": "pause"])
            #expect(unknown.status == .notFound)
            #expect(unknown.alert?.contains("has no variant &#39;ghost&#39;") == true)
            let bogus = try await browser.post(
                "/dashboard/connection/actions",
                ["csrf": csrf, "integration": "shop", "connection": "acme", "sync": "items", "variant": "base", "action": "explode"])
            #expect(bogus.status == .badRequest)
            #expect(bogus.alert?.contains("Unknown action") == true)
        }
    }

    @Test func variantAndRunPagesShowHistoryAndLogs() async throws {
        let f = try await ServerFixture()
        try await withDashboard(f) { browser, api in
            try await api.connect("acme")
            _ = try await api.send(.post, "/sync/trigger", body: ["provider_config_key": "shop", "connection_id": "acme", "syncs": ["items"]])
            let first = try await f.waitForRuns(variant("base"))
            _ = try await api.send(.post, "/sync/trigger", body: ["provider_config_key": "shop", "connection_id": "acme", "syncs": ["items"]])
            let second = try await f.waitForRuns(variant("base"), count: 2)

            let history = try await browser.get("/dashboard/variant?integration=shop&connection=acme&sync=items&variant=base")
            #expect(history.status == .ok)
            #expect(history.html.contains("<h1>items › base</h1>"))
            #expect(history.html.contains(#"<a href="/dashboard/runs/\#(first.id)">#\#(first.id)</a>"#))
            #expect(history.html.contains(#"<a href="/dashboard/runs/\#(second.id)">#\#(second.id)</a>"#))
            #expect(history.html.range(of: "#\(second.id)</a>")!.lowerBound < history.html.range(of: "#\(first.id)</a>")!.lowerBound, "newest first")
            #expect(history.html.contains(">INCREMENTAL</td>"))
            #expect(history.html.contains(">INITIAL</td>"))

            let run = try await browser.get("/dashboard/runs/\(first.id)")
            #expect(run.status == .ok)
            #expect(run.html.contains("<h1>Run #\(first.id) <small>items › base</small></h1>"))
            #expect(run.html.contains(#"Status <span class="status status-succeeded">succeeded</span><span data-final hidden></span>"#))
            #expect(run.html.contains(#"<div id="run-body">"#), "a finished run's page does not refresh")
            #expect(run.html.contains(#"<th scope="row" data-label="Model">Item</th><td data-label="Added">3</td>"#))
            #expect(run.html.contains(#"<span class="level">info</span> <span class="message">saved 3 records labelled &lt;none&gt;</span>"#))

            #expect(try await browser.get("/dashboard/runs/999999").status == .notFound)
            #expect(try await browser.get("/dashboard/runs/abc").status == .notFound)
            // Another environment's run does not exist for this session.
            let prod = DashboardClient(api.client)
            try await prod.login(prodKey)
            #expect(try await prod.get("/dashboard/runs/\(first.id)").status == .notFound)
        }
    }

    @Test func activityPageListsTheEnvironmentsRunsWithFiltersAndCharts() async throws {
        let f = try await ServerFixture()
        try await withDashboard(f) { browser, api in
            try await api.connect("acme")
            try await api.connect("beta")
            _ = try await api.send(.post, "/sync/trigger", body: ["provider_config_key": "shop", "connection_id": "acme", "syncs": ["items"]])
            let first = try await f.waitForRuns(variant("base"))
            let betaRef = VariantRef(connection: ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "beta"), syncName: "items")
            _ = try await api.send(.post, "/sync/trigger", body: ["provider_config_key": "shop", "connection_id": "beta", "syncs": ["items"]])
            let second = try await f.waitForRuns(betaRef)
            // A failed run, recorded as a worker would.
            let failing = try await f.store.startRun(variant("base", sync: "slow"), RunStart(tracksDeletes: false))
            let failed = try await f.store.completeRun(failing.lease, RunCompletion(outcome: .failed(message: "provider said <no>")))

            let page = try await browser.get("/dashboard/activity")
            #expect(page.status == .ok)
            #expect(page.html.contains(#"<a href="/dashboard/activity">Activity</a>"#), "in the main navigation")
            for run in [first, second, failed] { #expect(page.html.contains(#"<tr data-run="\#(run.id)">"#)) }
            let order = [failed, second, first].map { page.html.range(of: #"data-run="\#($0.id)""#)!.lowerBound }
            #expect(order == order.sorted(), "newest first")
            #expect(page.html.contains(#"<a href="/dashboard/runs/\#(failed.id)">#\#(failed.id)</a>"#))
            #expect(page.html.contains(#"<a href="/dashboard/connection?integration=shop&amp;connection=beta">beta</a>"#))
            #expect(page.html.contains("provider said &lt;no&gt;"), "escaped")

            // The runs chart: 24 hourly bars holding the three finished runs, the failure as the highlighted part.
            let runsChart = try #require(Self.section(page.html, from: #"<figure id="chart-runs">"#, to: "</figure>"))
            #expect(Self.values(runsChart, "data-value").count == 24)
            #expect(Self.values(runsChart, "data-value").reduce(0, +) == 3)
            #expect(Self.values(runsChart, "data-part").reduce(0, +) == 1)
            let outboxChart = try #require(Self.section(page.html, from: #"<figure id="chart-outbox">"#, to: "</figure>"))
            #expect(Self.values(outboxChart, "data-value") == Array(repeating: 0, count: 24), "no webhooks are configured here")

            // Filters.
            let onlyFailed = try await browser.get("/dashboard/activity?status=failed")
            #expect(onlyFailed.count("<tr data-run=") == 1 && onlyFailed.html.contains(#"data-run="\#(failed.id)""#))
            #expect(onlyFailed.html.contains(#"<option value="failed" selected>"#))
            let beta = try await browser.get("/dashboard/activity?connection=beta")
            #expect(beta.count("<tr data-run=") == 1 && beta.html.contains(#"data-run="\#(second.id)""#))
            #expect(try await browser.get("/dashboard/activity?sync=slow&integration=shop").count("<tr data-run=") == 1)
            #expect(try await browser.get("/dashboard/activity?integration=keyed").html.contains("No runs match."))
            let older = try await browser.get("/dashboard/activity?before=\(second.id)&period=7d")
            #expect(older.count("<tr data-run=") == 1 && older.html.contains(#"data-run="\#(first.id)""#))
            #expect(try await browser.get("/dashboard/activity?status=exploded").status == .badRequest)
            #expect(try await browser.get("/dashboard/activity?period=forever").status == .badRequest)
            #expect(try await browser.get("/dashboard/activity?before=-3").status == .badRequest)

            // The variant page draws its runs' durations and changes.
            let history = try await browser.get("/dashboard/variant?integration=shop&connection=acme&sync=items&variant=base")
            let records = try #require(Self.section(history.html, from: #"<figure id="chart-records">"#, to: "</figure>"))
            #expect(Self.values(records, "data-value") == [3])
            #expect(history.html.contains(#"<figure id="chart-duration">"#))
        }
    }

    @Test func barChartsScaleEscapeAndSayWhenEmpty() {
        let chart = BarChart(
            name: "A <chart>", bars: [BarChart.Bar(label: "a&b", value: 40, part: 10, title: "t<1>"), BarChart.Bar(label: "c", value: 20, title: "t2")],
            format: { "\(Int($0))" })
        let svg = chart.svg
        #expect(svg.contains(#"aria-label="A &lt;chart&gt;""#))
        #expect(svg.contains("<title>t&lt;1&gt;</title>") && svg.contains(">a&amp;b</text>"))
        #expect(svg.contains(">50</text>"), "the axis tops out at a round number: \(svg)")
        // Heights: the plot is 150 high and tops at 50, so 40 → 120, its part 10 → 30, and 20 → 60.
        #expect(svg.contains(#"height="120""#) && svg.contains(#"height="30""#) && svg.contains(#"height="60""#))
        #expect(!svg.contains("style="), "no inline styles (the CSP forbids them)")
        #expect(BarChart(name: "none", bars: [], format: { "\($0)" }).svg.contains("No data yet"))
        #expect(BarChart.niceCeiling(0) == 1 && BarChart.niceCeiling(7) == 10 && BarChart.niceCeiling(101) == 200 && BarChart.niceCeiling(0.3) == 0.5)
        let hostile = BarChart.Bar(label: "x", value: .nan, part: .infinity, title: "")
        #expect(hostile.value == 0 && hostile.part == 0)
    }

    static func section(_ html: String, from start: String, to end: String) -> String? {
        guard let lower = html.range(of: start), let upper = html.range(of: end, range: lower.upperBound..<html.endIndex) else { return nil }
        return String(html[lower.lowerBound..<upper.upperBound])
    }

    static func values(_ svg: String, _ attribute: String) -> [Double] {
        svg.components(separatedBy: "\(attribute)=\"").dropFirst().compactMap { Double($0.prefix { $0 != "\"" }) }
    }

    @Test func actionExecutionsShowOnTheConnectionPageWithTheirLogs() async throws {
        let f = try await ServerFixture()
        try await withDashboard(f) { browser, api in
            try await api.connect("acme")
            let target = ["Connection-Id": "acme", "Provider-Config-Key": "shop"]
            let ok = try await api.send(.post, "/action/trigger", body: ["action_name": "greet", "input": ["name": "<Ada>"]], headers: target)
            #expect(ok.status == .ok && ok.json == ["hello": "<Ada>"])
            let failed = try await api.send(.post, "/action/trigger", body: ["action_name": "greet"], headers: target)
            #expect(failed.status == .internalServerError && failed.errorCode == "action_script_runtime_error")
            let runs = try await f.store.actionRuns(environment: "dev", connection: nil, limit: 5)
            let (failure, success) = (runs[0], runs[1])

            let page = try await browser.get("/dashboard/connection?integration=shop&connection=acme")
            #expect(page.html.contains(#"<h2 id="actions-heading">Actions</h2>"#) && page.html.contains("Offered: greet."))
            #expect(page.html.contains(#"<a href="/dashboard/actions/\#(success.id)">\#(success.id.prefix(8))</a>"#))
            #expect(page.html.range(of: failure.id)!.lowerBound < page.html.range(of: success.id)!.lowerBound, "newest first")
            #expect(page.html.contains("action_script_runtime_error: The action script failed with a runtime error"))

            let detail = try await browser.get("/dashboard/actions/\(failure.id)")
            #expect(detail.status == .ok)
            #expect(detail.html.contains("<h1>Action greet <small>sync</small></h1>"))
            #expect(detail.html.contains(#"Status <span class="status status-failed">failed</span>"#))
            #expect(detail.html.contains("(500 <code>action_script_runtime_error</code>)") && detail.html.contains("&quot;missing&quot;: &quot;name&quot;"))
            #expect(detail.html.contains(#"<span class="level">info</span> <span class="message">greeting &lt;nobody&gt;</span>"#))
            let good = try await browser.get("/dashboard/actions/\(success.id)")
            #expect(good.html.contains(#"status-succeeded"#) && good.html.contains("17 bytes") && good.html.contains("greeting &lt;&lt;Ada&gt;&gt;"))
            #expect(!good.html.contains("stopped worker") && !good.html.contains("retryable failures"), "no zero counts")

            #expect(try await browser.get("/dashboard/actions/\(UUID().uuidString)").status == .notFound)
            #expect(try await browser.get("/dashboard/actions/nope").status == .notFound)
            let prod = DashboardClient(api.client)
            try await prod.login(prodKey)
            #expect(try await prod.get("/dashboard/actions/\(success.id)").status == .notFound, "another environment's execution does not exist")
        }
    }

    @Test func recordsBrowserPagesThroughTheChangeFeed() async throws {
        let f = try await ServerFixture()
        try await withDashboard(f) { browser, api in
            try await api.connect("acme")
            _ = try await api.send(.post, "/sync/items/variant/big", body: ["provider_config_key": "shop", "connection_id": "acme"])
            _ = try await api.send(.post, "/connections/metadata", body: ["connection_id": "acme", "provider_config_key": "shop", "metadata": ["big.count": 120]])
            _ = try await api.send(.post, "/sync/trigger", body: ["provider_config_key": "shop", "connection_id": "acme", "syncs": ["items::big"]])
            _ = try await f.waitForRuns(variant("big"))
            _ = try await f.store.deleteRecords(ids: ["big-7"], model: "Item", of: variant("big"))

            var uri: String? = "/dashboard/records?integration=shop&connection=acme&model=Item&variant=big"
            var ids: [String] = []
            var pages = 0
            while let next = uri {
                let page = try await browser.get(next.replacingOccurrences(of: "&amp;", with: "&"))
                #expect(page.status == .ok)
                pages += 1
                let regex = try NSRegularExpression(pattern: #"<tr data-record="([^"]+)">"#)
                ids += regex.matches(in: page.html, range: NSRange(page.html.startIndex..., in: page.html)).map {
                    String(page.html[Range($0.range(at: 1), in: page.html)!])
                }
                uri = page.firstMatch(#"<a href="([^"]+)" rel="next">"#)
            }
            #expect(pages == 3, "50 + 50 + 20")
            #expect(ids.count == 120)
            #expect(Set(ids).count == 120)
            #expect(ids.last == "big-7", "the deletion is the newest change")

            let deleted = try await browser.get("/dashboard/records?integration=shop&connection=acme&model=Item&variant=big&filter=deleted")
            #expect(deleted.count("<tr data-record=") == 1)
            #expect(deleted.html.contains(#"<span class="action action-deleted">DELETED</span>"#))
            #expect(deleted.html.contains(#"<option value="deleted" selected>Deleted</option>"#))
            #expect(deleted.html.contains("&quot;label&quot;: &quot;none&quot;"), "the record's JSON")

            let base = try await browser.get("/dashboard/records?integration=shop&connection=acme&model=Item")
            #expect(base.html.contains("No records here."), "the base variant has none: variants never share records")
            #expect(try await browser.get("/dashboard/records?integration=shop&connection=acme&model=Nope").status == .badRequest)
            #expect(try await browser.get("/dashboard/records?integration=shop&connection=acme&model=Item&cursor=zzz").status == .badRequest)
            #expect(try await browser.get("/dashboard/records?integration=shop&connection=acme&model=Item&filter=gone").status == .badRequest)
        }
    }

    @Test func assetsAreServedAndPagesWorkAtPhoneWidth() async throws {
        let f = try await ServerFixture()
        try await f.withRouter { api in
            let browser = DashboardClient(api.client)
            let css = try await browser.get("/dashboard/assets/dashboard.css")
            #expect(css.status == .ok)
            #expect(css.headers[.contentType] == "text/css; charset=utf-8")
            #expect(css.html.contains("@media (max-width: 48rem)"))
            let script = try await browser.get("/dashboard/assets/dashboard.js")
            #expect(script.headers[.contentType] == "text/javascript; charset=utf-8")
            #expect(script.html.contains("data-refresh"))
            #expect(try await browser.get("/dashboard/assets/nope.js").status == .notFound)
            let login = try await browser.get("/dashboard/login")
            #expect(login.html.contains(#"<meta name="viewport" content="width=device-width, initial-scale=1">"#))
            #expect(login.html.contains(#"<html lang="en">"#))
            #expect(login.html.contains(#"<main id="main">"#))
        }
    }
}
