import Foundation
import Testing
import TributaryServer

/// The OpenAPI document and the router describe the same API: a route without documentation, or
/// documentation without a route, fails this test.
@Suite("OpenAPI document")
struct OpenAPITests {
    /// `(METHOD, /path)` pairs of the document, read from its `paths:` section.
    static func documentedOperations(_ text: String) -> Set<String> {
        var operations = Set<String>()
        var inPaths = false
        var currentPath: String? = nil
        let methods: Set<String> = ["get", "post", "put", "patch", "delete"]
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("paths:") { inPaths = true; continue }
            if inPaths, let first = line.first, first != " " { inPaths = false }
            guard inPaths else { continue }
            if line.hasPrefix("  /"), line.hasSuffix(":"), !line.hasPrefix("   ") {
                currentPath = String(line.dropFirst(2).dropLast())
            } else if line.hasPrefix("    "), !line.hasPrefix("     "), let path = currentPath {
                let key = line.trimmingCharacters(in: .whitespaces).dropLast()
                if line.hasSuffix(":"), methods.contains(String(key)) { operations.insert("\(key.uppercased()) \(path)") }
            }
        }
        return operations
    }

    @Test func everyRouteIsDocumentedAndEveryDocumentedRouteExists() async throws {
        let f = try await ServerFixture()
        let routes = Set(f.api.routes.map { "\($0.method.rawValue) \($0.path)" })
        let documented = Self.documentedOperations(try OpenAPIDocument.text())
        #expect(documented.count > 10)
        #expect(routes.subtracting(documented).isEmpty, "routes missing from openapi.yaml: \(routes.subtracting(documented).sorted())")
        #expect(documented.subtracting(routes).isEmpty, "documented but not served: \(documented.subtracting(routes).sorted())")
    }

    /// Each operation's block of the document: its lines, from the method line to the next operation.
    static func operationBlocks(_ text: String) -> [String: String] {
        var blocks: [String: String] = [:]
        var currentPath: String? = nil
        var current: String? = nil
        var inPaths = false
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("paths:") { inPaths = true; continue }
            if inPaths, let first = line.first, first != " " { inPaths = false; current = nil }
            guard inPaths else { continue }
            if line.hasPrefix("  /"), line.hasSuffix(":"), !line.hasPrefix("   ") {
                currentPath = String(line.dropFirst(2).dropLast())
                current = nil
            } else if line.hasPrefix("    "), !line.hasPrefix("     "), let path = currentPath {
                let key = String(line.trimmingCharacters(in: .whitespaces).prefix { $0 != ":" })
                current = ["get", "post", "put", "patch", "delete"].contains(key) ? "\(key.uppercased()) \(path)" : nil
            }
            if let current { blocks[current, default: ""] += line + "\n" }
        }
        return blocks
    }

    /// Every status a route can answer is listed: 400 for bad input and 503 while the database is
    /// unreachable everywhere, 401 where a key is needed, 413 where a body is read. (The live check —
    /// every response against the document — is `scripts/api-fuzz`, run by `.ci/run`.)
    @Test func everyOperationListsTheStatusesEveryRouteCanAnswer() async throws {
        let f = try await ServerFixture()
        let blocks = Self.operationBlocks(try OpenAPIDocument.text())
        for route in f.api.routes where route.path != "/health" && route.path != "/openapi.yaml" {
            let name = "\(route.method.rawValue) \(route.path)"
            let block = try #require(blocks[name], "\(name) is documented")
            var expected = ["400", "503"]
            if route.authenticated { expected.append("401") }
            if block.contains("requestBody") { expected.append("413") }
            for status in expected {
                #expect(block.contains("\"\(status)\":"), "\(name) does not list \(status)")
            }
        }
    }

    @Test func publicRoutesAreMarkedWithoutSecurity() async throws {
        let f = try await ServerFixture()
        let text = try OpenAPIDocument.text()
        for route in f.api.routes where !route.authenticated {
            let section = text.components(separatedBy: "  \(route.path):\n").dropFirst().first ?? ""
            #expect(section.prefix(200).contains("security: []"), "\(route.path) is public but the document requires a key")
        }
    }
}
