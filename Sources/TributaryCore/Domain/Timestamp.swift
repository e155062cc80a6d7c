/// A point in time as whole microseconds since 1970-01-01T00:00:00Z — how the stores keep time.
public struct Timestamp: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var microseconds: Int64

    public init(microseconds: Int64) { self.microseconds = microseconds }

    /// Converts from seconds since 1970 (e.g. `Date().timeIntervalSince1970`).
    public init(secondsSince1970 seconds: Double) {
        microseconds = Int64((seconds * 1_000_000).rounded())
    }

    public var secondsSince1970: Double { Double(microseconds) / 1_000_000 }

    /// This time moved by `microseconds` (saturating at the representable range rather than trapping).
    public func adding(microseconds delta: Int64) -> Timestamp {
        let (sum, overflow) = microseconds.addingReportingOverflow(delta)
        return Timestamp(microseconds: overflow ? (delta > 0 ? .max : .min) : sum)
    }

    public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool { lhs.microseconds < rhs.microseconds }

    /// ISO 8601 with microseconds and an explicit offset, as Nango prints record timestamps:
    /// `2023-09-18T15:20:35.941305+00:00`.
    public var iso8601: String {
        var out: [UInt8] = []
        out.reserveCapacity(32)
        appendISO8601(to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends ``iso8601`` (`2024-01-31T10:00:00.000000+00:00`) as UTF-8 — the change feed writes
    /// two or three per record, so this builds no strings.
    public func appendISO8601(to out: inout [UInt8]) {
        var seconds = microseconds / 1_000_000
        var micros = microseconds % 1_000_000
        if micros < 0 {
            micros += 1_000_000
            seconds -= 1
        }
        var days = seconds / 86_400
        var secondOfDay = seconds % 86_400
        if secondOfDay < 0 {
            secondOfDay += 86_400
            days -= 1
        }
        let (y, m, d) = Self.civil(fromDays: days)
        func pad(_ value: Int64, _ width: Int) { ASCIIDecimal.append(value, minimumDigits: width, to: &out) }
        pad(y, 4)
        out.append(UInt8(ascii: "-"))
        pad(m, 2)
        out.append(UInt8(ascii: "-"))
        pad(d, 2)
        out.append(UInt8(ascii: "T"))
        pad(secondOfDay / 3600, 2)
        out.append(UInt8(ascii: ":"))
        pad(secondOfDay / 60 % 60, 2)
        out.append(UInt8(ascii: ":"))
        pad(secondOfDay % 60, 2)
        out.append(UInt8(ascii: "."))
        pad(micros, 6)
        out.append(contentsOf: "+00:00".utf8)
    }

    public var description: String { iso8601 }

    /// Parses ISO 8601 / RFC 3339 date-times: `2024-01-31T10:00:00Z`, with optional fraction
    /// (up to microseconds kept) and `Z` or `±hh:mm` offset; a bare date `2024-01-31` means midnight UTC.
    public init?(iso8601 text: String) {
        let b = Array(text.utf8)
        func num(_ start: Int, _ count: Int) -> Int64? {
            guard start + count <= b.count else { return nil }
            var v: Int64 = 0
            for i in start..<(start + count) {
                guard b[i] >= 0x30, b[i] <= 0x39 else { return nil }
                v = v * 10 + Int64(b[i] - 0x30)
            }
            return v
        }
        guard let y = num(0, 4), b.count >= 10, b[4] == UInt8(ascii: "-"), let mo = num(5, 2), b[7] == UInt8(ascii: "-"),
            let d = num(8, 2), (1...12).contains(mo), (1...31).contains(d)
        else { return nil }
        var h: Int64 = 0
        var mi: Int64 = 0
        var s: Int64 = 0
        var micros: Int64 = 0
        var offsetSeconds: Int64 = 0
        var i = 10
        if i < b.count {
            guard b[i] == UInt8(ascii: "T") || b[i] == UInt8(ascii: "t") || b[i] == UInt8(ascii: " "),
                let hh = num(11, 2), b.count > 13, b[13] == UInt8(ascii: ":"), let mm = num(14, 2)
            else { return nil }
            h = hh
            mi = mm
            i = 16
            if i < b.count, b[i] == UInt8(ascii: ":") {
                guard let ss = num(17, 2) else { return nil }
                s = ss
                i = 19
            }
            if i < b.count, b[i] == UInt8(ascii: ".") {
                i += 1
                var digits = 0
                while i < b.count, b[i] >= 0x30, b[i] <= 0x39 {
                    if digits < 6 { micros = micros * 10 + Int64(b[i] - 0x30) }
                    digits += 1
                    i += 1
                }
                guard digits > 0 else { return nil }
                for _ in digits..<max(digits, 6) { micros *= 10 }
            }
            if i < b.count {
                if b[i] == UInt8(ascii: "Z") || b[i] == UInt8(ascii: "z") {
                    i += 1
                } else if b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") {
                    let sign: Int64 = b[i] == UInt8(ascii: "-") ? -1 : 1
                    guard let oh = num(i + 1, 2) else { return nil }
                    var om: Int64 = 0
                    var next = i + 3
                    if next < b.count, b[next] == UInt8(ascii: ":") {
                        guard let m = num(next + 1, 2) else { return nil }
                        om = m
                        next += 3
                    } else if let m = num(next, 2) {
                        om = m
                        next += 2
                    }
                    offsetSeconds = sign * (oh * 3600 + om * 60)
                    i = next
                } else {
                    return nil
                }
            }
            guard i == b.count, h < 24, mi < 60, s < 61 else { return nil }
        }
        let days = Self.days(fromCivil: y, mo, d)
        let total = days * 86_400 + h * 3600 + mi * 60 + s - offsetSeconds
        microseconds = total * 1_000_000 + micros
    }

    // Howard Hinnant's civil-calendar algorithms.
    static func civil(fromDays z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }

    static func days(fromCivil y0: Int64, _ m: Int64, _ d: Int64) -> Int64 {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }
}

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

extension Timestamp {
    /// The current wall-clock time.
    public static func now() -> Timestamp { Timestamp(secondsSince1970: Date().timeIntervalSince1970) }

    /// This time as a `Date`.
    public var date: Date { Date(timeIntervalSince1970: secondsSince1970) }

    public init(_ date: Date) { self.init(secondsSince1970: date.timeIntervalSince1970) }
}
