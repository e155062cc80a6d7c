import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import TributaryTestSupport
import TributaryCore

/// A minimal W3C WebDriver client for chromedriver (Debian's `chromium-driver`), over plain HTTP:
/// enough to drive a headless Chromium through the dashboard in a test.
final class WebDriver: Sendable {
    /// The element key of W3C WebDriver responses.
    static let elementKey = "element-6066-11e4-a52e-4f735466cecf"

    let process: Process
    let base: String
    let session: String

    /// Starts chromedriver on a free loopback port and opens a headless Chromium session.
    static func start(chromedriver: String, chromium: String?, windowSize: (Int, Int)) async throws -> WebDriver {
        let port = try childProcessPorts()[0]
        let process = Process()
        process.executableURL = URL(fileURLWithPath: chromedriver)
        process.arguments = ["--port=\(port)", "--allowed-ips=127.0.0.1"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let base = "http://127.0.0.1:\(port)"
        do {
            let deadline = ContinuousClock.now + .seconds(20)
            while await (try? request(.GET, base + "/status", nil))?["ready"]?.boolValue != true {
                guard ContinuousClock.now < deadline, process.isRunning else { throw WebDriverError("chromedriver did not become ready") }
                try await Task.sleep(for: .milliseconds(100))
            }
            var options: JSONObject = [
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
                    .string("--window-size=\(windowSize.0),\(windowSize.1)"),
                ]
            ]
            if let chromium { options["binary"] = .string(chromium) }
            let created = try await request(
                .POST, base + "/session", ["capabilities": ["alwaysMatch": ["browserName": "chrome", "goog:chromeOptions": .object(options)]]])
            guard let session = created["sessionId"]?.stringValue else { throw WebDriverError("no session: \(JSONWriter.string(created))") }
            return WebDriver(process: process, base: base, session: session)
        } catch {
            kill(process.processIdentifier, SIGKILL)
            throw error
        }
    }

    private init(process: Process, base: String, session: String) {
        self.process = process
        self.base = base
        self.session = session
    }

    /// Ends the session and chromedriver (which ignores SIGTERM: it is asked to shut down, then killed).
    func quit() async {
        _ = try? await command(.DELETE, "")
        _ = try? await Self.request(.GET, base + "/shutdown", nil)
        let deadline = ContinuousClock.now + .seconds(5)
        while process.isRunning, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(50)) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    func navigate(to url: String) async throws { _ = try await command(.POST, "/url", ["url": .string(url)]) }

    /// The first element matching `css`.
    func element(_ css: String) async throws -> String {
        let value = try await command(.POST, "/element", ["using": "css selector", "value": .string(css)])
        guard let id = value[Self.elementKey]?.stringValue else { throw WebDriverError("no element \(css)") }
        return id
    }

    /// The first element matching `css` once it exists (the page may still be loading).
    func waitForElement(_ css: String, seconds: Double = 10) async throws -> String {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while true {
            do {
                return try await element(css)
            } catch {
                guard ContinuousClock.now < deadline else { throw error }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    func click(_ element: String) async throws { _ = try await command(.POST, "/element/\(element)/click", [:]) }
    func type(_ text: String, into element: String) async throws {
        _ = try await command(.POST, "/element/\(element)/value", ["text": .string(text)])
    }
    func text(_ element: String) async throws -> String { try await command(.GET, "/element/\(element)/text").stringValue ?? "" }
    func attribute(_ name: String, of element: String) async throws -> String? {
        try await command(.GET, "/element/\(element)/attribute/\(name)").stringValue
    }
    func currentURL() async throws -> String { try await command(.GET, "/url").stringValue ?? "" }
    /// Runs a script in the page and returns its value.
    func execute(_ script: String) async throws -> JSONValue { try await command(.POST, "/execute/sync", ["script": .string(script), "args": []]) }
    func setWindowSize(width: Int, height: Int) async throws {
        _ = try await command(.POST, "/window/rect", ["width": .number(JSONNumber(width)), "height": .number(JSONNumber(height))])
    }

    /// The handles of the session's windows (a popup adds one), and the current one.
    func windowHandles() async throws -> [String] { try await command(.GET, "/window/handles").arrayValue?.compactMap(\.stringValue) ?? [] }
    func windowHandle() async throws -> String { try await command(.GET, "/window").stringValue ?? "" }
    func switchToWindow(_ handle: String) async throws { _ = try await command(.POST, "/window", ["handle": .string(handle)]) }

    /// A PNG of the viewport.
    func screenshot() async throws -> Data {
        guard let base64 = try await command(.GET, "/screenshot").stringValue, let data = Data(base64Encoded: base64) else {
            throw WebDriverError("no screenshot")
        }
        return data
    }

    /// A session command; returns the response's `value`, or throws its WebDriver error.
    private func command(_ method: HTTPMethod, _ path: String, _ body: JSONObject? = nil) async throws -> JSONValue {
        try await Self.request(method, "\(base)/session/\(session)\(path)", body)
    }

    private static func request(_ method: HTTPMethod, _ url: String, _ body: JSONObject?) async throws -> JSONValue {
        var request = HTTPClientRequest(url: url)
        request.method = method
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: JSONWriter.bytes(.object(body), canonical: false)))
        }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
        let bytes = try await response.body.collect(upTo: 64 << 20)
        let json = try JSONParser.parse(bytes.readableBytesView)
        let value = json["value"] ?? .null
        if response.status.code >= 400 || value["error"] != nil {
            throw WebDriverError("\(method) \(url): \(value["error"]?.stringValue ?? "\(response.status.code)") — \(value["message"]?.stringValue ?? "")")
        }
        return value
    }
}

struct WebDriverError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
