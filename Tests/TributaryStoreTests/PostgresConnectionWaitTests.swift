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
        let logger = Self.logger
        try await withStore(maximumConnections: 1, operationTimeout: .seconds(1)) { store in
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

    /// A caller cancelled while its transaction runs waits for it the grace at most, then sees the
    /// cancellation; the transaction is not cut off (its body never sees the cancellation): it
    /// commits on its own afterwards.
    @Test func aCancelledCallerStopsWaitingAfterTheGraceAndItsTransactionStillCommits() async throws {
        try await withStore(maximumConnections: 2) { store in
            try await store.read { db in _ = try await db.query("CREATE TABLE grace_marks (mark INT)", logger: Self.logger) }
            let caller = Task {
                try await store.transaction { db in
                    _ = try await db.query("SELECT pg_sleep(5)", logger: Self.logger)
                    // The body itself is never cancelled once connected.
                    try Task.checkCancellation()
                    _ = try await db.query("INSERT INTO grace_marks VALUES (1)", logger: Self.logger)
                }
            }
            try await Task.sleep(for: .milliseconds(500))
            let cancelled = ContinuousClock.now
            caller.cancel()
            await #expect(throws: CancellationError.self) { try await caller.value }
            let waited = ContinuousClock.now - cancelled
            #expect(waited >= .seconds(1.9), "waited the grace (\(waited)), not given up at once")
            #expect(waited < .seconds(4), "given up after the grace (\(waited)), not when the transaction ended")
            #expect(try await Self.marks(store) == [], "not committed yet when the caller gave up")
            // The transaction goes on alone and commits (it ends ~4.5 s after the cancellation).
            let deadline = ContinuousClock.now + .seconds(15)
            while try await Self.marks(store) != [1], ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(200)) }
            #expect(try await Self.marks(store) == [1])
            #expect(store.waits.count == 0)
        }
    }

    /// A caller cancelled while its call runs, which ends within the grace, gets the call's answer.
    @Test func aCancelledCallerWhoseCallEndsWithinTheGraceGetsItsAnswer() async throws {
        try await withStore(maximumConnections: 2) { store in
            // A connection made first: the cancellation below comes while the call runs, not while it connects.
            try await store.read { db in _ = try await db.query("SELECT 1", logger: Self.logger) }
            let caller = Task {
                try await store.read { db in
                    _ = try await db.query("SELECT pg_sleep(0.6)", logger: Self.logger)
                    try Task.checkCancellation()
                    return 42
                }
            }
            try await Task.sleep(for: .milliseconds(200))
            caller.cancel()
            #expect(try await caller.value == 42)
            #expect(store.waits.count == 0)
        }
    }

    /// A caller cancelled before it calls asks for nothing: its body never runs.
    @Test func aCallerCancelledBeforeItCallsRunsNothing() async throws {
        try await withStore(maximumConnections: 2) { store in
            try await store.read { db in _ = try await db.query("SELECT 1", logger: Self.logger) }
            let ran = Counter()
            let caller = Task {
                while !Task.isCancelled { await Task.yield() }
                return try await store.read { _ in ran.add() }
            }
            caller.cancel()
            await #expect(throws: CancellationError.self) { try await caller.value }
            #expect(ran.value == 0)
            #expect(store.waits.count == 0)
        }
    }

    /// A caller cancelled while it waits for a connection (the only one is held) stops waiting at
    /// once, and its body never runs — not even once the connection is free.
    @Test func aCallerCancelledWhileWaitingForAConnectionRunsNothing() async throws {
        try await withStore(maximumConnections: 1) { store in
            try await store.read { db in _ = try await db.query("CREATE TABLE grace_marks (mark INT)", logger: Self.logger) }
            let holder = Task { try await store.read { db in _ = try await db.query("SELECT pg_sleep(2)", logger: Self.logger) } }
            try await Task.sleep(for: .milliseconds(400))
            let ran = Counter()
            let caller = Task {
                try await store.read { db in
                    ran.add()
                    _ = try await db.query("INSERT INTO grace_marks VALUES (2)", logger: Self.logger)
                }
            }
            try await Task.sleep(for: .milliseconds(300))
            let cancelled = ContinuousClock.now
            caller.cancel()
            await #expect(throws: CancellationError.self) { try await caller.value }
            #expect(ContinuousClock.now - cancelled < .seconds(1), "stopped waiting at once, not when the holder let go")
            try await holder.value
            #expect(try await Self.marks(store) == [])
            #expect(ran.value == 0)
            #expect(store.waits.count == 0)
        }
    }

    static let logger = {
        var logger = Logger(label: "tests")
        logger.logLevel = .critical
        return logger
    }()

    /// A store on a fresh database with `maximumConnections`, its ``PostgresStore/run()`` running
    /// around `body`; nothing when PostgreSQL is not available.
    private func withStore(
        maximumConnections: Int, operationTimeout: Duration = .seconds(30), _ body: (PostgresStore) async throws -> Void
    ) async throws {
        guard StoreKind.available.contains(.postgres) else { return }
        let f = try await TestStore(.postgres)
        let store = PostgresStore(
            url: try PostgresURL(f.location), maximumConnections: maximumConnections, operationTimeout: operationTimeout, logger: Self.logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await store.run() }
            defer { group.cancelAll() }
            try await body(store)
        }
    }

    private static func marks(_ store: PostgresStore) async throws -> [Int] {
        try await store.read { db in
            var marks: [Int] = []
            for try await mark in try await db.query("SELECT mark FROM grace_marks ORDER BY mark", logger: Self.logger).decode(Int.self) { marks.append(mark) }
            return marks
        }
    }
}

private final class Counter: Sendable {
    private let count = Mutex(0)
    func add() { count.withLock { $0 += 1 } }
    var value: Int { count.withLock { $0 } }
}
