import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Synchronization

/// A page as the dashboard served it.
struct Page: Sendable {
    let status: HTTPResponse.Status
    let headers: HTTPFields
    let html: String

    var location: String? { headers[.location] }
    var setCookies: [String] { headers[values: .setCookie] }

    /// The first CSRF token in the page's forms.
    var csrf: String? { firstMatch(#"name="csrf" value="([^"]+)""#) }

    /// The `<tr …>…</tr>` whose id is `id` (a variant row is `variant-<sync>--<variant>`).
    func row(_ id: String) -> String? {
        guard let start = html.range(of: "<tr id=\"\(id)\"") else { return nil }
        guard let end = html.range(of: "</tr>", range: start.upperBound..<html.endIndex) else { return nil }
        return String(html[start.lowerBound..<end.upperBound])
    }

    /// The `data-status` of a variant row.
    func status(ofRow id: String) -> String? {
        guard let row = row(id) else { return nil }
        return Page(status: status, headers: headers, html: row).firstMatch(#"data-status="([^"]+)""#)
    }

    /// The text of the page's `role="alert"` box, if any.
    var alert: String? {
        guard let start = html.range(of: "role=\"alert\"") else { return nil }
        guard let end = html.range(of: "</div>", range: start.upperBound..<html.endIndex) else { return nil }
        return String(html[start.upperBound..<end.lowerBound])
    }

    func firstMatch(_ pattern: String) -> String? {
        guard let regex = try? NSRegularExpression(pattern: pattern),
            let match = regex.firstMatch(in: html, range: NSRange(html.startIndex..., in: html)), match.numberOfRanges > 1,
            let range = Range(match.range(at: 1), in: html)
        else { return nil }
        return String(html[range])
    }

    /// How many times `text` occurs.
    func count(_ text: String) -> Int { html.components(separatedBy: text).count - 1 }
}

/// A browser-like client of the dashboard: keeps the session cookie, posts forms.
final class DashboardClient: Sendable {
    let client: any TestClientProtocol
    private let cookie = Mutex<String?>(nil)

    init(_ client: any TestClientProtocol) { self.client = client }

    var sessionCookie: String? {
        get { cookie.withLock { $0 } }
        set { cookie.withLock { $0 = newValue } }
    }

    /// Logs in with `key`; returns the login response.
    @discardableResult
    func login(_ key: String, headers extra: HTTPFields = [:]) async throws -> Page {
        let page = try await post("/dashboard/login", ["secret_key": key], headers: extra)
        if let set = page.setCookies.first(where: { $0.hasPrefix("tributary_session=") }) {
            sessionCookie = String(set.dropFirst("tributary_session=".count).prefix { $0 != ";" })
        }
        return page
    }

    func get(_ uri: String) async throws -> Page {
        try await send(.get, uri, body: nil, headers: [:])
    }

    /// Posts `fields` form-encoded.
    func post(_ uri: String, _ fields: [String: String], headers extra: HTTPFields = [:]) async throws -> Page {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        let body = fields.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")" }.joined(separator: "&")
        var headers = extra
        headers[.contentType] = "application/x-www-form-urlencoded"
        return try await send(.post, uri, body: ByteBuffer(string: body), headers: headers)
    }

    /// Follows a 303 (one hop) with a GET.
    func follow(_ page: Page) async throws -> Page {
        guard page.status == .seeOther, let location = page.location else { return page }
        return try await get(location)
    }

    private func send(_ method: HTTPRequest.Method, _ uri: String, body: ByteBuffer?, headers extra: HTTPFields) async throws -> Page {
        var headers = extra
        if let cookie = sessionCookie { headers[.cookie] = "tributary_session=\(cookie)" }
        let response = try await client.execute(uri: uri, method: method, headers: headers, body: body)
        return Page(status: response.status, headers: response.headers, html: String(buffer: response.body))
    }
}
