import Foundation
import Testing
import TributaryCore

@Suite("Cron schedules, jitter and overlap")
struct CronScheduleTests {
    static func at(_ text: String) -> Timestamp { Timestamp(iso8601: text)! }

    /// (expression, after, the next slot): UTC instants; the comment gives the wall clock.
    @Test(arguments: [
        // Plain days, both offsets of Paris.
        ("0 2 * * * Europe/Paris", "2026-01-15T00:00:00Z", "2026-01-15T01:00:00Z"),  // 02:00 CET
        ("0 2 * * * Europe/Paris", "2026-07-14T23:00:00Z", "2026-07-15T00:00:00Z"),  // 02:00 CEST
        ("0 2 * * * Europe/Paris", "2026-07-15T00:00:00Z", "2026-07-16T00:00:00Z"),  // strictly after
        // Spring forward (Paris, 29 March 2026: 02:00 CET jumps to 03:00 CEST at 01:00Z): 02:30 does
        // not exist, so it runs once, when the clock jumps; the day after it is back at 02:30.
        ("30 2 * * * Europe/Paris", "2026-03-28T12:00:00Z", "2026-03-29T01:00:00Z"),
        ("30 2 * * * Europe/Paris", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"),
        // Every quarter hour through the jump: the skipped 02:xx slots are one run at the jump.
        ("*/15 * * * * Europe/Paris", "2026-03-29T00:50:00Z", "2026-03-29T01:00:00Z"),
        ("*/15 * * * * Europe/Paris", "2026-03-29T01:00:00Z", "2026-03-29T01:15:00Z"),  // 03:15 CEST
        // Fall back (Paris, 25 October 2026: 03:00 CEST goes back to 02:00 CET at 01:00Z): a fixed
        // 02:30 runs once, at its first occurrence; the next is the following day's.
        ("30 2 * * * Europe/Paris", "2026-10-24T12:00:00Z", "2026-10-25T00:30:00Z"),
        ("30 2 * * * Europe/Paris", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"),
        // …while a schedule with every hour keeps to the real clock through the repeated hour.
        ("*/30 * * * * Europe/Paris", "2026-10-25T00:45:00Z", "2026-10-25T01:00:00Z"),  // 02:00 CET, the second time
        ("*/30 * * * * Europe/Paris", "2026-10-25T01:00:00Z", "2026-10-25T01:30:00Z"),
        ("*/30 * * * * Europe/Paris", "2026-10-25T01:30:00Z", "2026-10-25T02:00:00Z"),
        // New York springs forward on 8 March 2026 at 07:00Z; Sydney falls back on 5 April at 16:00Z.
        ("30 2 * * * America/New_York", "2026-03-07T12:00:00Z", "2026-03-08T07:00:00Z"),
        ("30 2 * * * Australia/Sydney", "2026-04-04T00:00:00Z", "2026-04-04T15:30:00Z"),  // 02:30 AEDT, first of two
        ("30 2 * * * Australia/Sydney", "2026-04-04T15:30:00Z", "2026-04-05T16:30:00Z"),  // 02:30 AEST the next day
        // Month ends, leap days and year ends (UTC).
        ("0 0 31 * *", "2026-04-01T00:00:00Z", "2026-05-31T00:00:00Z"),
        ("0 12 29 2 *", "2026-03-01T00:00:00Z", "2028-02-29T12:00:00Z"),
        ("0 0 1 1 *", "2026-12-31T23:59:00Z", "2027-01-01T00:00:00Z"),
        ("59 23 28-31 2 *", "2027-02-27T00:00:00Z", "2027-02-28T23:59:00Z"),
        // Day-of-month or day-of-week when both are restricted (Vixie cron); names; 7 is Sunday.
        ("0 9 1 * mon", "2026-06-02T00:00:00Z", "2026-06-08T09:00:00Z"),
        ("0 9 1 * mon", "2026-06-29T10:00:00Z", "2026-07-01T09:00:00Z"),
        ("0 0 * * 7", "2026-12-03T00:00:00Z", "2026-12-06T00:00:00Z"),
        ("@weekly", "2026-12-03T00:00:00Z", "2026-12-06T00:00:00Z"),
        ("0 0 1 jan,JUL *", "2026-02-01T00:00:00Z", "2026-07-01T00:00:00Z"),
        // Ranges with steps, and a step from a start.
        ("0 9-17/4 * * 1-5", "2026-12-04T14:00:00Z", "2026-12-04T17:00:00Z"),
        ("0 9-17/4 * * 1-5", "2026-12-04T17:00:00Z", "2026-12-07T09:00:00Z"),
        ("10/20 * * * *", "2026-12-04T14:31:00Z", "2026-12-04T14:50:00Z"),
        ("@daily Asia/Kolkata", "2026-12-04T12:00:00Z", "2026-12-04T18:30:00Z"),  // +05:30
    ])
    func nextSlot(_ expression: String, _ after: String, _ expected: String) throws {
        let cron = try CronExpression(expression)
        #expect(cron.next(after: Self.at(after)) == Self.at(expected), "\(expression) after \(after)")
        // The same through a frequency, which also accepts the zone-less form in any case.
        let frequency = try Frequency("cron \(expression)")
        #expect(frequency.nextSlot(after: Self.at(after), origin: Self.at("2020-01-01T00:00:00Z")) == Self.at(expected))
        #expect(frequency.intervalSeconds == nil)
    }

    @Test func aSlotAtOrAfterIncludesTheSlotItself() throws {
        let frequency = try Frequency("cron 0 2 * * * Europe/Paris")
        let origin = Self.at("2020-01-01T00:00:00Z")
        #expect(frequency.slot(atOrAfter: Self.at("2026-01-15T01:00:00Z"), origin: origin) == Self.at("2026-01-15T01:00:00Z"))
        #expect(frequency.slot(atOrAfter: Self.at("2026-01-15T01:00:01Z"), origin: origin) == Self.at("2026-01-16T01:00:00Z"))
        #expect(frequency.compact == "cron 0 2 * * * Europe/Paris")
        #expect(frequency.summary == "cron 0 2 * * * Europe/Paris")
        #expect(try Frequency("every 5 minutes").summary == "every 5m")
    }

    @Test(arguments: [
        ("60 * * * *", "minute"), ("* 24 * * *", "hour"), ("* * 0 * *", "day-of-month"), ("* * * 13 *", "month"), ("* * * * 8", "day-of-week"),
        ("*/0 * * * *", "step"), ("5-1 * * * *", "range"), ("1,,2 * * * *", "malformed"), ("* * *", "five fields"), ("", "empty"),
        ("0 0 30 2 *", "never"), ("0 0 31 4,6 *", "never"), ("0 0 * * * Mars/Olympus", "time zone"), ("@often", "@hourly"),
        ("0 0 * * * Europe/Paris extra", "five fields"), ("1-2-3 * * * *", "minute"), ("999 * * * *", "minute"), ("-1 * * * *", "minute"),
        ("* * * foo *", "month"),
    ])
    func badExpressionsNameTheProblem(_ expression: String, _ mention: String) {
        #expect {
            try Frequency("cron \(expression)")
        } throws: { error in
            guard let error = error as? TributaryError else { return false }
            return error.code == .invalidFrequency && error.message.contains(mention)
        }
    }

    @Test func thirtyFebruaryIsFineWhenADayOfTheWeekMayMatch() throws {
        // Both day fields restricted: either matches, so Mondays in February run.
        let cron = try CronExpression("0 0 30 2 mon")
        #expect(cron.next(after: Self.at("2026-01-31T00:00:00Z")) == Self.at("2026-02-02T00:00:00Z"))
    }

    @Test func everyMinuteThroughTheSpringJumpStaysOnTheMinuteAndInOrder() throws {
        // Walks a busy schedule across both of Paris's changes: every slot later than the one before,
        // on a whole minute, and the skipped hour costs exactly its 60 slots (less one, run at the jump).
        let cron = try CronExpression("* * * * * Europe/Paris")
        var time = Self.at("2026-03-28T23:00:00Z")
        var count = 0
        while time < Self.at("2026-03-29T03:00:00Z") {
            guard let next = cron.next(after: time) else { Issue.record("no next slot"); return }
            #expect(next > time)
            #expect(next.microseconds % 60_000_000 == 0)
            time = next
            count += 1
        }
        #expect(count == 4 * 60, "one run a minute on the real clock, the jump included")
    }

    @Test func jitterIsStablePerVariantAndSpreadsTenThousandVariantsEvenly() {
        let policy = SchedulePolicy(jitterSeconds: 600)
        var buckets = [Int](repeating: 0, count: 10)
        for index in 0..<10_000 {
            let id = UUID(uuid: (UInt8(index & 0xff), UInt8(index >> 8), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14)).uuidString.lowercased()
            let offset = policy.offsetMicroseconds(forVariant: id)
            #expect(offset >= 0 && offset < 600_000_000)
            #expect(policy.offsetMicroseconds(forVariant: id) == offset, "the same every time")
            buckets[Int(offset / 60_000_000)] += 1
        }
        // 1,000 expected a minute; a fair spread stays well within ±20%.
        #expect(buckets.allSatisfy { (800...1200).contains($0) }, "\(buckets)")
        #expect(SchedulePolicy().offsetMicroseconds(forVariant: "any") == 0)
    }

    @Test func jitterMovesEverySlotOfAVariantByTheSameAmount() throws {
        let policy = SchedulePolicy(jitterSeconds: 300)
        let offset = policy.offsetMicroseconds(forVariant: "variant-a")
        let origin = Self.at("2026-01-01T00:00:00Z")
        let hourly = try Frequency("every hour")
        let daily = try Frequency("cron 0 2 * * * Europe/Paris")
        let end = Self.at("2026-01-15T00:10:00Z")
        #expect(policy.next(hourly, variant: "variant-a", origin: origin, activeSince: nil, end: end) == Self.at("2026-01-15T01:00:00Z").adding(microseconds: offset))
        #expect(policy.next(daily, variant: "variant-a", origin: origin, activeSince: nil, end: end) == Self.at("2026-01-15T01:00:00Z").adding(microseconds: offset))
        // A run ending inside its own jitter window is not given the same slot again.
        let inWindow = Self.at("2026-01-15T01:00:00Z").adding(microseconds: offset)
        #expect(policy.next(daily, variant: "variant-a", origin: origin, activeSince: nil, end: inWindow) == Self.at("2026-01-16T01:00:00Z").adding(microseconds: offset))
    }

    @Test func overlapSkipsOrRunsOnceRightAfterTheActiveRun() throws {
        let origin = Self.at("2026-01-01T00:00:00Z")
        let hourly = try Frequency("every hour")
        let queued = Self.at("2026-01-15T01:00:00Z")
        let longEnd = Self.at("2026-01-15T03:20:00Z")  // the 02:00 and 03:00 slots came while it ran
        let shortEnd = Self.at("2026-01-15T01:20:00Z")  // none did
        let skip = SchedulePolicy(overlap: .skip)
        let runAfter = SchedulePolicy(overlap: .runAfter)
        #expect(skip.next(hourly, variant: "v", origin: origin, activeSince: queued, end: longEnd) == Self.at("2026-01-15T04:00:00Z"))
        #expect(runAfter.next(hourly, variant: "v", origin: origin, activeSince: queued, end: longEnd) == longEnd, "once, at once")
        #expect(runAfter.next(hourly, variant: "v", origin: origin, activeSince: queued, end: shortEnd) == Self.at("2026-01-15T02:00:00Z"))
        #expect(runAfter.next(hourly, variant: "v", origin: origin, activeSince: nil, end: longEnd) == Self.at("2026-01-15T04:00:00Z"))
        #expect(SchedulePolicy.Overlap(rawValue: "run_after") == .runAfter)
    }
}
