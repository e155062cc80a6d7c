import Foundation
import PropertyBased
import Testing
import TributaryCore
import TributaryEngine

/// Random answers from a provider on a loopback port — statuses, `Retry-After`, `Link` headers,
/// bodies with odd cursors, next links and numbers, token answers with any `expires_in` — go
/// through the real provider access and pagination. A trap would end this test process; what is
/// checked is that every read ends (pages, or an error of a known kind with a message), and that no
/// link or message kept holds the API key or a `user:password@`.
@Suite("A hostile provider, at random, over real HTTP")
struct HostileProviderPropertyTests {
    static let key = FakeProviderServer.apiKey

    /// Pieces of header values: numbers in every form, URL syntax, link syntax, the API key.
    static let headerPieces = [
        "inf", "-inf", "nan", "1e20", "1e400", "-5", "0", "1.5", "99999999999999999999", " ", "<", ">", ";", ",", "rel=next", "rel=\"next\"",
        "http://", "https://user:pw@", "127.0.0.1", "example.invalid", "/", "..", "%2e", "%", "?", "#", "&", "=", "api_key=", key, "scripted",
        "Wed, 21 Oct 2015 07:28:00 GMT", "\"", "'", "\\", "\t",
    ]
    /// Pieces of JSON string values (escaped when put in a body): the above, with non-ASCII and NUL.
    static let textPieces = headerPieces + ["é", "\u{0}", "\u{7}", "😀", "\u{FFFF}", "{metadata.a}", "\n"]
    /// Raw JSON values a provider may put where a cursor, link or id is expected.
    static let rawValues = [
        "null", "true", "{}", "[1]", "1e400", "-0", "123456789012345678901234567890", "0.1", "-1", "\"\"", "\"\\ud800\"", "1E-400",
    ]

    static let headerText = Gen<String?>.element(of: headerPieces).map { $0 ?? "" }.array(of: 0...5).map { $0.joined() }
    static let text = Gen<String?>.element(of: textPieces).map { $0 ?? "" }.array(of: 0...5).map { $0.joined() }
    static let raw = Gen<String?>.element(of: rawValues).map { $0 ?? "null" }
    static let status = Gen<Int?>.element(of: [200, 200, 200, 201, 204, 301, 400, 401, 404, 429, 500, 503]).map { $0 ?? 200 }

    /// A body: mostly the expected shape with hostile values in it, sometimes not JSON at all.
    static func body(shape: Int, next: String, cursor: String, id: String) -> String {
        let quoted = JSONWriter.string(.string(next))
        switch shape {
        case 0: return #"{"data":[{"id":"a"},{"id":\#(id)}],"next":\#(quoted),"cursor":\#(cursor)}"#
        case 1: return #"{"data":[{"id":"a"}],"next":\#(cursor),"cursor":\#(JSONWriter.string(.string(next)))}"#
        case 2: return #"{"data":\#(cursor),"next":\#(quoted)}"#
        default: return next
        }
    }

    /// Whether `text` holds the key as the credential query parameter or a `user:password@` in the
    /// authority of a URL (the text, or a word of a message, starts with it) — what Tributary must
    /// strip. (The key or `user:pw@` elsewhere — a cursor, a path segment like `é…https://user:pw@`,
    /// which is not a URL and is sent as a path — is the provider's data, not a credential.)
    static func holdsCredential(_ text: String) -> Bool {
        if text.contains("api_key=\(key)") { return true }
        return ["http://user:pw@", "https://user:pw@", "//user:pw@"].contains { text.hasPrefix($0) || text.contains(" " + $0) }
    }

    static func check(_ error: any Error, _ what: String) {
        switch error {
        case let error as TributaryError:
            #expect(!error.message.isEmpty, "\(what)")
            #expect(!holdsCredential(error.message), "a credential in an error: \(error.message)")
        case let error as ProviderUnavailable:
            #expect(!holdsCredential(error.description), "a credential in an error: \(error.description)")
        default:
            Issue.record("\(what): an error of an unexpected kind, \(type(of: error)): \(error)")
        }
    }

    @Test func anyAnswerEndsTheListingClearly() async throws {
        let server = FakeProviderServer()
        try await server.serve { base in
            // Any Retry-After above zero ends a call at once (no real waiting in a property test).
            let f = try await ProviderFixture(
                baseURL: base, policy: OutboundPolicy(timeout: .seconds(5), retries: 1, baseDelay: .milliseconds(1), maxDelay: .milliseconds(2), maxRetryAfter: .zero))
            defer { Task { try? await f.http.shutdown() } }
            let send: @Sendable (ProviderRequest) async throws -> ProviderResponse = { try await f.access.send($0, for: ProviderFixture.connection("key-query")) }
            let styles: [Pagination] = [
                Pagination(.cursor(nextCursorPath: "cursor", cursorParameter: "c"), recordsPath: "data"),
                Pagination(.link(nextURLPath: nil), recordsPath: "data"),
                Pagination(.link(nextURLPath: "next"), recordsPath: "data"),
                Pagination(.offset(offsetParameter: "o"), recordsPath: "data", limitParameter: "n", limit: 2),
            ]
            await propertyCheck(
                count: 150, input: Self.status, Self.headerText, Self.headerText, Self.text, Self.raw, Gen<Int>.int(in: 0...3), Gen<Int>.int(in: 0..<styles.count)
            ) { status, retryAfter, link, next, cursor, shape, style in
                let body = Self.body(shape: shape, next: next, cursor: cursor, id: cursor)
                let headers = [("Content-Type", "application/json"), ("Retry-After", retryAfter), ("Link", link)]
                server.state.withLock { $0.script = FakeProviderServer.Script(status: status, headers: headers, body: body) }
                let what = "status \(status), Retry-After \(retryAfter.debugDescription), Link \(link.debugDescription), body \(body.debugDescription)"
                var iterator = ProviderPages(request: ProviderRequest(.GET, "/scripted"), pagination: styles[style], send: send).makeAsyncIterator()
                do {
                    var pages = 0
                    while pages < 3, let page = try await iterator.next() {
                        pages += 1
                        // A kept link (link styles; a cursor is opaque provider data) holds no credential.
                        if let next = page.next, style == 1 || style == 2 {
                            #expect(!Self.holdsCredential(next), "a kept link holds a credential: \(next)")
                        }
                    }
                } catch {
                    Self.check(error, what)
                }
            }
        }
    }

    @Test func anyExpiresInFromTheTokenEndpointIsStoredOrRefusedClearly() async throws {
        let server = FakeProviderServer()
        try await server.serve { base in
            let f = try await ProviderFixture(baseURL: base, policy: OutboundPolicy(timeout: .seconds(5), retries: 0))
            defer { Task { try? await f.http.shutdown() } }
            let expiresIn = Gen<String?>.element(of: Self.rawValues + ["3600", "1e300", "-1e300", "9223372036854775807", "\"3600\"", "\"soon\"", "0", "1.7976931348623157e308"])
                .map { $0 ?? "null" }
            await propertyCheck(count: 40, input: expiresIn) { raw in
                // The current token is refused: the call refreshes, and the answer carries this expires_in.
                server.state.withLock { s in
                    s.validToken = "revoked"
                    s.rawExpiresIn = raw
                }
                do {
                    let response = try await f.get("oauth", "/oauth")
                    #expect(response.status == 200 || response.status == 401, "expires_in \(raw)")
                } catch {
                    Self.check(error, "expires_in \(raw)")
                }
            }
        }
    }
}
