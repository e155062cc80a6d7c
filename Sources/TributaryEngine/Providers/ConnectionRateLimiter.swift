/// Spaces provider calls of each connection at least `1 / rate` seconds apart (a per-connection
/// limit; connections never wait for each other).
actor ConnectionRateLimiter {
    private var nextFree: [ConnectionRef: ContinuousClock.Instant] = [:]

    /// Waits for the connection's next free slot and takes it.
    func acquire(_ connection: ConnectionRef, perSecond rate: Double) async throws {
        let now = ContinuousClock.now
        let slot = max(now, nextFree[connection] ?? now)
        nextFree[connection] = slot + .milliseconds(Int64(1000 / rate))
        if slot > now { try await Task.sleep(until: slot, clock: .continuous) }
    }
}

import TributaryCore
