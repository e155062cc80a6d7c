import Foundation
import Hummingbird
import Logging
import NIOCore
import Synchronization
import TributaryCore
import TributaryDemo

/// The provider of a chaos run: the demo shop API on a loopback port with a clock that runs `speed`
/// times faster than real time (stores get new orders, orders change status and drop out of the
/// listing all through the run), and that can be frozen at the end so the truth is fixed.
final class ChaosProvider: Sendable {
    struct Clock {
        var realStart: Date
        var shopStart: Date
        var speed: Double
        var frozenAt: Date?
    }
    private let clock: Mutex<Clock>

    init(speed: Double, start: Date = Date(timeIntervalSince1970: 1_790_000_000)) {
        clock = Mutex(Clock(realStart: Date(), shopStart: start, speed: speed, frozenAt: nil))
    }

    /// The shop's time now.
    var now: Date {
        clock.withLock { c in c.frozenAt ?? c.shopStart.addingTimeInterval(Date().timeIntervalSince(c.realStart) * c.speed) }
    }

    /// The shop's time at a real moment (after the freeze: the frozen time).
    func shopTime(at real: Date) -> Date {
        clock.withLock { c in
            let time = c.shopStart.addingTimeInterval(real.timeIntervalSince(c.realStart) * c.speed)
            guard let frozen = c.frozenAt else { return time }
            return min(time, frozen)
        }
    }

    /// Stops the shop's clock: from now on its data no longer changes.
    @discardableResult
    func freeze() -> Date {
        clock.withLock { c in
            let now = c.shopStart.addingTimeInterval(Date().timeIntervalSince(c.realStart) * c.speed)
            c.frozenAt = now
            return now
        }
    }

    /// Serves the API until cancelled; `onPort` is called with the bound port.
    func serve(apiKey: String, pageDelay: Duration, logger: Logger, onPort: @escaping @Sendable (Int) -> Void) async throws {
        let api = DemoShopAPI(apiKey: apiKey, rateLimitEvery: 0, pageDelay: pageDelay, now: { self.now })
        let app = Application(
            router: api.router(), configuration: ApplicationConfiguration(address: .hostname("127.0.0.1", port: 0), serverName: "chaos-shop"),
            onServerRunning: { channel in onPort(channel.localAddress?.port ?? 0) }, logger: logger)
        try await app.runService()
    }
}
