/// How often a variant runs: an interval in Nango's syntax — `every 5 minutes`, `every hour`,
/// `every day`, `30s`, `1h`, `every half hour`… (at least 30 seconds) — or a cron expression with an
/// optional time zone, written `cron 0 2 * * * Europe/Paris` (``CronExpression``). One string either
/// way, so a variant's frequency override takes both.
public struct Frequency: Sendable, Hashable, CustomStringConvertible {
    /// The shortest allowed interval.
    public static let minimumSeconds: Int64 = 30
    /// The longest allowed interval (one year).
    public static let maximumSeconds: Int64 = 366 * 86_400

    /// An interval grid or a cron expression.
    public enum Kind: Sendable, Hashable {
        /// Runs on the grid `origin + k × seconds`.
        case interval(seconds: Int64)
        /// Runs at the expression's wall-clock times in its zone.
        case cron(CronExpression)
    }

    public let kind: Kind
    /// The text it was written as.
    public let text: String

    /// Parses a frequency.
    ///
    /// - Throws: ``TributaryError`` `invalid_frequency` with the accepted forms, or when shorter than 30 s.
    public init(_ text: String) throws(TributaryError) {
        let trimmed = text.trimmingSpaces()
        let lowered = trimmed.lowercased()
        if lowered == "cron" || lowered.hasPrefix("cron ") || lowered.hasPrefix("cron\t") {
            self.kind = .cron(try CronExpression(String(trimmed.dropFirst(5))))
            self.text = text
            return
        }
        guard let seconds = Self.parseSeconds(text) else {
            throw TributaryError(
                .invalidFrequency,
                "Frequency \"\(text.prefix(80))\" is not understood: write e.g. \"every 5 minutes\", \"every hour\", \"every day\", \"30s\", \"2h\", \"every half hour\" or \"cron 0 2 * * * Europe/Paris\".")
        }
        guard seconds >= Self.minimumSeconds else {
            throw TributaryError(.invalidFrequency, "Frequency \"\(text)\" is shorter than the minimum of 30 seconds.")
        }
        guard seconds <= Self.maximumSeconds else {
            throw TributaryError(.invalidFrequency, "Frequency \"\(text)\" is longer than the maximum of 366 days.")
        }
        self.kind = .interval(seconds: seconds)
        self.text = text
    }

    public var description: String { text }

    /// The interval in seconds (nil for a cron schedule).
    public var intervalSeconds: Int64? {
        if case .interval(let seconds) = kind { return seconds }
        return nil
    }

    /// A compact form such as `5m`, `1h`, `1d` or `90s` (what Nango answers for a frequency update);
    /// a cron schedule as `cron <fields> [zone]`.
    public var compact: String {
        switch kind {
        case .cron(let expression): return "cron \(expression.text)"
        case .interval(let seconds):
            if seconds % 86_400 == 0 { return "\(seconds / 86_400)d" }
            if seconds % 3600 == 0 { return "\(seconds / 3600)h" }
            if seconds % 60 == 0 { return "\(seconds / 60)m" }
            return "\(seconds)s"
        }
    }

    /// How people read it: `every 5m`, or `cron 0 2 * * * Europe/Paris`.
    public var summary: String {
        intervalSeconds == nil ? compact : "every \(compact)"
    }

    /// The first slot strictly after `time`. An interval counts from `origin`; `offsetMicroseconds`
    /// (a variant's jitter, ``SchedulePolicy``) shifts every slot later.
    public func nextSlot(after time: Timestamp, origin: Timestamp, offsetMicroseconds: Int64 = 0) -> Timestamp {
        switch kind {
        case .interval(let seconds):
            return Schedule.nextSlot(after: time, origin: origin.adding(microseconds: offsetMicroseconds), intervalSeconds: seconds)
        case .cron(let expression):
            // An expression that parsed always has a slot within nine years; a day later is the safe answer otherwise.
            let next = expression.next(after: time.adding(microseconds: -offsetMicroseconds)) ?? time.adding(microseconds: 86_400_000_000)
            return next.adding(microseconds: offsetMicroseconds)
        }
    }

    /// The first slot at or after `time` (used when a frequency changes: the next run keeps to the schedule).
    public func slot(atOrAfter time: Timestamp, origin: Timestamp, offsetMicroseconds: Int64 = 0) -> Timestamp {
        switch kind {
        case .interval(let seconds):
            return Schedule.slot(atOrAfter: time, origin: origin.adding(microseconds: offsetMicroseconds), intervalSeconds: seconds)
        case .cron:
            return nextSlot(after: time.adding(microseconds: -1), origin: origin, offsetMicroseconds: offsetMicroseconds)
        }
    }

    /// The interval in seconds of a frequency text, without the minimum and maximum checks; nil if not understood.
    public static func parseSeconds(_ raw: String) -> Int64? {
        var text = raw.trimmingSpaces().lowercased()
        if text.hasPrefix("every ") { text = String(text.dropFirst(6)).trimmingSpaces() }
        switch text {
        case "month": return 30 * 86_400
        case "week": return 7 * 86_400
        case "half day": return 12 * 3600
        case "half hour": return 30 * 60
        case "quarter hour": return 15 * 60
        default: break
        }
        let digits = text.prefix(while: { $0.isASCII && $0.isNumber })
        let amount: Int64
        if digits.isEmpty {
            amount = 1
        } else {
            guard digits.count <= 9, let value = Int64(digits) else { return nil }
            amount = value
        }
        let unit = text.dropFirst(digits.count).trimmingSpaces()
        let unitSeconds: Int64
        switch unit {
        case "s", "sec", "secs", "second", "seconds": unitSeconds = 1
        case "m", "min", "mins", "minute", "minutes": unitSeconds = 60
        case "h", "hr", "hrs", "hour", "hours": unitSeconds = 3600
        case "d", "day", "days": unitSeconds = 86_400
        case "w", "week", "weeks": unitSeconds = 7 * 86_400
        default: return nil
        }
        return amount * unitSeconds
    }
}

/// Full refresh (fetch everything each run) or incremental (fetch what changed since `lastSyncDate`).
public enum SyncType: String, Sendable, Hashable, CaseIterable {
    case full
    case incremental
}

extension StringProtocol {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}
