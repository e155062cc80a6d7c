import Foundation
import PropertyBased
import Testing
import TributaryCore

/// Values from outside — connection metadata, provider cursors and links, ids a function puts in a
/// path — reach URLs and checkpoints. Whatever they hold, nothing traps: a bad value fails with a
/// clear error naming it, and a value stays in its place (one path segment, one query value).
@Suite("Hostile input in templates, URLs and checkpoints")
struct HostileInputTests {
    /// Characters that matter in a URL, with some that are just awkward.
    static let awkward = Gen<Character?>.element(of: Array("./?#%{}[]:@ &=+\\é€\n\u{0}aZ9-_~") as [Character]).map { $0! }

    /// A percent-encoded path or query holds only allowed bytes and well-formed `%XX` escapes.
    static func isValidEncoded(_ text: String, allowing extra: Set<UInt8>) -> Bool {
        let bytes = Array(text.utf8)
        let allowed = Set(Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@".utf8)).union(extra)
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "%") {
                guard index + 2 < bytes.count, bytes[index + 1].isHex, bytes[index + 2].isHex else { return false }
                index += 3
            } else {
                guard allowed.contains(bytes[index]) else { return false }
                index += 1
            }
        }
        return true
    }

    @Test func anyMetadataValueStaysOnePathSegment() async {
        await propertyCheck(count: 300, input: Self.awkward.string(of: 0...24)) { value in
            do {
                let filled = try DeclarativeSpec.fill("/stores/{metadata.store}/orders", variant: "eu", metadata: ["store": .string(value)], for: .path)
                let segments = filled.split(separator: "/", omittingEmptySubsequences: false)
                #expect(segments.count == 4 && segments[1] == "stores" && segments[3] == "orders", "\(value.debugDescription) → \(filled)")
                #expect(Self.isValidEncoded(filled, allowing: [UInt8(ascii: "/")]), "\(value.debugDescription) → \(filled)")
                #expect(!URLText.hasDotSegment(filled))
                // Decoded, the segment is the value itself.
                #expect(String(segments[2]).removingPercentEncoding == value)
            } catch let error as TributaryError {
                let parts = value.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "/" || $0 == "\\" })
                #expect(parts.contains { $0 == "." || $0 == ".." }, "only a value with a dot segment is refused: \(error.message)")
                #expect(error.code == .invalidMetadata && error.message.contains("'store'"))
            } catch {
                Issue.record("unexpected error \(error)")
            }
        }
    }

    @Test func substitutionIsOnePassAndNeverRescansWhatItInserted() throws {
        // Metadata pointing at itself is just text: filling it ends at once.
        let loop = try DeclarativeSpec.fill("/a/{metadata.a}?q={metadata.b}", variant: "eu", metadata: ["a": "{metadata.a}", "b": "{variant}"])
        #expect(loop == "/a/{metadata.a}?q={variant}")
        let path = try DeclarativeSpec.fill("/a/{metadata.a}", variant: "eu", metadata: ["a": "{metadata.a}"], for: .path)
        #expect(path == "/a/%7Bmetadata.a%7D")
        // A per-variant key still reads the variant's setting, and the variant itself is encoded in a path.
        #expect(try DeclarativeSpec.fill("/s/{metadata.{variant}.store}/{variant}", variant: "eu", metadata: ["eu.store": "my store"], for: .path) == "/s/my%20store/eu")
        // An unclosed token is left as text.
        #expect(try DeclarativeSpec.fill("/s/{metadata.x", variant: "eu", metadata: [:]) == "/s/{metadata.x")
    }

    @Test func valuesThatCouldEscapeTheirPlaceAreEncodedOrRefused() throws {
        let query = try DeclarativeSpec.fill("/s/{metadata.s}/orders", variant: "eu", metadata: ["s": "x?y=1#frag"], for: .path)
        #expect(query == "/s/x%3Fy%3D1%23frag/orders")
        // `../admin` escaped is one segment, but a server decoding %2F first would step up: refused.
        for dots in [".", "..", "../admin", "a/../../admin", "..\\admin", "x/."] {
            let error = #expect(throws: TributaryError.self) {
                try DeclarativeSpec.fill("/s/{metadata.s}/orders", variant: "eu", metadata: ["s": .string(dots)], for: .path)
            }
            #expect(error?.code == .invalidMetadata)
        }
        let long = #expect(throws: TributaryError.self) {
            try DeclarativeSpec.fill("/s/{metadata.s}", variant: "eu", metadata: ["s": .string(String(repeating: "x", count: 5_000))], for: .path)
        }
        #expect(long?.message.contains("5000 bytes") == true)
    }

    @Test func anyEndpointTextBecomesAValidPathAndQuery() async {
        await propertyCheck(count: 300, input: Self.awkward.string(of: 0...40)) { text in
            let path = URLText.path(Substring(text))
            let query = URLText.query(Substring(text))
            #expect(Self.isValidEncoded(path, allowing: [UInt8(ascii: "/")]), "\(text.debugDescription) → \(path)")
            #expect(Self.isValidEncoded(query, allowing: [UInt8(ascii: "/"), UInt8(ascii: "?")]), "\(text.debugDescription) → \(query)")
            // What was already escaped stays as it was; nothing else changes meaning when decoded.
            #expect(URLText.path(Substring(path)) == path)
            // Foundation takes it without trapping.
            var components = URLComponents()
            components.scheme = "http"
            components.host = "provider.test"
            components.percentEncodedPath = "/" + path
            components.percentEncodedQuery = query
            #expect(components.string != nil)
        }
    }

    @Test func dotSegmentsAreFoundInEverySpelling() {
        for path in ["/a/../b", "/a/./b", "/a/%2e%2E/b", "/a/.%2E", "/a/%2e", "/..", "/a/..%2Fadmin", "/a/%2e%2e%5cadmin", "/a/..\\b"] {
            #expect(URLText.hasDotSegment(path), "\(path)")
        }
        for path in ["/a/...b", "/a/.x/b", "/a/%2e%2e%2e", "/a/b."] {
            #expect(!URLText.hasDotSegment(path), "\(path)")
        }
    }

    @Test func credentialQueryItemsAreRemovedFromLinks() {
        let names: Set<String> = ["api_key"]
        #expect(URLText.removingQueryItems(named: names, from: "https://p.test/o?api_key=s3cret&p=2") == "https://p.test/o?p=2")
        #expect(URLText.removingQueryItems(named: names, from: "https://p.test/o?p=2&api%5Fkey=s3cret#x") == "https://p.test/o?p=2#x")
        #expect(URLText.removingQueryItems(named: names, from: "https://p.test/o?api_key=s3cret") == "https://p.test/o")
        #expect(URLText.removingQueryItems(named: names, from: "https://p.test/o?api_keys=1") == "https://p.test/o?api_keys=1")
        #expect(URLText.removingQueryItems(named: [], from: "https://p.test/o?api_key=1") == "https://p.test/o?api_key=1")
    }

    @Test func userInfoIsRemovedFromLinksAndRefusedInBaseURL() async throws {
        #expect(URLText.removingUserInfo(from: "https://u:p%40ss@p.test/o?x=a@b") == "https://p.test/o?x=a@b")
        #expect(URLText.removingUserInfo(from: "https://u@p.test:8443") == "https://p.test:8443")
        #expect(URLText.removingUserInfo(from: "https://p.test/o/a@b?c=d@e#f@g") == "https://p.test/o/a@b?c=d@e#f@g")
        #expect(URLText.removingUserInfo(from: "/relative/a@b") == "/relative/a@b")
        #expect(URLText.removingUserInfo(from: "//u:p@p.test:x/o") == "//p.test:x/o", "scheme-relative, even unparseable")
        #expect(URLText.removingUserInfo(from: "HTTPS://u@p.test/o") == "HTTPS://p.test/o")
        #expect(URLText.removingUserInfo(from: "https://u:p@p.test\\o@x") == "https://p.test\\o@x", "a backslash ends the authority")
        #expect(URLText.removingUserInfo(from: "a@b@p.test") == "a@b@p.test", "not a URL")
        #expect(URLText.removingUserInfo(from: "ref=s3://acct@bucket/k") == "ref=s3://acct@bucket/k", "a scheme must start the text")
        // Leading and trailing C0 controls and spaces are not part of a URL (WHATWG URL drops them):
        // ` https://user:pw@` once kept its password (found by HostileProviderPropertyTests).
        #expect(URLText.removingUserInfo(from: " https://user:pw@") == "https://")
        #expect(URLText.removingUserInfo(from: "\t\n https://u:p@p.test/o \r\n") == "https://p.test/o")
        #expect(URLText.removingUserInfo(from: "\u{0} //u:p@p.test/o") == "//p.test/o")
        #expect(URLText.trimmingC0ControlOrSpace(" \u{1F}\u{A0}x\u{A0} ") == "\u{A0}x\u{A0}", "only C0 controls and space")
        #expect(URLText.trimmingC0ControlOrSpace(" \t ") == "")
        #expect(ProviderRequest(.GET, "https://u:p@p.test/o?api_key=k#f").shownEndpoint == "https://p.test/o", "logs and errors show no query or user info")
        let pages = ProviderPages(request: ProviderRequest(.GET, "/o"), pagination: Pagination(.link(nextURLPath: "next"), recordsPath: "results")) { _ in
            ProviderResponse(
                status: 200, headers: [("Content-Type", "application/json")],
                body: Array(#"{"results":[{"id":"1"}],"next":"https://me:pw@p.test/o?p=2"}"#.utf8), url: "https://p.test/o")
        }
        var iterator = pages.makeAsyncIterator()
        let page = try #require(try await iterator.next())
        #expect(page.next == "https://p.test/o?p=2", "a link's user:password@ is never kept")
        let yaml = """
            integrations:
              shop:
                base_url: https://admin:hunter2@shop.test/api
                syncs: { orders: { endpoint: /orders, models: [Order] } }
            """
        let error = #expect(throws: ConfigError.self) { try ConfigLoader.parse(yaml: yaml, file: "t.yaml", environment: [:]) }
        #expect(error?.description.contains("t.yaml:3") == true)
        #expect(error?.description.contains("must not hold a 'user:password@'") == true)
        #expect(error?.description.contains("hunter2") == false, "the message never repeats the password")
    }

    @Test func aHugeProviderCursorInACheckpointLiteralFailsItsSaveNotTheProcess() {
        let cursor = String(repeating: "c", count: 5_000)
        let checkpoint: Checkpoint = ["next": .string(cursor)]  // as the README shows it
        #expect(checkpoint["next"]?.stringValue?.count == 5_000)
        let error = #expect(throws: TributaryError.self) { try checkpoint.validated() }
        #expect(error?.code == .invalidCheckpoint)
        #expect(error?.message.contains("\"next\"") == true)
        let fine: Checkpoint = ["next": "abc"]
        #expect(throws: Never.self) { try fine.validated() }
    }
}

extension UInt8 {
    fileprivate var isHex: Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self) || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(self)
            || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(self)
    }
}
