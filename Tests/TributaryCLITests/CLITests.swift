import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Synchronization
import Testing
import TributaryTestSupport
import TributaryCLI
import TributaryDemo
import TributaryCore
import TributarySQLite
import TributaryStore

final class Lines: Sendable {
    private let lines = Mutex<[String]>([])
    var output: CLIOutput { CLIOutput { line in self.lines.withLock { $0.append(line) } } }
    var all: [String] { lines.withLock { $0 } }
    var text: String { all.joined(separator: "\n") }
}

@Suite("Command line")
struct CLITests {
    let directory: URL

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    func writeConfig(_ text: String) throws -> String {
        let file = path("tributary.yaml")
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        return file
    }

    static let config = """
        environments:
          dev:
            secret_key: dev-key-0123456789abcdef
        integrations:
          shop:
            syncs:
              items:
                function: numbers
                models: [Item]
                frequency: 1h
                sync_type: full
                track_deletes: true
        """

    /// A user function: saves `metadata["<variant>.count"]` items (default 3).
    static let numbers = ClosureSyncFunction(name: "numbers") { nango in
        let count = try await nango.getMetadata()["\(nango.variant).count"]?.int64Value ?? 3
        try await nango.batchSave((0..<count).map { ["id": .string("i\($0)"), "variant": .string(nango.variant)] }, model: "Item")
        await nango.log("saved \(count) items")
    }

    @Test func dryrunRunsAUserFunctionAndPrintsPerModelResults() async throws {
        let config = try writeConfig(Self.config)
        let database = path("dev.sqlite")
        let lines = Lines()
        try await TributaryCLI.run(
            functions: [Self.numbers],
            arguments: ["dryrun", "items", "--connection", "c1", "--variant", "eu", "--config", config, "--database", database,
                        "--metadata", #"{"eu.count": 5}"#],
            output: lines.output)
        #expect(lines.text.contains("run 1 of items::eu on c1: succeeded"))
        #expect(lines.all.contains { $0.hasPrefix("Item") && $0.contains(" 5 ") })
        #expect(lines.text.contains("[info] saved 5 items"))
        // Second dryrun with fewer items: full refresh deletes what vanished.
        let again = Lines()
        try await TributaryCLI.run(
            functions: [Self.numbers],
            arguments: ["dryrun", "items", "--connection", "c1", "--variant", "eu", "--config", config, "--database", database,
                        "--metadata", #"{"eu.count": 2}"#],
            output: again.output)
        let row = try #require(again.all.first { $0.hasPrefix("Item") })
        #expect(row.split(separator: " ").map(String.init) == ["Item", "0", "0", "3", "2"])
        // The records are in the SQLite file, in the eu variant only.
        let store = try SQLiteStore(path: database)
        let ref = VariantRef(connection: ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "c1"), syncName: "items", variant: "eu")
        #expect(try await store.recordCounts(of: ref) == ["Item": 2])
        #expect(try await store.recordCounts(of: VariantRef(connection: ref.connection, syncName: "items")) == [:])
        try store.close()
    }

    @Test func backupCopiesTheStoreAndRefusesToOverwriteOrPostgres() async throws {
        let config = try writeConfig(Self.config)
        let database = path("live.sqlite")
        try await TributaryCLI.run(
            functions: [Self.numbers], arguments: ["dryrun", "items", "--connection", "c1", "--config", config, "--database", database], output: Lines().output)
        let lines = Lines()
        try await TributaryCLI.run(
            functions: [Self.numbers], arguments: ["backup", "--to", path("copy.sqlite"), "--config", config, "--database", database], output: lines.output)
        #expect(lines.text.contains("integrity ok"))
        #expect(lines.text.contains("records 3"), "\(lines.text)")
        let copy = try SQLiteStore(path: path("copy.sqlite"))
        let ref = VariantRef(connection: ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "c1"), syncName: "items")
        #expect(try await copy.recordCounts(of: ref) == ["Item": 3])
        try copy.close()
        for (arguments, mention) in [
            (["--to", path("copy.sqlite"), "--database", database], "already exists"),
            (["--to", path("other.sqlite"), "--database", "postgres://u:p@127.0.0.1:1/x"], "pg_dump"),
            (["--to", path("other.sqlite"), "--database", path("missing.sqlite")], "no SQLite store"),
        ] {
            await #expect {
                try await TributaryCLI.run(functions: [Self.numbers], arguments: ["backup", "--config", config] + arguments, output: Lines().output)
            } throws: { error in
                "\(error)".contains(mention)
            }
        }
        #expect(!FileManager.default.fileExists(atPath: path("other.sqlite")))
    }

    /// A configuration that asks for tracing, in a binary built without a span exporter, is refused
    /// before anything starts (no port is opened, no database created); with an exporter that cannot
    /// start, the exporter's reason is given.
    @Test func serveRefusesTracingWithoutAnExporter() async throws {
        let config = try writeConfig("tracing:\n  enabled: true\n" + Self.config)
        let database = path("traced.sqlite")
        let arguments = ["serve", "--config", config, "--database", database, "--port", "0", "--insecure-dev-key"]
        await #expect {
            try await TributaryCLI.run(functions: [Self.numbers], arguments: arguments, output: Lines().output)
        } throws: { error in
            "\(error)".contains("this binary has no span exporter") && "\(error)".contains("TributaryTracing")
        }
        struct Unusable: Error, CustomStringConvertible { var description: String { "the collector's certificate cannot be read" } }
        await #expect {
            try await TributaryCLI.run(functions: [Self.numbers], arguments: arguments, output: Lines().output, tracing: { _, _ in throw Unusable() })
        } throws: { error in
            "\(error)".contains("Cannot start tracing: the collector's certificate cannot be read")
        }
        await #expect {
            try await TributaryCLI.run(
                functions: [Self.numbers], arguments: ["serve", "--config", try writeConfig("tracing:\n  enabled: true\n  protocol: http/json\n" + Self.config)]
                    + arguments.dropFirst(3), output: Lines().output, tracing: { settings, _ in
                        #expect(settings.wireProtocol == .httpJSON && settings.endpoint == TracingSettings.defaultEndpoint)
                        throw Unusable()
                    })
        } throws: { error in
            "\(error)".contains("Cannot start tracing")
        }
        #expect(!FileManager.default.fileExists(atPath: database), "nothing was opened")
    }

    @Test func dryrunOfAFailingFunctionExitsNonZero() async throws {
        let config = try writeConfig(Self.config)
        let failing = ClosureSyncFunction(name: "numbers") { _ in throw TributaryError(.invalidRecord, "upstream returned garbage") }
        let lines = Lines()
        await #expect(throws: (any Error).self) {
            try await TributaryCLI.run(
                functions: [failing], arguments: ["dryrun", "items", "--connection", "c1", "--config", config, "--database", path("x.sqlite")],
                output: lines.output)
        }
        #expect(lines.text.contains("failed"))
        #expect(lines.text.contains("error: upstream returned garbage"))
    }

    @Test func dryrunNamesUnknownSyncs() async throws {
        let config = try writeConfig(Self.config)
        await #expect(throws: (any Error).self) {
            try await TributaryCLI.run(
                functions: [Self.numbers], arguments: ["dryrun", "nope", "--connection", "c1", "--config", config, "--database", path("x.sqlite")],
                output: Lines().output)
        }
    }

    /// The public development key is for a local SQLite file: against PostgreSQL, dryrun refuses it
    /// before it touches the database (this URL points at nothing, so it is never contacted).
    @Test func dryrunRefusesTheDevelopmentKeyOnPostgres() async throws {
        guard ProcessInfo.processInfo.environment["TRIBUTARY_ENCRYPTION_KEY"] == nil else { return }
        let config = try writeConfig(Self.config)
        let error = await #expect(throws: (any Error).self) {
            try await TributaryCLI.run(
                functions: [Self.numbers],
                arguments: ["dryrun", "items", "--connection", "c1", "--config", config, "--database", "postgres://nobody@127.0.0.1:1/none"],
                output: Lines().output)
        }
        #expect("\(error.map { "\($0)" } ?? "")".contains("--insecure-dev-key"))
    }

    @Test func validateReportsFileLineAndColumn() async throws {
        let config = try writeConfig(Self.config.replacingOccurrences(of: "frequency: 1h", with: "frequency: 1 lightyear"))
        let lines = Lines()
        await #expect(throws: (any Error).self) {
            try await TributaryCLI.run(functions: [Self.numbers], arguments: ["validate", "--config", config], output: lines.output)
        }
        #expect(lines.text.contains("\(config):10:"))
        #expect(lines.text.contains("not understood"))
        let ok = Lines()
        try await TributaryCLI.run(functions: [Self.numbers], arguments: ["validate", "--config", try writeConfig(Self.config)], output: ok.output)
        #expect(ok.text.contains("is valid"))
        // A declarative full refresh with deletion tracking and page-number pagination: validate says
        // it reads to the empty page (a short page never ends a listing that drives deletes).
        let paged = """
            environments:
              dev: { secret_key: dev-key-0123456789abcdef }
            integrations:
              shop:
                base_url: https://api.example.com
                syncs:
                  pages:
                    models: [Page]
                    frequency: 1h
                    sync_type: full
                    track_deletes: true
                    endpoint: /pages
                    pagination: { type: page, page_param: page, limit_param: per_page, limit: 100 }
                    records_path: items
            """
        let notes = Lines()
        try await TributaryCLI.run(functions: [Self.numbers], arguments: ["validate", "--config", try writeConfig(paged)], output: notes.output)
        #expect(notes.text.contains("sync pages:"), "\(notes.text)")
        #expect(notes.text.contains("pages until an empty page"), "\(notes.text)")
        #expect(!ok.text.contains("pages until an empty page"), "not for function syncs")
    }

    @Test func dryrunOfADeclarativeSyncCallsTheProviderWithCredentialsGivenOnTheCommandLine() async throws {
        var logger = Logger(label: "shop")
        logger.logLevel = .critical
        let directory = self.directory
        // A frozen shop: a live one can list a new order while paging (121 records across the pages).
        let frozen = Date(timeIntervalSince1970: 1_793_491_200)
        try await DemoShopAPI(rateLimitEvery: 0, now: { frozen }).application(port: 0, logger: logger).test(.live) { client in
            let file = directory.appendingPathComponent("tributary.yaml").path
            try DemoConfiguration.yaml.replacingOccurrences(of: "${TRIBUTARY_DEMO_PROVIDER_URL:-http://127.0.0.1:3010}", with: "http://127.0.0.1:\(client.port!)")
                .write(toFile: file, atomically: true, encoding: .utf8)
            let arguments = ["dryrun", "orders", "--connection", "c1", "--variant", "store-eu", "--config", file, "--database", directory.appendingPathComponent("d.sqlite").path]

            let withoutKey = Lines()
            await #expect(throws: (any Error).self) { try await TributaryCLI.run(functions: [], arguments: arguments, output: withoutKey.output) }
            #expect(withoutKey.text.contains("no 'api_key'"), "\(withoutKey.text)")

            await #expect(throws: (any Error).self) {
                try await TributaryCLI.run(functions: [], arguments: arguments + ["--credentials", #"{"type":"BASIC","username":"u","password":"p"}"#], output: Lines().output)
            }

            let withKey = Lines()
            try await TributaryCLI.run(
                functions: [], arguments: arguments + ["--credentials", #"{"type":"API_KEY","api_key":"demo-shop-key"}"#], output: withKey.output)
            #expect(withKey.text.contains("succeeded"))
            #expect(withKey.all.contains { $0.hasPrefix("Order ") && $0.contains(" 120") }, "\(withKey.text)")
            #expect(!withKey.text.contains("demo-shop-key"), "the key is not echoed")
        }
    }

    @Test func demoStartsTheShopAndTributaryAndSyncsEveryVariantOverHTTP() async throws {
        let database = path("demo.sqlite")
        let lines = Lines()
        let port = try childProcessPorts(2)[0]
        try await TributaryCLI.run(
            functions: [],
            arguments: ["demo", "--duration", "10", "--database", database, "--port", "\(port)", "--provider-port", "\(port + 1)"],
            output: lines.output)
        for sync in ["orders", "order-changes"] {
            for variant in ["base", "store-eu", "store-us"] {
                let line = lines.all.first { $0.contains(" \(sync)::\(variant) ") }
                #expect(line?.contains("succeeded  INITIAL") == true, "\(sync)::\(variant): \(line ?? "no run")")
                #expect(line?.contains(sync == "orders" ? " Order +" : " OrderChange +") == true, "\(line ?? "")")
            }
        }
        #expect(lines.text.contains("curl -s -H 'Authorization: Bearer dev-secret-key-change-me' -H 'Connection-Id: demo-connection'"))
        #expect(lines.text.contains("http://127.0.0.1:\(port)/records?model=Order&variant=store-eu"))
        let records = Lines()
        try await TributaryCLI.run(
            functions: [],
            arguments: ["records", "--database", database, "--integration", "demo-shop", "--connection", "demo-connection", "--model", "Order",
                        "--variant", "store-us", "--limit", "3"],
            output: records.output)
        let json = records.all.filter { $0.hasPrefix("{") }
        #expect(json.count == 3)
        #expect(try JSONParser.parse(json[0])["store"] == "store-us")
        #expect(records.all.last?.hasPrefix("next_cursor: ") == true)
    }
}
