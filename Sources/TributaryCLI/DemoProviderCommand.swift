#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import ArgumentParser
import Logging
import ServiceLifecycle
import TributaryCore
import TributaryDemo

/// `tributary demo-provider`: the demo shop API alone, for `tributary serve` with the built-in demo
/// configuration (which calls it at `TRIBUTARY_DEMO_PROVIDER_URL`, default http://127.0.0.1:3010).
struct DemoProviderCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo-provider",
        abstract: "Serve the demo shop API (stores, orders, cursor pages, updated_after, API-key auth, an occasional 429) on loopback.")

    @Option(name: .long, help: "Listen on this port.")
    var port: Int = DemoConfiguration.providerPort

    @Option(name: .long, help: "Listen on this address.")
    var host: String = "127.0.0.1"

    @Option(name: .long, help: "The API key clients must send in X-Api-Key.")
    var apiKey: String = DemoShopAPI.defaultAPIKey

    @Option(name: .long, help: "Answer every N-th request with 429 and Retry-After: 1 (0: never).")
    var rateLimitEvery: Int = 17

    @Option(name: .long, help: "Serve the shop as it was at this ISO 8601 time, unchanging (default: the shop lives on).")
    var frozenAt: String?

    @Option(name: .long, help: "Milliseconds each order list page takes to answer (a slow API).")
    var pageDelayMs: Int = 0

    func validate() throws {
        if let frozenAt, Timestamp(iso8601: frozenAt) == nil { throw ValidationError("--frozen-at must be an ISO 8601 time, e.g. 2026-11-01T00:00:00Z.") }
        guard (0...60_000).contains(pageDelayMs) else { throw ValidationError("--page-delay-ms must be from 0 to 60000.") }
        guard rateLimitEvery >= 0 else { throw ValidationError("--rate-limit-every must not be negative.") }
        guard !apiKey.isEmpty else { throw ValidationError("--api-key must not be empty.") }
    }

    func run() async throws {
        var logger = Logger(label: "tributary.demo-shop")
        logger.logLevel = .warning
        let frozen = frozenAt.flatMap(Timestamp.init(iso8601:))?.date
        let api = DemoShopAPI(
            apiKey: apiKey, rateLimitEvery: rateLimitEvery, pageDelay: .milliseconds(pageDelayMs), now: { frozen ?? Date() })
        CLIContext.current.output.line(
            "Demo shop API on http://\(host):\(port) — GET /stores/{store}/orders?limit=&cursor=&updated_after= with header \(DemoShopAPI.apiKeyHeader)")
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [api.application(host: host, port: port, logger: logger)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.runExplainingPorts([(port, "--port")])
    }
}
