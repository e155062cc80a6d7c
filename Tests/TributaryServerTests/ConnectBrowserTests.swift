import Foundation
import Testing
import TributaryTestSupport
import TributaryCore
import TributaryServer
import TributaryStore

private let chromedriver: String? = {
    if let path = ProcessInfo.processInfo.environment["TRIBUTARY_TEST_CHROMEDRIVER"], !path.isEmpty { return path }
    return FileManager.default.isExecutableFile(atPath: "/usr/bin/chromedriver") ? "/usr/bin/chromedriver" : nil
}()

/// The whole Connect flow in a real headless Chromium, through the real server and a fake OAuth
/// provider: the app opens the Connect link in a popup, the end user picks the provider, signs in
/// and allows, the popup tells the app and closes; the app's webhook arrives signed, and a sync
/// runs with the tokens. Then an API-key form in the page itself, refused once and accepted.
@Suite("Connect in a browser", .enabled(if: chromedriver != nil, "needs chromedriver (apt-get install chromium chromium-driver)"))
struct ConnectBrowserTests {
    @Test func anEndUserConnectsInAPopupAndTheAppHearsOfItTwice() async throws {
        try await ConnectFixture.run { f in
            let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first { FileManager.default.isExecutableFile(atPath: $0) }
            let browser = try await WebDriver.start(chromedriver: try #require(chromedriver), chromium: chromium, windowSize: (1100, 900))
            do {
                try await run(browser, f)
                await browser.quit()
            } catch {
                try? save(await browser.screenshot(), as: "connect-failure.png")
                await browser.quit()
                throw error
            }
        }
    }

    private func run(_ browser: WebDriver, _ f: ConnectFixture) async throws {
        let (_, link) = try await f.session(["end_user": ["id": "u-browser", "email": "b@example.com"], "organization": ["id": "org-b"]])

        // The app opens the Connect link in a popup.
        try await browser.navigate(to: f.provider.site + "/app?link=" + FormEncoding.escape(link))
        let app = try await browser.windowHandle()
        try await browser.click(try await browser.waitForElement("#connect"))
        try await eventually("the popup opened") { try await browser.windowHandles().count == 2 }
        try await browser.switchToWindow(try #require(try await browser.windowHandles().first { $0 != app }))

        // It lists what can be connected; the end user picks Fakehub and continues to it.
        let choice = try await browser.waitForElement("ul.choices a[href^='/connect/integrations/fakehub']")
        try save(try await browser.screenshot(), as: "connect-choice.png")
        try await browser.click(choice)
        try await browser.click(try await browser.waitForElement("#oauth-continue"))
        let allow = try await browser.waitForElement("#allow")
        #expect(try await browser.text(try await browser.element("#scope")) == "profile repo")
        #expect(try await browser.currentURL().hasPrefix(f.provider.site + "/oauth/authorize?"), "another site than Tributary's")
        try await browser.click(allow)

        // The popup says it is done, tells the app and closes itself.
        try await eventually("the popup closed", seconds: 15) { try await browser.windowHandles() == [app] }
        try await browser.switchToWindow(app)
        let result = try await browser.text(try await browser.waitForElement("#result"))
        let message = try JSONParser.parse(result)
        #expect(message["eventType"] == "AUTHORIZATION_SUCEEDED", "\(result)")
        #expect(message["data"]?["providerConfigKey"] == "fakehub")
        let connectionId = try #require(message["data"]?["connectionId"]?.stringValue)
        try save(try await browser.screenshot(), as: "connect-app-told.png")

        // The connection has the session's end user and the tokens; the app got the signed webhook.
        let connection = try await f.api(.GET, "/connections/\(connectionId)?provider_config_key=fakehub")
        #expect(connection.json["end_user"]?["id"] == "u-browser" && connection.json["end_user"]?["organization"]?["id"] == "org-b")
        let access = try #require(f.provider.state.withLock { $0.accessToken })
        #expect(connection.json["credentials"]?["access_token"]?.stringValue == access)
        try await eventually("the auth webhook") { !f.provider.webhookBodies.isEmpty }
        let (headers, body) = try #require(f.provider.state.withLock { $0.webhooks.first })
        #expect(headers["x-nango-hmac-sha256"] == WebhookSignature.sign(body, key: ConnectFixture.signing))
        #expect(f.provider.webhookBodies.first?["connectionId"]?.stringValue == connectionId)

        // A sync runs with those tokens.
        _ = try await f.api(.POST, "/sync/trigger", ["syncs": ["profile"], "provider_config_key": "fakehub", "connection_id": .string(connectionId)])
        let ref = VariantRef(connection: ConnectionRef(environment: "dev", providerConfigKey: "fakehub", connectionId: connectionId), syncName: "profile")
        try await eventually("the sync ran with the tokens") { try await f.store.runs(of: ref, limit: 1).first?.status == .succeeded }
        #expect(try await f.store.recordCounts(of: ref) == ["Profile": 1])

        // In the page itself (no popup): an API key, refused by the provider, then accepted.
        let (_, keyLink) = try await f.session(["end_user": ["id": "u-key"], "allowed_integrations": ["keyshop"]])
        try await browser.navigate(to: keyLink)
        try await browser.type("key-WRONG", into: try await browser.waitForElement("#api_key"))
        try await browser.click(try await browser.element("form button[type=submit]"))
        let problem = try await browser.waitForElement(".problem")
        #expect(try await browser.text(problem).contains("did not accept these credentials"))
        try save(try await browser.screenshot(), as: "connect-apikey-refused.png")
        try await browser.type(FakeOAuthProvider.goodKey, into: try await browser.waitForElement("#api_key"))
        try await browser.click(try await browser.element("form button[type=submit]"))
        let outcome = try await browser.waitForElement("#outcome h1")
        #expect(try await browser.text(outcome) == "Connected")
        try save(try await browser.screenshot(), as: "connect-connected.png")
        let overflow = try await browser.execute("return document.documentElement.scrollWidth - document.documentElement.clientWidth;")
        #expect(overflow.int64Value == 0)
    }

    private func save(_ png: Data, as name: String) throws {
        try FileManager.default.createDirectory(at: DashboardBrowserTests.screenshots, withIntermediateDirectories: true)
        let url = DashboardBrowserTests.screenshots.appendingPathComponent(name)
        try png.write(to: url)
        print("connect screenshot: \(url.path)")
    }
}
