/// How often a variant runs: `every 5 minutes`, `every hour`, `every day`, `30s`, `1h`,
/// `every half hour`… (Nango's frequency syntax). At least 30 seconds.
public struct Frequency: Sendable, Hashable, CustomStringConvertible {
    /// The shortest allowed interval.
    public static let minimumSeconds: Int64 = 30
    /// The longest allowed interval (one year).
    public static let maximumSeconds: Int64 = 366 * 86_400

    /// The interval in seconds.
    public let seconds: Int64
    /// The text it was written as.
    public let text: String

    /// Parses a frequency.
    ///
    /// - Throws: ``TributaryError`` `invalid_frequency` with the accepted forms, or when shorter than 30 s.
    public init(_ text: String) throws(TributaryError) {
        guard let seconds = Self.parseSeconds(text) else {
            throw TributaryError(
                .invalidFrequency,
                "Frequency \"\(text.prefix(80))\" is not understood: write e.g. \"every 5 minutes\", \"every hour\", \"every day\", \"30s\", \"2h\" or \"every half hour\".")
        }
        guard seconds >= Self.minimumSeconds else {
            throw TributaryError(.invalidFrequency, "Frequency \"\(text)\" is shorter than the minimum of 30 seconds.")
        }
        guard seconds <= Self.maximumSeconds else {
            throw TributaryError(.invalidFrequency, "Frequency \"\(text)\" is longer than the maximum of 366 days.")
        }
        self.seconds = seconds
        self.text = text
    }

    public var description: String { text }

    /// A compact form such as `5m`, `1h`, `1d` or `90s` (what Nango answers for a frequency update).
    public var compact: String {
        if seconds % 86_400 == 0 { return "\(seconds / 86_400)d" }
        if seconds % 3600 == 0 { return "\(seconds / 3600)h" }
        if seconds % 60 == 0 { return "\(seconds / 60)m" }
        return "\(seconds)s"
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
