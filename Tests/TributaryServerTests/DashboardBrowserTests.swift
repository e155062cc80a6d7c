import Foundation
import Testing
import TributaryTestSupport
import TributaryCore
import TributaryStore
import TributaryEngine
import TributaryServer

/// Where chromedriver is: `TRIBUTARY_TEST_CHROMEDRIVER` (`.ci/run` sets it, so a missing browser
/// fails there instead of skipping), else Debian's `/usr/bin/chromedriver` when installed.
private let chromedriver: String? = {
    if let path = ProcessInfo.processInfo.environment["TRIBUTARY_TEST_CHROMEDRIVER"], !path.isEmpty { return path }
    return FileManager.default.isExecutableFile(atPath: "/usr/bin/chromedriver") ? "/usr/bin/chromedriver" : nil
}()

/// The dashboard in a real headless Chromium (Debian's `chromium` and `chromium-driver`), against
/// the real application on a loopback port.
@Suite("Dashboard in a browser", .enabled(if: chromedriver != nil, "needs chromedriver (apt-get install chromium chromium-driver)"))
struct DashboardBrowserTests {
    /// Where screenshots go: `TRIBUTARY_TEST_SCREENSHOTS`, else a temporary folder.
    static let screenshots = URL(
        fileURLWithPath: ProcessInfo.processInfo.environment["TRIBUTARY_TEST_SCREENSHOTS"]
            ?? FileManager.default.temporaryDirectory.appendingPathComponent("tributary-screenshots").path)

    @Test func logInCreateAVariantTriggerItAndWatchItSucceed() async throws {
        let f = try await ServerFixture()
        try await f.withLiveServer { api in
            try await api.connect("acme")
            let port = try #require(api.client.port)
            let site = "http://127.0.0.1:\(port)"
            let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first { FileManager.default.isExecutableFile(atPath: $0) }
            let browser = try await WebDriver.start(chromedriver: try #require(chromedriver), chromium: chromium, windowSize: (1280, 900))
            do {
                try await run(browser, site: site, fixture: f)
                await browser.quit()
            } catch {
                try? save(await browser.screenshot(), as: "dashboard-failure.png")
                await browser.quit()
                throw error
            }
        }
    }

    private func run(_ browser: WebDriver, site: String, fixture f: ServerFixture) async throws {
        // Any dashboard page sends a stranger to the login form.
        try await browser.navigate(to: site + "/dashboard")
        let key = try await browser.waitForElement("#secret_key")
        #expect(try await browser.currentURL() == site + "/dashboard/login")
        try await browser.type(devKey, into: key)
        try await browser.click(try await browser.element("form[action='/dashboard/login'] button[type=submit]"))

        // The connections page, then acme's page.
        let link = try await browser.waitForElement("a[href='/dashboard/connection?integration=shop&connection=acme']")
        try await browser.click(link)
        let input = try await browser.waitForElement("#new-variant-slow")

        // Create a variant of the slow sync (its runs wait for the test's gate).
        try await browser.type("browser-eu", into: input)
        try await browser.click(try await browser.element("form.create:has(#new-variant-slow) button[type=submit]"))
        let notice = try await browser.waitForElement("p.notice")
        #expect(try await browser.text(notice) == "Variant slow › browser-eu was created.")
        let row = "#variant-slow--browser-eu"
        #expect(try await browser.attribute("data-status", of: try await browser.element(row)) == "not-run")

        // Trigger it: the row shows it running while the sync function waits.
        try await browser.click(try await browser.element("\(row) button[value=trigger]"))
        _ = try await browser.waitForElement("p.notice")
        try await eventually("the run started") { f.gate.entries == 1 }
        let heading = try await browser.element("h1")
        let statusNow = try await browser.attribute("data-status", of: try await browser.element(row))
        #expect(statusNow == "running" || statusNow == "queued", "\(statusNow ?? "no row")")

        // Let the run finish: the row turns to success without a reload.
        f.gate.release()
        try await eventually("the row shows success", seconds: 20) {
            (try? await browser.attribute("data-status", of: try await browser.element(row))) == "success"
        }
        #expect(try await browser.text(try await browser.element("\(row) .status")) == "SUCCESS")
        #expect(try await browser.text(heading) == "acme", "the same page, refreshed in place (a reload would make the heading stale)")
        #expect(try await browser.text(try await browser.element("\(row) td[data-label='Records']")).contains("Slow 1"))
        try save(try await browser.screenshot(), as: "dashboard-connection.png")

        // At phone width the rows become cards and nothing scrolls sideways.
        try await browser.setWindowSize(width: 390, height: 844)
        let overflow = try await browser.execute("return document.documentElement.scrollWidth - document.documentElement.clientWidth;")
        #expect(overflow.int64Value == 0, "horizontal overflow at phone width: \(JSONWriter.string(overflow)) px")
        try save(try await browser.screenshot(), as: "dashboard-connection-phone.png")

        // The run's page, from the row's last-run link, shows its result.
        try await browser.setWindowSize(width: 1280, height: 900)
        try await browser.click(try await browser.element("\(row) td[data-label='Last run'] a"))
        let title = try await browser.waitForElement("#run-body .status")
        #expect(try await browser.text(title) == "succeeded")

        // An action run through the API is listed on the connection's page and opens with its logs.
        let api = f.api
        let triggered = try await api.actions?.runNow(
            try #require(f.config.integration("shop", in: "dev")?.action(named: "greet")),
            connection: ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "acme"), input: Array(#"{"name":"browser"}"#.utf8))
        #expect(triggered == Array(#"{"hello":"browser"}"#.utf8))
        try await browser.navigate(to: site + "/dashboard/connection?integration=shop&connection=acme#actions")
        try await browser.click(try await browser.waitForElement("#actions tbody tr a"))
        let status = try await browser.waitForElement(".run-state .status")
        #expect(try await browser.text(status) == "succeeded")
        #expect(try await browser.text(try await browser.element(".logs .message")) == "greeting <browser>")
        try save(try await browser.screenshot(), as: "dashboard-action.png")

        // The activity page, from the main navigation: every run of the environment and the charts,
        // drawn without script; the failed-runs filter narrows the list.
        try await browser.click(try await browser.element("nav[aria-label=Main] a[href='/dashboard/activity']"))
        _ = try await browser.waitForElement("#chart-runs svg.chart g.bar")
        let drawn = try await browser.execute(
            "const r = document.querySelector('#chart-runs svg').getBoundingClientRect(); return [r.width, r.height, document.querySelectorAll('#chart-runs rect.value').length];")
        let size = drawn.arrayValue?.compactMap(\.doubleValue) ?? []
        #expect(size.count == 3 && size[0] > 300 && size[1] > 60 && size[2] == 24, "the runs chart is drawn with 24 hourly bars: \(JSONWriter.string(drawn))")
        let tallest = try await browser.execute(
            "return Math.max(...Array.from(document.querySelectorAll('#chart-runs rect.value')).map(r => r.getBoundingClientRect().height));")
        #expect((tallest.doubleValue ?? 0) > 10, "the hour with runs has a visible bar")
        let listed = try await browser.execute("return document.querySelectorAll('table.activity tbody tr').length;")
        #expect(listed.int64Value == 1, "the slow variant's run: \(JSONWriter.string(listed))")
        try save(try await browser.screenshot(), as: "dashboard-activity.png")
        try await browser.setWindowSize(width: 390, height: 844)
        let activityOverflow = try await browser.execute("return document.documentElement.scrollWidth - document.documentElement.clientWidth;")
        #expect(activityOverflow.int64Value == 0, "horizontal overflow at phone width: \(JSONWriter.string(activityOverflow)) px")
        try save(try await browser.screenshot(), as: "dashboard-activity-phone.png")
        try await browser.setWindowSize(width: 1280, height: 900)
    }

    private func save(_ png: Data, as name: String) throws {
        try FileManager.default.createDirectory(at: Self.screenshots, withIntermediateDirectories: true)
        let url = Self.screenshots.appendingPathComponent(name)
        try png.write(to: url)
        print("dashboard screenshot: \(url.path)")
    }
}
