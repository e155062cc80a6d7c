/// A bar chart drawn on the server as inline SVG: no script, no image request, styled by classes
/// from `dashboard.css` (the page's CSP allows no inline styles). A pure value: tests read the SVG.
///
/// Each bar may carry a highlighted part drawn over its base (failures among runs, say). Bars keep
/// their value in `data-value` (and `data-part`), and a `<title>` that a pointer or a screen reader reads.
struct BarChart: Sendable {
    struct Bar: Sendable {
        /// Under the axis (only every few bars' label is shown when there are many).
        let label: String
        let value: Double
        /// The highlighted share of `value` (0: none).
        let part: Double
        /// What the bar's tooltip says.
        let title: String

        init(label: String, value: Double, part: Double = 0, title: String) {
            self.label = label
            self.value = value.isFinite ? max(0, value) : 0
            self.part = part.isFinite ? min(max(0, part), self.value) : 0
            self.title = title
        }
    }

    /// The chart's accessible name.
    let name: String
    let bars: [Bar]
    /// Formats an axis value (`12`, `1.5 s`).
    let format: @Sendable (Double) -> String

    static let width = 720.0
    static let height = 180.0
    static let left = 56.0
    static let bottom = 22.0
    static let top = 8.0

    var svg: String {
        let plotWidth = Self.width - Self.left - 4
        let plotHeight = Self.height - Self.bottom - Self.top
        let peak = Self.niceCeiling(bars.map(\.value).max() ?? 0)
        var out = """
            <svg class="chart" viewBox="0 0 \(Int(Self.width)) \(Int(Self.height))" role="img" aria-label="\(Self.escape(name))" \
            xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMinYMin meet">
            """
        // Grid lines at 0, half and the top; the values of 0 and the top (half of a round top may not be round).
        for fraction in [0.0, 0.5, 1.0] {
            let y = Self.top + plotHeight * (1 - fraction)
            out += #"<line class="grid" x1="\#(Self.left)" x2="\#(Self.width - 4)" y1="\#(Self.round(y))" y2="\#(Self.round(y))"/>"#
            if fraction != 0.5 {
                out += #"<text class="axis" x="\#(Self.left - 6)" y="\#(Self.round(y + 4))" text-anchor="end">\#(Self.escape(format(peak * fraction)))</text>"#
            }
        }
        guard !bars.isEmpty else {
            out += #"<text class="empty" x="\#(Self.left + plotWidth / 2)" y="\#(Self.round(Self.top + plotHeight / 2))" text-anchor="middle">No data yet</text>"#
            return out + "</svg>"
        }
        let slot = plotWidth / Double(bars.count)
        let barWidth = max(1, slot * 0.8)
        let labelEvery = max(1, Int((Double(bars.count) / 8).rounded(.up)))
        for (index, bar) in bars.enumerated() {
            let x = Self.left + slot * Double(index) + (slot - barWidth) / 2
            let height = peak > 0 ? plotHeight * bar.value / peak : 0
            let partHeight = peak > 0 ? plotHeight * bar.part / peak : 0
            let base = Self.top + plotHeight
            out += #"<g class="bar" data-value="\#(Self.number(bar.value))" data-part="\#(Self.number(bar.part))"><title>\#(Self.escape(bar.title))</title>"#
            out += #"<rect class="value" x="\#(Self.round(x))" y="\#(Self.round(base - height))" width="\#(Self.round(barWidth))" height="\#(Self.round(height))"/>"#
            if partHeight > 0 {
                out += #"<rect class="part" x="\#(Self.round(x))" y="\#(Self.round(base - partHeight))" width="\#(Self.round(barWidth))" height="\#(Self.round(partHeight))"/>"#
            }
            out += "</g>"
            if index % labelEvery == 0 {
                out += #"<text class="axis" x="\#(Self.round(x + barWidth / 2))" y="\#(Int(Self.height - 6))" text-anchor="middle">\#(Self.escape(bar.label))</text>"#
            }
        }
        return out + "</svg>"
    }

    /// 1, 2 or 5 × a power of ten at or above `value` (at least 1), so the axis reads in round numbers.
    static func niceCeiling(_ value: Double) -> Double {
        guard value.isFinite, value > 0 else { return 1 }
        var magnitude = 1.0
        while magnitude * 10 <= value { magnitude *= 10 }
        while magnitude > value { magnitude /= 10 }
        for step in [1.0, 2.0, 5.0, 10.0] where step * magnitude >= value { return step * magnitude }
        return 10 * magnitude
    }

    static func round(_ value: Double) -> String {
        let tenths = (value * 10).rounded() / 10
        return tenths == tenths.rounded() ? String(Int(tenths)) : String(tenths)
    }

    static func number(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(value)
    }

    /// Text and attribute values in SVG: the five XML specials.
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.count)
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(character)
            }
        }
        return out
    }
}
