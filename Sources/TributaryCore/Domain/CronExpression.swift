import Foundation

/// A five-field cron expression (`minute hour day-of-month month day-of-week`) with an optional
/// IANA time zone, as in `cron 0 2 * * * Europe/Paris` — or one of the macros `@hourly`, `@daily`,
/// `@weekly`, `@monthly`, `@yearly`. Fields take `*`, numbers, ranges `a-b`, steps `*/n` and
/// `a-b/n`, lists `a,b`, month names `jan`…`dec` and day names `sun`…`sat` (0 and 7 are Sunday).
/// As in Vixie cron, when both day fields are restricted a day matches either.
///
/// Next-run computation (``next(after:)``) is pure given the zone's UTC offsets, and defined across
/// daylight-saving changes:
/// - a wall-clock time that does not exist (the hour skipped in spring) runs once, at the moment
///   the clock jumps past it;
/// - a wall-clock time that happens twice (the hour repeated in autumn) runs once, at its first
///   occurrence — unless the hour field is `*`, when a schedule that runs every hour keeps running
///   on the real clock, so both occurrences run (cronie's rule).
public struct CronExpression: Sendable, Hashable {
    /// The fields as written (the macro expanded), without the zone.
    public let fields: String
    /// The zone slots are computed in (UTC when none was given).
    public let timeZone: TimeZone
    let minutes: UInt64
    let hours: UInt64
    let daysOfMonth: UInt64
    let months: UInt64
    let daysOfWeek: UInt64
    let dayOfMonthRestricted: Bool
    let dayOfWeekRestricted: Bool
    let everyHour: Bool

    /// Parses `fields` (five fields or a macro, then optionally a time zone).
    ///
    /// - Throws: ``TributaryError`` `invalid_frequency` naming the field and what is wrong with it.
    public init(_ text: String) throws(TributaryError) {
        var words = text.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard let first = words.first else { throw Self.error(text, "it is empty") }
        if first.hasPrefix("@") {
            guard let expanded = Self.macros[first.lowercased()] else {
                throw Self.error(text, "'\(first.prefix(20))' is not one of @hourly, @daily, @weekly, @monthly, @yearly")
            }
            words.replaceSubrange(0..<1, with: expanded.split(separator: " ").map(String.init))
        }
        guard words.count == 5 || words.count == 6 else {
            throw Self.error(text, "it needs five fields (minute hour day-of-month month day-of-week), then optionally a time zone")
        }
        if words.count == 6 {
            guard let zone = TimeZone(identifier: words[5]) else {
                throw Self.error(text, "'\(words[5].prefix(60))' is not a known time zone (write an IANA name such as Europe/Paris)")
            }
            timeZone = zone
        } else {
            timeZone = TimeZone(identifier: "UTC") ?? .gmt
        }
        fields = words.prefix(5).joined(separator: " ")
        minutes = try Self.field(words[0], text, name: "minute", range: 0...59)
        hours = try Self.field(words[1], text, name: "hour", range: 0...23)
        daysOfMonth = try Self.field(words[2], text, name: "day-of-month", range: 1...31)
        months = try Self.field(words[3], text, name: "month", range: 1...12, names: Self.monthNames)
        var dow = try Self.field(words[4], text, name: "day-of-week", range: 0...7, names: Self.dayNames)
        if dow & (1 << 7) != 0 { dow = (dow | 1) & ~(1 << 7) }
        daysOfWeek = dow
        dayOfMonthRestricted = !words[2].hasPrefix("*")
        dayOfWeekRestricted = !words[4].hasPrefix("*")
        everyHour = words[1] == "*"
        // A day that can never come (30 February) would leave a variant without a next run.
        let longest: [Int] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        let reachable = (1...12).contains { month in
            months & (1 << UInt64(month)) != 0 && (1...longest[month - 1]).contains { daysOfMonth & (1 << UInt64($0)) != 0 }
        }
        if dayOfMonthRestricted, !dayOfWeekRestricted, !reachable {
            throw Self.error(text, "no month listed has the day of the month listed, so it would never run")
        }
    }

    /// The expression as it is written back: the fields, then the zone unless it is UTC.
    public var text: String {
        timeZone.identifier == "UTC" || timeZone.identifier == "GMT" ? fields : "\(fields) \(timeZone.identifier)"
    }

    /// The first slot strictly after `time`; nil only when none comes within nine years (not
    /// possible for an expression that parsed).
    public func next(after time: Timestamp) -> Timestamp? {
        let zone = Offsets(timeZone)
        let after = Self.floorDiv(time.microseconds, 1_000_000)
        let nearby = [zone.at(after - 2 * 86_400), zone.at(after), zone.at(after + 2 * 86_400)]
        let lowest = nearby.min() ?? 0
        let highest = nearby.max() ?? 0
        var best: Int64? = nil
        var day = Self.floorDiv(after + lowest, 86_400) - 1
        let lastDay = day + 9 * 366 + 2
        while day <= lastDay {
            defer { day += 1 }
            // Any slot of a later day comes after the best found (an instant is its wall time minus an offset).
            if let best, day * 86_400 - highest > best { break }
            guard matches(day: day) else { continue }
            for hour in Self.members(hours, 0...23) {
                for minute in Self.members(minutes, 0...59) {
                    let wall = day * 86_400 + Int64(hour * 3600 + minute * 60)
                    if wall - highest > (best ?? .max) { break }
                    if wall - lowest <= after { continue }
                    for instant in instants(of: wall, zone) where instant > after {
                        best = min(best ?? instant, instant)
                    }
                }
            }
        }
        return best.map { Timestamp(microseconds: $0 * 1_000_000) }
    }

    /// Whether a local day (days since 1970-01-01) is one the expression runs on.
    func matches(day: Int64) -> Bool {
        let (_, civilMonth, civilDay) = Timestamp.civil(fromDays: day)
        let month = Int(civilMonth)
        let dayOfMonth = Int(civilDay)
        guard months & (1 << UInt64(month)) != 0 else { return false }
        let weekday = Int(((day + 4) % 7 + 7) % 7)
        let byMonth = daysOfMonth & (1 << UInt64(dayOfMonth)) != 0
        let byWeek = daysOfWeek & (1 << UInt64(weekday)) != 0
        switch (dayOfMonthRestricted, dayOfWeekRestricted) {
        case (true, true): return byMonth || byWeek
        case (true, false): return byMonth
        case (false, true): return byWeek
        case (false, false): return true
        }
    }

    /// The instants (seconds since the epoch) when the wall clock shows `wall` (local seconds since
    /// the epoch): one, two in a repeated hour (only the first unless every hour runs), or — in a
    /// skipped hour — the moment the clock jumped past it.
    func instants(of wall: Int64, _ zone: Offsets) -> [Int64] {
        let before = zone.at(wall - 86_400)
        let after = zone.at(wall + 86_400)
        var found: [Int64] = []
        for offset in Set([before, after, zone.at(wall)]) where zone.at(wall - offset) == offset {
            found.append(wall - offset)
        }
        found.sort()
        if found.count > 1, !everyHour { return [found[0]] }
        if !found.isEmpty { return found }
        // Skipped: the jump lies between the instant this wall time would have had on the old offset
        // and on the new one; find the first second on the new offset.
        guard after > before else { return [] }
        var low = wall - after
        var high = wall - before
        while low < high {
            let middle = low + (high - low) / 2
            if zone.at(middle) == after { high = middle } else { low = middle + 1 }
        }
        return [low]
    }

    /// A zone's UTC offset in seconds at an instant.
    struct Offsets {
        let zone: TimeZone
        init(_ zone: TimeZone) { self.zone = zone }
        func at(_ instant: Int64) -> Int64 {
            Int64(zone.secondsFromGMT(for: Date(timeIntervalSince1970: TimeInterval(instant))))
        }
    }

    // MARK: Parsing

    static let macros: [String: String] = [
        "@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *",
        "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *",
    ]
    static let monthNames = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"].enumerated()
        .reduce(into: [String: Int]()) { $0[$1.element] = $1.offset + 1 }
    static let dayNames = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"].enumerated()
        .reduce(into: [String: Int]()) { $0[$1.element] = $1.offset }

    static func error(_ text: String, _ problem: String) -> TributaryError {
        TributaryError(.invalidFrequency, "Cron expression \"\(text.prefix(80))\" is not valid: \(problem).")
    }

    /// One field as a bit set of the values it allows.
    static func field(_ field: String, _ text: String, name: String, range: ClosedRange<Int>, names: [String: Int] = [:]) throws(TributaryError)
        -> UInt64
    {
        var set: UInt64 = 0
        for item in field.split(separator: ",", omittingEmptySubsequences: false) {
            let parts = item.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count <= 2, let base = parts.first, !base.isEmpty else {
                throw error(text, "the \(name) field '\(field.prefix(40))' has an empty or malformed item")
            }
            var step = 1
            if parts.count == 2 {
                guard let value = number(parts[1], [:]), value >= 1, value <= range.upperBound + 1 else {
                    throw error(text, "the \(name) field's step '\(parts[1].prefix(10))' must be a number from 1 to \(range.upperBound + 1)")
                }
                step = value
            }
            var low = range.lowerBound
            var high = range.upperBound
            if base != "*" {
                let bounds = base.split(separator: "-", omittingEmptySubsequences: false)
                guard bounds.count <= 2, let start = number(bounds[0], names), range.contains(start) else {
                    throw error(text, "the \(name) field's '\(base.prefix(20))' is not a value from \(range.lowerBound) to \(range.upperBound)")
                }
                low = start
                if bounds.count == 2 {
                    guard let end = number(bounds[1], names), range.contains(end), end >= start else {
                        throw error(text, "the \(name) field's range '\(base.prefix(20))' must end at a value from \(start) to \(range.upperBound)")
                    }
                    high = end
                } else if parts.count == 1 {
                    high = start
                }
            }
            for value in stride(from: low, through: high, by: step) { set |= 1 << UInt64(value) }
        }
        return set
    }

    static func number(_ text: Substring, _ names: [String: Int]) -> Int? {
        if let named = names[text.lowercased()] { return named }
        guard !text.isEmpty, text.count <= 2, text.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return Int(text)
    }

    static func members(_ set: UInt64, _ range: ClosedRange<Int>) -> [Int] {
        range.filter { set & (1 << UInt64($0)) != 0 }
    }

    static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 {
        a >= 0 ? a / b : -((-a + b - 1) / b)
    }
}
