import TributaryCore

/// Deterministic `Order` records (11 fields, a nested customer, 1–3 line items; ~420 bytes each),
/// rendered as the JSON page a provider would send: `{"orders":[…],"next_cursor":…}`.
///
/// Rendering writes bytes directly (no string interpolation) so the provider side costs little of
/// the machine the benchmark measures Tributary on.
struct OrderGenerator: Sendable {
    /// Bumps the `status` of every `changeEvery`-th order when `revision` > 0.
    var revision = 0
    var changeEvery = 100
    /// Leaves out every `missingEvery`-th order (offset by half of it), as if deleted at the provider.
    var missingEvery: Int? = nil
    /// `updated_at` of the changed orders (the time they changed).
    var changedAt = "2026-03-01T12:00:00Z"

    /// The orders at positions `start..<start + count` (less the missing ones), with the next cursor `c<end>`.
    func page(from start: Int, count: Int) -> [UInt8] {
        var positions: [Int] = []
        positions.reserveCapacity(count)
        for i in start..<(start + count) {
            if let missingEvery, i % missingEvery == missingEvery / 2 { continue }
            positions.append(i)
        }
        return page(positions: positions, next: "c\(start + count)")
    }

    /// The orders at `positions`, and `next_cursor` (absent when nil).
    func page(positions: [Int], next: String?) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(positions.count * 440 + 64)
        out.append(contentsOf: #"{"orders":["#.utf8)
        for (index, i) in positions.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            appendOrder(i, to: &out)
        }
        out.append(contentsOf: "]".utf8)
        if let next {
            out.append(contentsOf: #","next_cursor":""#.utf8)
            out.append(contentsOf: next.utf8)
            out.append(UInt8(ascii: "\""))
        }
        out.append(UInt8(ascii: "}"))
        return out
    }

    func appendOrder(_ i: Int, to out: inout [UInt8]) {
        let changed = revision > 0 && i % changeEvery == 0
        let customer = i % 9973
        out.append(contentsOf: #"{"id":"ord_"#.utf8)
        Self.appendInt(i, to: &out)
        out.append(contentsOf: #"","number":"#.utf8)
        Self.appendInt(100_000 + i, to: &out)
        out.append(contentsOf: #","status":""#.utf8)
        if changed {
            out.append(contentsOf: "shipped-r".utf8)
            Self.appendInt(revision, to: &out)
        } else {
            out.append(contentsOf: "paid".utf8)
        }
        out.append(contentsOf: #"","currency":"EUR","total":""#.utf8)
        Self.appendInt(i % 1000, to: &out)
        out.append(contentsOf: #".50","customer":{"id":"cus_"#.utf8)
        Self.appendInt(customer, to: &out)
        out.append(contentsOf: #"","email":"customer"#.utf8)
        Self.appendInt(customer, to: &out)
        out.append(contentsOf: #"@example.com","name":"Customer "#.utf8)
        Self.appendInt(customer, to: &out)
        out.append(contentsOf: #""},"line_items":["#.utf8)
        for item in 0..<(i % 3 + 1) {
            if item > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: #"{"sku":"SKU-"#.utf8)
            Self.appendInt((i * 7 + item) % 5000, to: &out)
            out.append(contentsOf: #"","quantity":"#.utf8)
            Self.appendInt(item + 1, to: &out)
            out.append(contentsOf: #","unit_price":""#.utf8)
            Self.appendInt(10 + (i + item) % 90, to: &out)
            out.append(contentsOf: #".99"}"#.utf8)
        }
        out.append(contentsOf: #"],"created_at":"2026-01-01T00:00:00Z","updated_at":""#.utf8)
        out.append(contentsOf: (changed ? changedAt : "2026-02-01T12:00:00Z").utf8)
        out.append(contentsOf: #"","tags":["web","priority-"#.utf8)
        Self.appendInt(i % 3, to: &out)
        out.append(contentsOf: #""]}"#.utf8)
    }

    static func appendInt(_ value: Int, to out: inout [UInt8]) { ASCIIDecimal.append(Int64(value), to: &out) }
}
