import Logging
import Synchronization
import Testing
import TributaryCore
@testable import TributaryPostgres
import TributaryStore
import TributaryTestSupport

/// A PostgreSQL store call waits for a pooled connection at most the store's operation timeout,
/// watched by the store's own loop (``ConnectionWaits``); once connected it is not timed.
@Suite("PostgreSQL connection waits")
struct PostgresConnectionWaitTests {
    @Test func aWaitIsExpiredAtItsDeadlineOnlyAndOnce() {
        let waits = ConnectionWaits()
        let start = ContinuousClock.now
        let cancelled = Counter()
        let early = ConnectionWaits.Wait(deadline: start + .seconds(1)) { cancelled.add() }
        let late = ConnectionWaits.Wait(deadline: start + .seconds(5)) { cancelled.add() }
        let gone = ConnectionWaits.Wait(deadline: start) { cancelled.add() }
        _ = waits.add(early)
        _ = waits.add(late)
        waits.remove(waits.add(gone))
        #expect(waits.expire(now: start + .milliseconds(999)) == 0)
        #expect(waits.expire(now: start + .seconds(1)) == 1)
        #expect(early.timedOut && !late.timedOut && !gone.timedOut)
        #expect(waits.expire(now: start + .seconds(2)) == 0, "expired once")
        #expect(cancelled.value == 1 && waits.count == 1)
    }

    /// One pooled connection, held by a call that runs longer than the timeout: that call is not cut
    /// off, and a second call that gets no connection fails with `store_unavailable` — no hang.
    @Test func aCallWithoutAConnectionFailsAtTheTimeoutAndAConnectedOneRunsOn() async throws {
        guard StoreKind.available.contains(.postgres) else { return }
        let f = try await TestStore(.postgres)
        let logger = {
            var logger = Logger(label: "tests")
            logger.logLevel = .critical
            return logger
        }()
        let store = PostgresStore(url: try PostgresURL(f.location), maximumConnections: 1, operationTimeout: .seconds(1), logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await store.run() }
            defer { group.cancelAll() }
            let holder = Task {
                try await store.read { db in _ = try await db.query("SELECT pg_sleep(2.5)", logger: logger) }
            }
            // Let the holder take the only connection.
            try await Task.sleep(for: .milliseconds(500))
            let began = ContinuousClock.now
            let error = await #expect(throws: TributaryError.self) { try await store.read { db in _ = try await db.query("SELECT 1", logger: logger) } }
            #expect(error?.code == .storeUnavailable)
            #expect(error?.message.contains("No database connection within") == true)
            #expect(ContinuousClock.now - began < .seconds(1.9), "failed at the timeout, not when the holder let go")
            try await holder.value
            #expect(store.waits.count == 0)
        }
    }
}

private final class Counter: Sendable {
    private let count = Mutex(0)
    func add() { count.withLock { $0 += 1 } }
    var value: Int { count.withLock { $0 } }
}
