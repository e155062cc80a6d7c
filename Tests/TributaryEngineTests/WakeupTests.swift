import Testing

@testable import TributaryEngine

@Suite("Wakeup")
struct WakeupTests {
    @Test func aSignalEndsTheWaitInProgress() async throws {
        let wakeup = Wakeup()
        let start = ContinuousClock.now
        async let woken = wakeup.wait(upTo: .seconds(30))
        try await Task.sleep(for: .milliseconds(50))
        wakeup.signal()
        #expect(await woken, "ended by the signal")
        #expect(ContinuousClock.now - start < .seconds(10), "not by the 30 s timeout")
    }

    @Test func aSignalWithNobodyWaitingEndsTheNextWaitAtOnceAndOnlyThatOne() async {
        let wakeup = Wakeup()
        wakeup.signal()
        wakeup.signal()
        let start = ContinuousClock.now
        #expect(await wakeup.wait(upTo: .seconds(30)), "the pending signal")
        #expect(ContinuousClock.now - start < .seconds(10))
        #expect(await wakeup.wait(upTo: .milliseconds(50)) == false, "two signals before a wait count as one")
    }

    @Test func withoutASignalTheWaitLastsItsTimeout() async {
        let wakeup = Wakeup()
        let start = ContinuousClock.now
        #expect(await wakeup.wait(upTo: .milliseconds(100)) == false)
        #expect(ContinuousClock.now - start >= .milliseconds(100))
    }

    @Test func cancellationEndsTheWaitAndASignalAfterItStaysPending() async throws {
        let wakeup = Wakeup()
        let start = ContinuousClock.now
        let waiting = Task { await wakeup.wait(upTo: .seconds(30)) }
        try await Task.sleep(for: .milliseconds(50))
        waiting.cancel()
        #expect(await waiting.value == false)
        #expect(ContinuousClock.now - start < .seconds(10), "ended by the cancellation")
        wakeup.signal()
        #expect(await wakeup.wait(upTo: .seconds(30)), "the signal after the cancelled wait is kept")
    }
}

extension WakeupTests {
    /// Each race between a signal, a cancellation and the timeout resumes the wait exactly once: a
    /// second resume would trap, a missing one would hang until the time limit.
    @Test(.timeLimit(.minutes(1))) func signalsCancellationsAndTimeoutsRacingNeitherHangNorCrash() async {
        let wakeup = Wakeup()
        for round in 0..<2000 {
            let waiting = Task { await wakeup.wait(upTo: .microseconds(200)) }
            if round % 2 == 0 { wakeup.signal() }
            if round % 3 == 0 { waiting.cancel() }
            _ = await waiting.value
        }
        _ = await wakeup.wait(upTo: .zero)
        let start = ContinuousClock.now
        async let woken = wakeup.wait(upTo: .seconds(30))
        try? await Task.sleep(for: .milliseconds(50))
        wakeup.signal()
        #expect(await woken, "still works after the races")
        #expect(ContinuousClock.now - start < .seconds(10))
    }

    @Test(.timeLimit(.minutes(1))) func aSecondWaiterLetsTheFirstGoRatherThanLeaveItHanging() async throws {
        let wakeup = Wakeup()
        let first = Task { await wakeup.wait(upTo: .seconds(30)) }
        while !wakeup.isWaiting { try await Task.sleep(for: .milliseconds(1)) }
        let start = ContinuousClock.now
        let second = Task { await wakeup.wait(upTo: .seconds(30)) }
        #expect(await first.value == false)
        #expect(ContinuousClock.now - start < .seconds(10), "let go, not timed out")
        while !wakeup.isWaiting { try await Task.sleep(for: .milliseconds(1)) }
        wakeup.signal()
        #expect(await second.value)
    }
}

@Suite("Queue signal listener")
struct QueueSignalListenerTests {
    @Test func itListensAgainAfterAFailureWaitingLongerEachTimeUpToHalfAMinute() {
        #expect(QueueSignalListener.backoff(afterFailures: 0) == .seconds(1))
        #expect(QueueSignalListener.backoff(afterFailures: 1) == .seconds(1))
        #expect(QueueSignalListener.backoff(afterFailures: 2) == .seconds(2))
        #expect(QueueSignalListener.backoff(afterFailures: 5) == .seconds(16))
        #expect(QueueSignalListener.backoff(afterFailures: 6) == .seconds(30))
        #expect(QueueSignalListener.backoff(afterFailures: 1000) == .seconds(30))
    }
}
