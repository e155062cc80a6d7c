#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Foundation
import GRDB
import Logging
import TributaryCore
import TributaryEngine
import TributarySQLite
import TributaryStore

/// `tributary-bench`: release-build benchmarks. Figures go to docs/BENCHMARKS.md.
@main
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tributary-bench", abstract: "Tributary benchmarks (build with -c release).",
        subcommands: [IngestBench.self])
}

/// Peak resident set size of this process, in MiB (VmHWM).
func peakRSSMiB() -> Double {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let kb = Double(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
        return kb / 1024
    }
    return 0
}

func elapsed(_ start: ContinuousClock.Instant) -> Double {
    (ContinuousClock.now - start).inSeconds
}

/// `ingest`: N orders through the real run path, page by page, into an empty variant; then all
/// re-saved unchanged; then with 1% changed; and the raw limit on the same machine.
struct IngestBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingest", abstract: "batchSave throughput: first load, unchanged re-save, 1% changed, raw SQLite limit.")

    @Option var records = 100_000
    @Option var pageSize = 1000
    @Option(help: "Directory for the database files.") var directory = NSTemporaryDirectory()
    @Option(help: "Write the results as JSON here.") var json: String?
    @Flag(help: "Run the sync without deletion tracking (incremental-style saves).") var noTrackDeletes = false

    func run() async throws {
        let dir = URL(fileURLWithPath: directory).appendingPathComponent("tributary-bench-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try SQLiteStore(path: dir.appendingPathComponent("ingest.sqlite").path)
        try await store.migrate()
        var logger = Logger(label: "bench")
        logger.logLevel = .error
        let n = records
        let pageSize = self.pageSize
        let sync = SyncConfig(name: "orders", function: "bench-orders", models: ["Order"], frequency: try Frequency("1h"), trackDeletes: !noTrackDeletes)
        let variant = VariantRef(
            connection: ConnectionRef(environment: "bench", providerConfigKey: "shop", connectionId: "c1"), syncName: "orders")

        func pass(revision: Int) async throws -> (seconds: Double, run: RunRecord) {
            let generator = OrderGenerator(revision: revision)
            let function = ClosureSyncFunction(name: "bench-orders") { nango in
                var start = 0
                while start < n {
                    let bytes = generator.page(from: start, count: min(pageSize, n - start))
                    guard let orders = try JSONParser.parse(bytes)["orders"]?.arrayValue else { return }
                    try await nango.batchSave(orders.compactMap(\.objectValue), model: "Order")
                    start += pageSize
                }
            }
            let executor = SyncExecutor(store: store, functions: try SyncFunctionRegistry([function]), logger: logger)
            let clock = ContinuousClock.now
            let run = try await executor.run(variant, sync: sync)
            return (elapsed(clock), run)
        }

        // Provider side alone: generating and parsing the pages, no Tributary work.
        var clock = ContinuousClock.now
        var parsed = 0
        var start = 0
        while start < n {
            let bytes = OrderGenerator().page(from: start, count: min(pageSize, n - start))
            parsed += try JSONParser.parse(bytes)["orders"]?.arrayValue?.count ?? 0
            start += pageSize
        }
        let generateParse = elapsed(clock)

        // Plus Tributary's CPU side: canonical JSON and content hash per record, no store.
        clock = ContinuousClock.now
        start = 0
        var hashes: UInt64 = 0
        while start < n {
            let bytes = OrderGenerator().page(from: start, count: min(pageSize, n - start))
            for order in try JSONParser.parse(bytes)["orders"]?.arrayValue ?? [] {
                hashes ^= try PreparedRecord(value: order).hash
            }
            start += pageSize
        }
        let prepareSeconds = elapsed(clock)

        let first = try await pass(revision: 0)
        let unchanged = try await pass(revision: 0)
        let changed = try await pass(revision: 1)

        // Raw limit: plain prepared-statement upsert of the same JSON, no change tracking.
        var rawConfiguration = Configuration()
        rawConfiguration.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = NORMAL") }
        let raw = try DatabasePool(path: dir.appendingPathComponent("raw.sqlite").path, configuration: rawConfiguration)
        try await raw.write { db in
            try db.execute(sql: "CREATE TABLE raw_records (id TEXT PRIMARY KEY, payload TEXT NOT NULL)")
        }
        clock = ContinuousClock.now
        start = 0
        while start < n {
            let bytes = OrderGenerator().page(from: start, count: min(pageSize, n - start))
            let orders = try JSONParser.parse(bytes)["orders"]?.arrayValue ?? []
            let rows = orders.map { (($0["id"]?.stringValue) ?? "", JSONWriter.string($0, canonical: false)) }
            try await raw.write { db in
                let statement = try db.cachedStatement(sql: "INSERT OR REPLACE INTO raw_records(id, payload) VALUES (?, ?)")
                for (id, payload) in rows { try statement.execute(arguments: [id, payload]) }
            }
            start += pageSize
        }
        let rawSeconds = elapsed(clock)
        try raw.close()
        try store.close()

        func rate(_ seconds: Double) -> Int { seconds > 0 ? Int(Double(n) / seconds) : 0 }
        let rows: [(String, Double, String)] = [
            ("generate + parse only (provider side)", generateParse, ""),
            ("generate + parse + prepare (canonical+hash)", prepareSeconds, "\(hashes % 10)"),
            ("first load (empty variant)", first.seconds, resultText(first.run)),
            ("re-save, all unchanged", unchanged.seconds, resultText(unchanged.run)),
            ("re-save, 1% changed", changed.seconds, resultText(changed.run)),
            ("raw limit: INSERT OR REPLACE, no tracking", rawSeconds, ""),
        ]
        print("ingest: \(n) records, pages of \(pageSize), SQLite")
        print("pass                                        seconds   records/s   result")
        for (name, seconds, result) in rows {
            print(
                name.padding(toLength: 42, withPad: " ", startingAt: 0)
                    + String(format: "%9.2f %11d   %@", seconds, rate(seconds), result))
        }
        let ratio = rawSeconds > 0 ? Double(rate(first.seconds)) / Double(rate(rawSeconds)) : 0
        print(String(format: "first load / raw limit: %.0f%%   unchanged speed-up over first load: %.1fx   peak RSS: %.0f MiB",
                     ratio * 100, first.seconds / max(unchanged.seconds, 1e-9), peakRSSMiB()))
        if let json {
            let object: JSONObject = [
                "records": .number(JSONNumber(n)), "page_size": .number(JSONNumber(pageSize)),
                "generate_parse_s": .number(JSONNumber(generateParse)), "first_load_s": .number(JSONNumber(first.seconds)),
                "unchanged_s": .number(JSONNumber(unchanged.seconds)), "changed_1pct_s": .number(JSONNumber(changed.seconds)),
                "raw_limit_s": .number(JSONNumber(rawSeconds)), "peak_rss_mib": .number(JSONNumber(peakRSSMiB())),
            ]
            try JSONWriter.string(.object(object), canonical: false).write(toFile: json, atomically: true, encoding: .utf8)
        }
        _ = parsed
    }

    func resultText(_ run: RunRecord) -> String {
        let r = run.results["Order"] ?? ModelResult()
        return "\(run.status.rawValue) +\(r.added) ~\(r.updated) -\(r.deleted)"
    }
}
