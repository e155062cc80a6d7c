import Testing
import TributaryCore

@Suite("Schedule arithmetic")
struct ScheduleTests {
    let origin = Timestamp(iso8601: "2026-01-01T00:00:00Z")!
    func at(_ text: String) -> Timestamp { Timestamp(iso8601: "2026-01-01T\(text)Z")! }

    @Test func nextSlotIsTheFirstGridPointAfterTheRunEnds() {
        // Every 5 minutes from 00:00.
        #expect(Schedule.nextSlot(after: at("00:00:00"), origin: origin, intervalSeconds: 300) == at("00:05:00"))
        #expect(Schedule.nextSlot(after: at("00:04:59"), origin: origin, intervalSeconds: 300) == at("00:05:00"))
        #expect(Schedule.nextSlot(after: at("00:05:00"), origin: origin, intervalSeconds: 300) == at("00:10:00"))
        // A run that lasted 17 minutes skips the 00:05, 00:10 and 00:15 slots instead of queueing them.
        #expect(Schedule.nextSlot(after: at("00:17:30"), origin: origin, intervalSeconds: 300) == at("00:20:00"))
        // Before the grid starts: the origin.
        #expect(Schedule.nextSlot(after: Timestamp(microseconds: origin.microseconds - 1), origin: origin, intervalSeconds: 300) == origin)
    }

    @Test func slotAtOrAfterKeepsAFrequencyChangeOnTheGrid() {
        #expect(Schedule.slot(atOrAfter: at("01:00:00"), origin: origin, intervalSeconds: 3600) == at("01:00:00"))
        #expect(Schedule.slot(atOrAfter: at("01:00:01"), origin: origin, intervalSeconds: 3600) == at("02:00:00"))
        #expect(Schedule.slot(atOrAfter: at("00:00:00"), origin: origin, intervalSeconds: 30) == origin)
    }
}

@Suite("Retry policy")
struct RetryPolicyTests {
    @Test func backoffDoublesWithinItsCapThenStops() {
        let policy = RetryPolicy(maxAttempts: 4, baseSeconds: 10, maxSeconds: 35)
        #expect(policy.delay(attempt: 1, jitter: 1) == 10)
        #expect(policy.delay(attempt: 2, jitter: 1) == 20)
        #expect(policy.delay(attempt: 3, jitter: 1) == 35, "capped")
        #expect(policy.delay(attempt: 4, jitter: 1.2) == 42, "jitter applies to the capped delay")
        #expect(policy.delay(attempt: 5, jitter: 1) == nil, "attempts used up")
        #expect(policy.delay(attempt: 1, retryAfterSeconds: 120, jitter: 1) == 120, "Retry-After wins when longer")
        for _ in 0..<100 {
            let delay = policy.delay(attempt: 1)!
            #expect(delay >= 8 && delay <= 12)
        }
    }
}
