/// Deterministic `Order` records (about 10 fields plus nested line items), rendered as the JSON
/// page a provider would send: `{"orders":[…],"next_cursor":…}`.
struct OrderGenerator {
    /// Bumps the `status` of every `changeEvery`-th order when `revision` > 0.
    var revision = 0
    var changeEvery = 100

    func page(from start: Int, count: Int) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(count * 420)
        out.append(contentsOf: #"{"orders":["#.utf8)
        for i in start..<(start + count) {
            if i > start { out.append(UInt8(ascii: ",")) }
            appendOrder(i, to: &out)
        }
        out.append(contentsOf: #"],"next_cursor":"c\#(start + count)"}"#.utf8)
        return out
    }

    func appendOrder(_ i: Int, to out: inout [UInt8]) {
        let changed = revision > 0 && i % changeEvery == 0
        let status = changed ? "shipped-r\(revision)" : "paid"
        let items = i % 3 + 1
        var lineItems = ""
        for item in 0..<items {
            if item > 0 { lineItems += "," }
            lineItems += #"{"sku":"SKU-\#((i * 7 + item) % 5000)","quantity":\#(item + 1),"unit_price":"\#(10 + (i + item) % 90).99"}"#
        }
        let text = #"""
            {"id":"ord_\#(i)","number":\#(100000 + i),"status":"\#(status)","currency":"EUR","total":"\#(i % 1000).50","customer":{"id":"cus_\#(i % 9973)","email":"customer\#(i % 9973)@example.com","name":"Customer \#(i % 9973)"},"line_items":[\#(lineItems)],"created_at":"2026-01-01T00:00:00Z","updated_at":"2026-02-01T12:00:00Z","tags":["web","priority-\#(i % 3)"]}
            """#
        out.append(contentsOf: text.utf8)
    }
}
