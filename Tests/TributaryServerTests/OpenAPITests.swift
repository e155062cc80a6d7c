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

    @Test func publicRoutesAreMarkedWithoutSecurity() async throws {
        let f = try await ServerFixture()
        let text = try OpenAPIDocument.text()
        for route in f.api.routes where !route.authenticated {
            let section = text.components(separatedBy: "  \(route.path):\n").dropFirst().first ?? ""
            #expect(section.prefix(200).contains("security: []"), "\(route.path) is public but the document requires a key")
        }
    }
}
