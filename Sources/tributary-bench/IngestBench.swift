import ArgumentParser
import TributaryCore
import TributaryEngine
import TributaryStore

/// `ingest`: N orders through the real run path, page by page, into an empty variant; then all
/// re-saved unchanged; then with 1% changed; and the raw limit on the same machine and database kind.
struct IngestBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingest", abstract: "batchSave throughput: first load, unchanged re-save, 1% changed, against a raw bulk upsert.")

    @OptionGroup var options: BenchOptions
    @Flag(help: "Run the sync without deletion tracking (incremental-style saves).") var noTrackDeletes = false

    func run() async throws {
        let stores = try BenchStores(options: options)
        defer { stores.removeFiles() }
        let n = options.records
        let pageSize = options.pageSize
        var report = BenchReport(
            suite: "ingest: \(n) orders, pages of \(pageSize), track_deletes \(!noTrackDeletes)",
            header: ["pass", "store", "run s", "save s", "saved/s", "vs raw", "result"])

        // The provider side alone (generate + parse).
        let parse = try await timed { () -> Int in
            var count = 0
            for start in stride(from: 0, to: n, by: pageSize) {
                count += try JSONParser.parse(OrderGenerator().page(from: start, count: min(pageSize, n - start)))["orders"]?.arrayValue?.count ?? 0
            }
            return count
        }
        report.add(["generate + parse pages (provider side)", "-", seconds(parse.seconds), "", "", "", ""])
        report.figure("client", "generate_parse_s", parse.seconds)
        // Tributary's own CPU work on a page before the store, on one core with the page in cache
        // (this machine's speed drifts too much for a difference of two timings).
        let client = try await Self.clientWork(pageSize: min(pageSize, n))
        let pages = Double((n + pageSize - 1) / pageSize)
        report.add(["  canonical JSON + hash, one core (median page)", "-", seconds(client.prepare * pages), "", "\(rate(n, client.prepare * pages))", "", ""])
        report.add(["  one record per id (median page)", "-", seconds(client.dedupe * pages), "", "\(rate(n, client.dedupe * pages))", "", ""])
        report.figure("client", "prepare_page_us", client.prepare * 1e6)
        report.figure("client", "dedupe_page_us", client.dedupe * 1e6)

        for kind in stores.kinds {
            let trackDeletes = !noTrackDeletes
            let (first, unchanged, changed, raw, copy) = try await stores.withStore(kind, name: "ingest") { store, location in
                let sync = OrdersSync(store: store, records: n, pageSize: pageSize, trackDeletes: trackDeletes, logger: stores.logger)
                let first = try await sync.run(OrderGenerator())
                let unchanged = try await sync.run(OrderGenerator())
                let changed = try await sync.run(OrderGenerator(revision: 1))
                // Raw limit: the same pages parsed and upserted as (id, payload), no change tracking;
                // its save time is serialising the records plus the upserts (like batchSave's).
                let limit = try await stores.rawLimit(location)
                try await limit.create()
                let raw = try await Self.timedPages(n, pageSize) { try await limit.upsert($0) }
                // PostgreSQL's fastest write: the same pages with COPY into an empty table.
                var copy: Double?
                if let postgres = limit as? RawPostgres {
                    try await postgres.createCopyTable()
                    copy = try await Self.timedPages(n, pageSize) { try await postgres.copy($0) }
                }
                try await limit.close()
                return (first, unchanged, changed, raw, copy)
            }
            let store = kind.rawValue
            for (name, pass) in [("first load (empty variant)", first), ("re-save, all unchanged", unchanged), ("re-save, 1% changed", changed)] {
                report.add([name, store, seconds(pass.seconds), seconds(pass.saveSeconds), "\(rate(n, pass.saveSeconds))", percent(raw, of: pass.saveSeconds), pass.result])
            }
            report.add(["raw limit: bulk upsert, no tracking", store, "", seconds(raw), "\(rate(n, raw))", "100%", ""])
            if let copy {
                report.add(["raw limit: COPY into an empty table", store, "", seconds(copy), "\(rate(n, copy))", percent(raw, of: copy), ""])
                report.notes.append(String(format: "%@: first save at %@ of COPY's records/s", store, percent(copy, of: first.saveSeconds)))
                report.figure(kind, "copy_limit_save_s", copy)
                report.figure(kind, "first_save_vs_copy", copy / first.saveSeconds)
            }
            report.notes.append(
                String(format: "%@: first save at %@ of the raw limit's records/s; unchanged re-save %.1fx faster than the first, 1%% changed %.1fx (batchSave time)",
                       store, percent(raw, of: first.saveSeconds), first.saveSeconds / max(unchanged.saveSeconds, 1e-9),
                       first.saveSeconds / max(changed.saveSeconds, 1e-9)))
            report.figure(kind, "first_load_run_s", first.seconds)
            report.figure(kind, "first_load_save_s", first.saveSeconds)
            report.figure(kind, "unchanged_run_s", unchanged.seconds)
            report.figure(kind, "unchanged_save_s", unchanged.saveSeconds)
            report.figure(kind, "changed_1pct_run_s", changed.seconds)
            report.figure(kind, "changed_1pct_save_s", changed.saveSeconds)
            report.figure(kind, "raw_limit_save_s", raw)
            report.figure(kind, "first_save_vs_raw", raw / first.saveSeconds)
            report.figure(kind, "unchanged_speedup", first.saveSeconds / max(unchanged.saveSeconds, 1e-9))
            report.figure(kind, "changed_1pct_speedup", first.saveSeconds / max(changed.saveSeconds, 1e-9))
        }
        report.notes.append(String(format: "peak RSS (whole process): %.0f MiB", ProcessStats.peakRSSMiB()))
        report.figures["peak_rss_mib"] = .number(JSONNumber(ProcessStats.peakRSSMiB().rounded()))
        try report.print(options: options)
    }

    /// The median seconds, over 200 repetitions, that one page of orders (parsed once, so in cache)
    /// takes to prepare on one core — canonical JSON and a hash per record, as `batchSave` does
    /// before the store (whose pages use the machine's cores, and meet the page fresh from the
    /// parser rather than in cache) — and then to keep one record per id, as every store does first.
    static func clientWork(pageSize: Int) async throws -> (prepare: Double, dedupe: Double) {
        let page = (try JSONParser.parse(OrderGenerator().page(from: 0, count: pageSize))["orders"]?.arrayValue ?? []).compactMap(\.objectValue)
        var prepared: [PreparedRecord] = []
        var prepare: [Double] = []
        var dedupe: [Double] = []
        for _ in 0..<200 {
            try Task.checkCancellation()
            prepare.append(try await timed { prepared = try await PreparedRecord.preparing(page, parts: 1) }.seconds)
            dedupe.append(await timed { withExtendedLifetime(prepared.lastOccurrencePerId) {} }.seconds)
        }
        return (prepare.sorted()[prepare.count / 2], dedupe.sorted()[dedupe.count / 2])
    }

    /// Seconds spent in `write` over N orders' pages parsed as the provider sends them, each
    /// serialised as `(id, payload)` inside the timing (as `batchSave` serialises its records) and
    /// freed after it.
    static func timedPages(_ n: Int, _ pageSize: Int, _ write: ([(id: String, payload: String)]) async throws -> Void) async throws -> Double {
        var total = Duration.zero
        for start in stride(from: 0, to: n, by: pageSize) {
            let orders = try JSONParser.parse(OrderGenerator().page(from: start, count: min(pageSize, n - start)))["orders"]?.arrayValue ?? []
            let before = ContinuousClock.now
            try await write(orders.map { (id: $0["id"]?.stringValue ?? "", payload: JSONWriter.string($0, canonical: false)) })
            total += ContinuousClock.now - before
            // Freed after the timing, as the sync's pages are (OrdersSync).
            withExtendedLifetime(orders) {}
        }
        return total.inSeconds
    }
}
