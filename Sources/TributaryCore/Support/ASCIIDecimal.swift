/// Decimal digits of integers appended to UTF-8 byte buffers without intermediate strings — for
/// text written once per record on hot paths (feed cursors, timestamps).
public enum ASCIIDecimal {
    /// Appends `value` in decimal, zero-padded to at least `minimumDigits` digits; a negative value
    /// is written with its sign and no padding.
    public static func append(_ value: Int64, minimumDigits: Int = 1, to out: inout [UInt8]) {
        guard value >= 0 else {
            out.append(contentsOf: String(value).utf8)
            return
        }
        let start = out.count
        var rest = value
        var digits = 0
        repeat {
            out.append(UInt8(ascii: "0") + UInt8(rest % 10))
            rest /= 10
            digits += 1
        } while rest > 0 || digits < minimumDigits
        out[start...].reverse()
    }

    /// Writes `value` in decimal into `buffer` at `position`, moving it past the digits. The buffer
    /// must have room for 20 bytes from `position` (the sign and 19 digits of any `Int64`).
    public static func write(_ value: Int64, into buffer: UnsafeMutableBufferPointer<UInt8>, at position: inout Int) {
        if value < 0 {
            buffer[position] = UInt8(ascii: "-")
            position += 1
        }
        var rest = value.magnitude
        var end = position
        repeat {
            end += 1
            rest /= 10
        } while rest > 0
        rest = value.magnitude
        var index = end
        repeat {
            index -= 1
            buffer[index] = UInt8(ascii: "0") + UInt8(rest % 10)
            rest /= 10
        } while rest > 0
        position = end
    }
}
