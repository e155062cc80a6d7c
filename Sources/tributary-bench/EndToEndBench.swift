import ArgumentParser
import AsyncHTTPClient
import Foundation
import TributaryCore
import TributaryEngine
import TributaryStore

/// `end-to-end`: a declarative sync (from `tributary.yaml`, no Swift code) of N orders from a local
/// paginated API over HTTP (cursor, 1000 per page) into the cache, then an incremental run after 1%
/// of the orders changed. The provider runs in a child process, so the peak RSS is Tributary's own.
/// With `--variants K`, K variants of the sync run at once, each reading every order into a dataset
/// of its own: the parallel case sync variants are for.
struct EndToEndBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "end-to-end", abstract: "A declarative sync over HTTP into the cache, then an incremental run after 1% changed.")

    @OptionGroup var options: BenchOptions
    @Option(name: .customLong("repeat"), help: "Measure each store this many times (a fresh cache each time); the table shows the median run and the spread.")
    var repetitions = 1
    @Flag(help: "A full-refresh sync with track_deletes instead of an incremental one: the second run reads every order again (1% changed) and detects deletions.")
    var fullRefresh = false
    @Option(help: "Variants of the sync run at once, each reading every order into a dataset of its own (both runs); records/s counts all of them.")
    var variants = 1

    static func configYAML(baseURL: String, pageSize: Int, fullRefresh: Bool = false) -> String {
        let kind = fullRefresh ? "sync_type: full\n        track_deletes: true" : "sync_type: incremental\n        incremental_param: updated_after"
        return """
        environments:
          bench:
            secret_key: \(FeedBench.secretKey)
        integrations:
          shop:
            base_url: \(baseURL)
            syncs:
              orders:
                models: [Order]
                frequency: every hour
                \(kind)
                endpoint: /orders
                pagination: { type: cursor, cursor_path: next_cursor, cursor_param: cursor, limit_param: limit, limit: \(pageSize) }
                records_path: orders
        """
    }

    func run() async throws {
        let stores = try BenchStores(options: options)
        defer { stores.removeFiles() }
        let n = options.records
        var report = BenchReport(
            suite: "end-to-end: declarative \(fullRefresh ? "full-refresh (track_deletes)" : "incremental") sync of \(n) orders over loopback HTTP, pages of \(options.pageSize)"
                + (variants > 1 ? ", \(variants) variants at once" : ""),
            header: ["run", "store", "seconds", "records/s", "spread", "CPU s (Tributary)", "CPU s (provider)", "result"])
        guard repetitions >= 1, repetitions <= 50 else { throw ValidationError("--repeat must be from 1 to 50") }
        guard variants >= 1, variants <= 64 else { throw ValidationError("--variants must be from 1 to 64") }
        let k = variants
        let provider = try ProviderProcess(records: n)
        defer { provider.stop() }
        let config = try ConfigLoader.parse(
            yaml: Self.configYAML(baseURL: provider.baseURL, pageSize: options.pageSize, fullRefresh: fullRefresh), file: "end-to-end.yaml", environment: [:])
        guard let sync = config.integration("shop", in: "bench")?.syncs.first else { throw ValidationError("the bench configuration has no sync") }
        // The provider side alone: every page fetched with a plain HTTP client (no parsing, no store).
        let fetchOnly = try await timed { try await fetchAll(provider, pageSize: options.pageSize) }
        guard fetchOnly.value > n * 300 else { throw ValidationError("the provider served only \(fetchOnly.value) bytes") }
        report.add(["fetch only: every page, plain HTTP client, no parse", "-", seconds(fetchOnly.seconds), "\(rate(n, fetchOnly.seconds))", "", "", "", ""])
        report.figures["fetch_only_s"] = .number(JSONNumber((fetchOnly.seconds * 1000).rounded() / 1000))
        // Where the incremental run's raw limit goes in the table (after SQLite's rows), if measured.
        var rawRowsAt: Int? = nil
        for kind in stores.kinds {
            var fulls: [Measured] = []
            var incrementals: [Measured] = []
            for repetition in 0..<repetitions {
                let (full, incremental) = try await measure(kind, repetition, stores: stores, config: config, sync: sync, provider: provider)
                fulls.append(full)
                incrementals.append(incremental)
            }
            let store = kind.rawValue
            let changed = changedOrders
            let full = Measured.median(fulls)
            let incremental = Measured.median(incrementals)
            let each = k > 1 ? " in each of \(k) variants" : ""
            report.add([
                "full: \(n) orders into an empty cache\(each)", store, seconds(full.seconds), "\(rate(n * k, full.seconds))", Measured.spread(fulls),
                String(format: "%.2f", full.cpu), String(format: "%.2f", full.providerCPU), full.result,
            ])
            report.add([
                (fullRefresh ? "full refresh again: \(changed) changed, deletions tracked" : "incremental: \(changed) changed") + each, store,
                seconds(incremental.seconds), "\(rate((fullRefresh ? n : changed) * k, incremental.seconds))", Measured.spread(incrementals),
                String(format: "%.2f", incremental.cpu), String(format: "%.2f", incremental.providerCPU), incremental.result,
            ])
            report.figure(kind, "full_s", full.seconds)
            report.figure(kind, "full_records_per_s", Double(rate(n * k, full.seconds)))
            report.figure(kind, "incremental_s", incremental.seconds)
            if kind == .sqlite, !fullRefresh, k == 1 { rawRowsAt = report.rows.count }
        }
        // The peak RSS is Tributary's: read before the raw limit, which holds rows of its own.
        let peakRSS = ProcessStats.peakRSSMiB()
        if let rawRowsAt {
            let raw = try await rawIncremental(stores)
            let rows = [
                [
                    "raw limit: the \(raw.rows) changed upserted into a plain table of \(n), one transaction, into the log", "sqlite",
                    seconds(raw.write), "\(rate(raw.rows, raw.write))", "1 run", "", "", "",
                ],
                ["raw limit: … and the log then copied into the file (checkpoint)", "sqlite", seconds(raw.write + raw.copy), "\(rate(raw.rows, raw.write + raw.copy))", "1 run", "", "", ""],
            ]
            report.rows.insert(contentsOf: rows, at: rawRowsAt)
            report.figure(.sqlite, "raw_incremental_write_s", raw.write)
            report.figure(.sqlite, "raw_incremental_copy_s", raw.copy)
        }
        report.notes.append(String(format: "peak RSS of the Tributary process: %.0f MiB (the provider runs in its own process)", peakRSS))
        report.figures["peak_rss_mib"] = .number(JSONNumber(peakRSS.rounded()))
        try report.print(options: options)
    }

    /// One full run into a fresh cache of `kind`, then an incremental run after 1% changed; checks both.
    /// A SQLite file is removed once measured (a million orders take about a gigabyte).
    func measure(
        _ kind: BenchStoreKind, _ repetition: Int, stores: BenchStores, config: TributaryConfig, sync: SyncConfig, provider: ProviderProcess
    ) async throws -> (full: Measured, incremental: Measured) {
        let n = options.records
        let variant = OrdersSync.variant
        let name = repetition == 0 ? "end-to-end" : "end-to-end-\(repetition)"
        defer { if kind == .sqlite, repetition < repetitions - 1 { stores.removeSQLiteFiles(named: name) } }
        let (full, incremental) = try await stores.withStore(kind, name: name) { store, _ in
            let http = OutboundHTTP()
            let providers = ProviderAccess(
                config: config, store: store, cipher: try CredentialCipher(base64Key: Data(repeating: 7, count: 32).base64EncodedString()), http: http,
                logger: stores.logger)
            do {
                _ = try await store.ensureConnection(variant.connection)
                let executor = SyncExecutor(store: store, functions: try SyncFunctionRegistry([]), providers: providers, logger: stores.logger)
                let full = try await Measured.run { try await runVariants(executor, sync: sync) } provider: { provider.cpuSeconds }
                try await change(provider)
                let incremental = try await Measured.run { try await runVariants(executor, sync: sync) } provider: { provider.cpuSeconds }
                try await http.shutdown()
                return (full, incremental)
            } catch {
                try? await http.shutdown()
                throw error
            }
        }
        let changed = changedOrders
        // Both kinds of second run update exactly the changed orders; a full refresh deletes none (none went away).
        for (full, incremental) in zip(full.runs, incremental.runs) {
            guard full.status == .succeeded, full.results["Order"]?.added == n,
                incremental.status == .succeeded, incremental.results["Order"] == ModelResult(updated: changed)
            else {
                throw ValidationError("unexpected results: full \(full.summary), incremental \(incremental.summary)")
            }
        }
        guard full.runs.count == variants, incremental.runs.count == variants else { throw ValidationError("a variant's run is missing") }
        return (full, incremental)
    }

    /// Runs the sync for ``variants`` variants at once (the base variant and `v1`, `v2`, …); their
    /// runs in that order.
    func runVariants(_ executor: SyncExecutor, sync: SyncConfig) async throws -> [RunRecord] {
        let base = OrdersSync.variant
        let refs = [base] + (1..<variants).map { VariantRef(connection: base.connection, syncName: base.syncName, variant: "v\($0)") }
        return try await withThrowingTaskGroup(of: (Int, RunRecord).self) { group in
            for (index, ref) in refs.enumerated() { group.addTask { (index, try await executor.run(ref, sync: sync)) } }
            var runs: [RunRecord?] = Array(repeating: nil, count: refs.count)
            for try await (index, run) in group { runs[index] = run }
            return runs.compactMap { $0 }
        }
    }

    /// The incremental run's raw limit on SQLite: the orders the provider changes, upserted by
    /// ``RawSQLite`` — one prepared statement, one transaction, no change tracking — into a plain
    /// `(id, payload)` table that already holds every order, in a file with the store's settings
    /// (page size, `synchronous`, log file limit), its log file already grown to the size the write
    /// needs, as the store's is by its full run. Timed in two parts: the write into the log (no
    /// automatic checkpoint at its commit), then the checkpoint that copies it into the file — the
    /// store's checkpointer does that beside its writer, during the run and after it.
    func rawIncremental(_ stores: BenchStores) async throws -> (write: Double, copy: Double, rows: Int) {
        let name = "end-to-end-raw"
        defer { stores.removeSQLiteFiles(named: name) }
        let raw = try RawSQLite(path: stores.sqlitePath(named: name))
        do {
            try await raw.create()
            var generator = OrderGenerator()
            func rows(_ positions: some Sequence<Int>) -> [(id: String, payload: String)] {
                positions.map { i in
                    var bytes: [UInt8] = []
                    generator.appendOrder(i, to: &bytes)
                    return ("ord_\(i)", String(decoding: bytes, as: UTF8.self))
                }
            }
            let n = options.records
            _ = try await IngestBench.timedPages(n, options.pageSize) { try await raw.upsert($0) }
            // The table on file, as the store's is once its checkpointer has caught up, and the log
            // file grown by as many other orders as will change (the half-way ones), then copied.
            try await raw.automaticCheckpoint(every: 0)
            try await raw.upsert(rows(stride(from: generator.changeEvery / 2, to: n, by: generator.changeEvery)))
            try await raw.checkpoint()
            generator.revision = 1
            let changed = rows(stride(from: 0, to: n, by: generator.changeEvery))
            let write = try await timed { try await raw.upsert(changed) }.seconds
            let copy = try await timed { try await raw.checkpoint() }.seconds
            try await raw.close()
            return (write, copy, changed.count)
        } catch {
            try? await raw.close()
            throw error
        }
    }

    /// How many orders the provider changes (every `changeEvery`-th of ``BenchOptions/records``).
    var changedOrders: Int {
        let every = OrderGenerator().changeEvery
        return (options.records + every - 1) / every
    }

    /// Reads every page of the provider's listing; returns the bytes read.
    func fetchAll(_ provider: ProviderProcess, pageSize: Int) async throws -> Int {
        var cursor: String? = nil
        var bytes = 0
        repeat {
            let request = HTTPClientRequest(url: provider.baseURL + "/orders?limit=\(pageSize)" + (cursor.map { "&cursor=\($0)" } ?? ""))
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
            let body = try await response.body.collect(upTo: 64 << 20)
            bytes += body.readableBytes
            let tail = Array(body.readableBytesView.suffix(64))
            cursor = tail.firstRange(of: Array(#""next_cursor":""#.utf8)).flatMap { range in
                tail[range.upperBound...].firstIndex(of: UInt8(ascii: "\"")).map { String(decoding: tail[range.upperBound..<$0], as: UTF8.self) }
            }
        } while cursor != nil
        return bytes
    }

    /// Changes 1% of the provider's orders.
    func change(_ provider: ProviderProcess) async throws {
        var request = HTTPClientRequest(url: provider.baseURL + "/change")
        request.method = .POST
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        guard response.status == .noContent else { throw ValidationError("POST /change answered \(response.status)") }
    }
}

/// A run (or runs at once) with its wall time and the CPU time Tributary's process and the provider's used.
struct Measured: Sendable {
    var seconds: Double
    var cpu: Double
    var providerCPU: Double
    /// The first run's (the base variant's) outcome.
    var run: RunRecord { runs[0] }
    var runs: [RunRecord]

    var result: String { run.summary }

    /// The run with the median wall time (of an even count, the slower middle one).
    static func median(_ runs: [Measured]) -> Measured {
        let sorted = runs.sorted { $0.seconds < $1.seconds }
        return sorted[sorted.count / 2]
    }

    /// `min–max s` over `runs` ("-" for one run).
    static func spread(_ runs: [Measured]) -> String {
        guard runs.count > 1, let low = runs.map(\.seconds).min(), let high = runs.map(\.seconds).max() else { return "-" }
        return String(format: "%.2f–%.2f s (%d runs)", low, high, runs.count)
    }

    /// `body`'s runs, at least one.
    static func run(_ body: () async throws -> [RunRecord], provider: () -> Double) async throws -> Measured {
        let cpu = ProcessStats.cpuSeconds()
        let providerCPU = provider()
        let (seconds, runs) = try await timed(body)
        guard !runs.isEmpty else { throw ValidationError("no run was measured") }
        return Measured(seconds: seconds, cpu: ProcessStats.cpuSeconds() - cpu, providerCPU: provider() - providerCPU, runs: runs)
    }
}
