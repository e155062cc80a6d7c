import Foundation
import OrdersApp
import Synchronization
import Testing
import Tributary

@Suite("The example application")
struct CatalogSyncTests {
    final class Lines: Sendable {
        let lines = Mutex<[String]>([])
        var output: CLIOutput { CLIOutput { line in self.lines.withLock { $0.append(line) } } }
    }

    @Test func dryrunThroughTheLibraryCLIRunsTheAppsFunctionPerVariant() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("orders-app-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../tributary.yaml").path
        let database = directory.appendingPathComponent("app.sqlite").path

        func dryrun(_ client: InMemoryCatalog, variant: String) async throws -> [String] {
            let lines = Lines()
            try await TributaryCLI.run(
                functions: [CatalogSync(client: client, pageSize: 40)],
                arguments: ["dryrun", "products", "--connection", "acme", "--variant", variant, "--config", config, "--database", database,
                            "--metadata", #"{"spring.catalog": "spring-2027"}"#],
                output: lines.output)
            return lines.lines.withLock { $0 }
        }

        let first = try await dryrun(InMemoryCatalog(count: 100), variant: "spring")
        #expect(first.contains { $0.split(separator: " ").map(String.init) == ["Product", "100", "0", "0", "100"] })
        #expect(first.contains("[info] catalog spring-2027: 3 pages"))

        let second = try await dryrun(InMemoryCatalog(count: 100, removed: [3, 50]), variant: "spring")
        #expect(second.contains { $0.split(separator: " ").map(String.init) == ["Product", "0", "0", "2", "98"] })

        // Another variant of the same connection has its own records.
        let other = try await dryrun(InMemoryCatalog(count: 10), variant: "autumn")
        #expect(other.contains { $0.split(separator: " ").map(String.init) == ["Product", "10", "0", "0", "10"] })
        let store = try SQLiteStore(path: database)
        let page = try await store.changes(
            try ChangeQuery(dataset: DatasetRef(connection: ConnectionRef(environment: "dev", providerConfigKey: "catalogs", connectionId: "acme"), model: "Product", variant: "autumn")))
        #expect(page.records.allSatisfy { $0.id.hasPrefix("autumn-") })
        try store.close()
    }

    @Test func validateSeesTheAppsActionRegistered() async throws {
        let config = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../tributary.yaml").path
        let lines = Lines()
        try await TributaryCLI.run(
            functions: [CatalogSync(client: InMemoryCatalog(count: 1))], actions: [ProductLookup()], arguments: ["validate", "--config", config],
            output: lines.output)
        #expect(lines.lines.withLock { $0 }.contains { $0.hasPrefix("  action product-lookup: function product-lookup,") })
        // Without it, validate names what is missing and fails.
        await #expect(throws: (any Error).self) {
            try await TributaryCLI.run(functions: [CatalogSync(client: InMemoryCatalog(count: 1))], arguments: ["validate", "--config", config], output: Lines().output)
        }
    }
}
