import ArgumentParser
import AsyncHTTPClient
import Foundation
import TributaryCore
import TributaryEngine
import TributaryStore

/// `end-to-end`: a declarative sync (from `tributary.yaml`, no Swift code) of N orders from a local
/// paginated API over HTTP (cursor, 1000 per page) into the cache, then an incremental run after 1%
/// of the orders changed. The provider runs in a child process, so the peak RSS is Tributary's own.
struct EndToEndBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "end-to-end", abstract: "A declarative sync over HTTP into the cache, then an incremental run after 1% changed.")

    @OptionGroup var options: BenchOptions

    static func configYAML(baseURL: String, pageSize: Int) -> String {
        """
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
                sync_type: incremental
                endpoint: /orders
                pagination: { type: cursor, cursor_path: next_cursor, cursor_param: cursor, limit_param: limit, limit: \(pageSize) }
                records_path: orders
                incremental_param: updated_after
        """
    }

    func run() async throws {
        let stores = try BenchStores(options: options)
        defer { stores.removeFiles() }
        let n = options.records
        var report = BenchReport(
            suite: "end-to-end: declarative sync of \(n) orders over loopback HTTP, pages of \(options.pageSize)",
            header: ["run", "store", "seconds", "records/s", "CPU s (Tributary)", "CPU s (provider)", "result"])
        let provider = try ProviderProcess(records: n)
        defer { provider.stop() }
        let config = try ConfigLoader.parse(yaml: Self.configYAML(baseURL: provider.baseURL, pageSize: options.pageSize), file: "end-to-end.yaml", environment: [:])
        guard let sync = config.integration("shop", in: "bench")?.syncs.first else { throw ValidationError("the bench configuration has no sync") }
        let variant = OrdersSync.variant
        // The provider side alone: every page fetched with a plain HTTP client (no parsing, no store).
        let fetchOnly = try await timed { try await fetchAll(provider, pageSize: options.pageSize) }
        guard fetchOnly.value > n * 300 else { throw ValidationError("the provider served only \(fetchOnly.value) bytes") }
        report.add(["fetch only: every page, plain HTTP client, no parse", "-", seconds(fetchOnly.seconds), "\(rate(n, fetchOnly.seconds))", "", "", ""])
        report.figures["fetch_only_s"] = .number(JSONNumber((fetchOnly.seconds * 1000).rounded() / 1000))
        for kind in stores.kinds {
            let (full, incremental) = try await stores.withStore(kind, name: "end-to-end") { store, _ in
                let http = OutboundHTTP()
                let providers = ProviderAccess(
                    config: config, store: store, cipher: try CredentialCipher(base64Key: Data(repeating: 7, count: 32).base64EncodedString()), http: http,
                    logger: stores.logger)
                do {
                    _ = try await store.ensureConnection(variant.connection)
                    let executor = SyncExecutor(store: store, functions: try SyncFunctionRegistry([]), providers: providers, logger: stores.logger)
                    let full = try await Measured.run { try await executor.run(variant, sync: sync) } provider: { provider.cpuSeconds }
                    try await change(provider)
                    let incremental = try await Measured.run { try await executor.run(variant, sync: sync) } provider: { provider.cpuSeconds }
                    try await http.shutdown()
                    return (full, incremental)
                } catch {
                    try? await http.shutdown()
                    throw error
                }
            }
            let store = kind.rawValue
            let changed = (n + 99) / 100
            guard full.run.status == .succeeded, full.run.results["Order"]?.added == n,
                incremental.run.status == .succeeded, incremental.run.results["Order"]?.updated == changed
            else {
                throw ValidationError("unexpected results: full \(full.result), incremental \(incremental.result)")
            }
            report.add([
                "full: \(n) orders into an empty cache", store, seconds(full.seconds), "\(rate(n, full.seconds))",
                String(format: "%.2f", full.cpu), String(format: "%.2f", full.providerCPU), full.result,
            ])
            report.add([
                "incremental: \(changed) changed", store, seconds(incremental.seconds), "\(rate(changed, incremental.seconds))",
                String(format: "%.2f", incremental.cpu), String(format: "%.2f", incremental.providerCPU), incremental.result,
            ])
            report.figure(kind, "full_s", full.seconds)
            report.figure(kind, "full_records_per_s", Double(rate(n, full.seconds)))
            report.figure(kind, "incremental_s", incremental.seconds)
        }
        report.notes.append(String(format: "peak RSS of the Tributary process: %.0f MiB (the provider runs in its own process)", ProcessStats.peakRSSMiB()))
        report.figures["peak_rss_mib"] = .number(JSONNumber(ProcessStats.peakRSSMiB().rounded()))
        try report.print(options: options)
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

/// A run with its wall time and the CPU time Tributary's process and the provider's used.
struct Measured: Sendable {
    var seconds: Double
    var cpu: Double
    var providerCPU: Double
    var run: RunRecord

    var result: String { run.summary }

    static func run(_ body: () async throws -> RunRecord, provider: () -> Double) async throws -> Measured {
        let cpu = ProcessStats.cpuSeconds()
        let providerCPU = provider()
        let (seconds, run) = try await timed(body)
        return Measured(seconds: seconds, cpu: ProcessStats.cpuSeconds() - cpu, providerCPU: provider() - providerCPU, run: run)
    }
}
