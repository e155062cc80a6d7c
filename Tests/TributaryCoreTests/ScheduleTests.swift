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
