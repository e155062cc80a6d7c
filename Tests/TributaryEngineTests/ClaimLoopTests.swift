import Logging
import ServiceLifecycle
import Synchronization
import Testing
@testable import TributaryEngine
import TributaryTestSupport

/// The claiming loop the action and provider-webhook workers share, on its own: a queue of
/// numbered items stands in for the store.
@Suite("Claim loop")
struct ClaimLoopTests {
    /// What the loop did, shared with its closures.
    final class Trace: Sendable {
        let queue: Mutex<[Int]>
        let running = Mutex(0)
        let mostRunning = Mutex(0)
        let done = Mutex<[Int]>([])
        let claimErrors = Mutex(0)
        let cancelled = Mutex<[Int]>([])
        let stopped = Mutex(0)
        let hanging = Mutex(0)
        let release = Mutex(false)
        /// How long an item runs before it ends on its own (nil: until released or cancelled).
        let runsFor: Duration?
        init(_ items: [Int], runsFor: Duration? = nil) {
            queue = Mutex(items)
            self.runsFor = runsFor
        }

        func claim() -> Int? { queue.withLock { $0.isEmpty ? nil : $0.removeFirst() } }

        /// Runs until released (or cancelled), counting how many run at once.
        func execute(_ item: Int) async {
            let now = running.withLock { running in
                running += 1
                return running
            }
            mostRunning.withLock { $0 = max($0, now) }
            let end = runsFor.map { ContinuousClock.now + $0 }
            while !release.withLock({ $0 }), end.map({ ContinuousClock.now < $0 }) ?? true {
                if Task.isCancelled {
                    cancelled.withLock { $0.append(item) }
                    running.withLock { $0 -= 1 }
                    return
                }
                try? await Task.sleep(for: .milliseconds(2))
            }
            running.withLock { $0 -= 1 }
            done.withLock { $0.append(item) }
        }
    }

    /// A loop run as a service, so a service group's graceful shutdown reaches it.
    struct LoopService: Service {
        let loop: ClaimLoop
        let trace: Trace
        let afterDrain: ClaimLoop.AfterDrain
        let failFirstClaims: Int
        /// Claims wait for an hour (a database that does not answer) until cancelled.
        var claimsHang = false

        func run() async throws {
            let (trace, failFirstClaims, claimsHang) = (trace, failFirstClaims, claimsHang)
            let attempts = Mutex(0)
            await loop.run(
                claim: {
                    let attempt = attempts.withLock { attempts in
                        attempts += 1
                        return attempts
                    }
                    if attempt <= failFirstClaims { throw TimedOut(what: "the database (a claim that failed)") }
                    if claimsHang {
                        trace.hanging.withLock { $0 += 1 }
                        try await Task.sleep(for: .seconds(3600))
                    }
                    return trace.claim()
                },
                claimFailed: { _ in trace.claimErrors.withLock { $0 += 1 } },
                execute: { await trace.execute($0) },
                afterDrain: afterDrain)
        }
    }

    static var logger: Logger {
        var logger = Logger(label: "claim-loop")
        logger.logLevel = .critical
        return logger
    }

    /// Starts `service` in a group, runs `body`, then shuts the group down gracefully and waits for it.
    func withRunning(_ service: LoopService, _ body: () async throws -> Void) async throws {
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: [service], logger: Self.logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await body()
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    /// Items are claimed while fewer than `maxConcurrent` run, each once, and a finished item's slot
    /// claims the next; a failed claim is reported and costs no slot.
    @Test(.timeLimit(.minutes(1))) func itRunsEachItemOnceWithinItsSlots() async throws {
        let trace = Trace(Array(1...10))
        let loop = ClaimLoop(maxConcurrent: 3, poll: .milliseconds(20), drain: .seconds(5))
        try await withRunning(LoopService(loop: loop, trace: trace, afterDrain: .cancel, failFirstClaims: 2)) {
            try await eventually("three running") { trace.running.withLock { $0 } == 3 }
            try await Task.sleep(for: .milliseconds(100))
            #expect(trace.running.withLock { $0 } == 3, "no more than three at once")
            #expect(trace.claimErrors.withLock { $0 } == 2)
            trace.release.withLock { $0 = true }
            try await eventually("every item done") { trace.done.withLock { $0.count } == 10 }
        }
        #expect(trace.done.withLock { $0.sorted() } == Array(1...10))
        #expect(trace.mostRunning.withLock { $0 } == 3)
        #expect(trace.cancelled.withLock { $0 }.isEmpty)
    }

    /// At a graceful shutdown nothing more is claimed; the running items get the drain time and are
    /// then cancelled (`.cancel`, the action worker's way), and the loop returns.
    @Test(.timeLimit(.minutes(1))) func aShutdownDrainsThenCancelsTheItemsStillRunning() async throws {
        let trace = Trace(Array(1...5))
        let loop = ClaimLoop(maxConcurrent: 2, poll: .milliseconds(20), drain: .milliseconds(200))
        let started = ContinuousClock.now
        try await withRunning(LoopService(loop: loop, trace: trace, afterDrain: .cancel, failFirstClaims: 0)) {
            try await eventually("two running") { trace.running.withLock { $0 } == 2 }
        }
        #expect(ContinuousClock.now - started >= .milliseconds(200), "the running items had the drain time")
        #expect(trace.cancelled.withLock { $0.sorted() } == [1, 2])
        #expect(trace.queue.withLock { $0 } == [3, 4, 5], "nothing claimed after the shutdown")
        #expect(trace.running.withLock { $0 } == 0)
    }

    /// With `.call`, the provider-webhook worker's way, the stop is called after the drain time and
    /// the items end themselves (their tasks are not cancelled); an item that ends within the drain
    /// time is done, not stopped.
    @Test(.timeLimit(.minutes(1))) func aShutdownCallsTheStopAndWaitsForTheItemsToEnd() async throws {
        let trace = Trace([1])
        let loop = ClaimLoop(maxConcurrent: 2, poll: .milliseconds(20), drain: .milliseconds(150))
        let service = LoopService(
            loop: loop, trace: trace,
            afterDrain: .call {
                trace.stopped.withLock { $0 += 1 }
                trace.release.withLock { $0 = true }
            }, failFirstClaims: 0)
        try await withRunning(service) {
            try await eventually("one running") { trace.running.withLock { $0 } == 1 }
        }
        #expect(trace.stopped.withLock { $0 } == 1)
        #expect(trace.done.withLock { $0 } == [1] && trace.cancelled.withLock { $0 }.isEmpty, "ended by the stop, not cancelled")
    }

    /// An item that ends within the drain time is done, not cancelled, and the loop returns as soon
    /// as it has ended, not at the drain's deadline.
    @Test(.timeLimit(.minutes(1))) func anItemThatEndsWithinTheDrainTimeIsDone() async throws {
        let trace = Trace([7], runsFor: .milliseconds(300))
        let loop = ClaimLoop(maxConcurrent: 1, poll: .milliseconds(20), drain: .seconds(30))
        let started = ContinuousClock.now
        try await withRunning(LoopService(loop: loop, trace: trace, afterDrain: .cancel, failFirstClaims: 0)) {
            try await eventually("the item running") { trace.running.withLock { $0 } == 1 }
        }
        #expect(trace.done.withLock { $0 } == [7] && trace.cancelled.withLock { $0 }.isEmpty)
        #expect(ContinuousClock.now - started < .seconds(20), "returned when the item ended, not after the 30 s drain")
    }

    /// A claim under way at a graceful shutdown (a database that does not answer) is cancelled: the
    /// loop returns, the claim is not reported as failed, and nothing is run.
    @Test(.timeLimit(.minutes(1))) func aClaimUnderWayAtAShutdownIsCancelled() async throws {
        let trace = Trace([1])
        var service = LoopService(loop: ClaimLoop(maxConcurrent: 1, poll: .milliseconds(20), drain: .seconds(30)), trace: trace, afterDrain: .cancel, failFirstClaims: 0)
        service.claimsHang = true
        try await withRunning(service) {
            try await eventually("a claim waiting on the database") { trace.hanging.withLock { $0 } == 1 }
        }
        #expect(trace.claimErrors.withLock { $0 } == 0, "a cancelled claim is not a failure")
        #expect(trace.queue.withLock { $0 } == [1] && trace.done.withLock { $0 }.isEmpty)
    }

    /// ``ClaimLoop/wake()`` claims at once, without waiting for the poll.
    @Test(.timeLimit(.minutes(1))) func aWakeClaimsWithoutWaitingForThePoll() async throws {
        let trace = Trace([42])
        trace.release.withLock { $0 = true }
        let loop = ClaimLoop(maxConcurrent: 1, poll: .seconds(3600), drain: .seconds(5))
        try await withRunning(LoopService(loop: loop, trace: trace, afterDrain: .cancel, failFirstClaims: 0)) {
            try await Task.sleep(for: .milliseconds(100))
            #expect(trace.queue.withLock { $0 } == [42], "the poll is an hour away: nothing claimed yet")
            loop.wake()
            try await eventually("the woken claim", seconds: 5) { trace.done.withLock { $0 } == [42] }
        }
    }
}
