#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import TributaryCore

/// A deterministic fake shop whose orders change with the clock, so a demo shows every kind of
/// change without any network: every few seconds a store gets a new order, orders move from
/// `pending` to `paid`, `shipped` and `delivered`, and orders older than the store's window drop
/// out of its listing (the provider "deleted" them).
///
/// Each store (a sync variant's partition) has its own pace and amounts; the `base` variant
/// reads the store named `main`.
public enum DemoShop {
    /// How many recent orders a store lists.
    public static let window = 120
    static let epoch: Int64 = 1_767_225_600  // 2026-01-01T00:00:00Z
    static let statuses = ["pending", "paid", "shipped", "delivered"]

    /// The store a variant reads.
    public static func store(forVariant variant: String) -> String {
        variant == Variant.base ? "main" : variant
    }

    /// Seconds between two orders of `store` (4 to 9).
    static func interval(_ store: String) -> Int64 {
        4 + Int64(ContentHash.hash(Array(store.utf8)) % 6)
    }

    /// The index of the newest order of `store` at `time`.
    static func newestIndex(_ store: String, at time: Date) -> Int64 {
        (Int64(time.timeIntervalSince1970) - epoch) / interval(store)
    }

    /// The orders `store` lists at `time`, oldest first.
    public static func orders(store: String, at time: Date) -> [JSONObject] {
        let newest = newestIndex(store, at: time)
        let oldest = max(0, newest - Int64(window) + 1)
        return (oldest...max(oldest, newest)).map { order(store: store, index: $0, newest: newest) }
    }

    /// Orders of `store` created or changed after `since` that are still listed at `time`, and the
    /// ids that dropped out of the listing between the two times.
    public static func changes(store: String, since: Date, at time: Date) -> (changed: [JSONObject], removed: [String]) {
        let sinceMicros = Timestamp(since).microseconds
        let changed = orders(store: store, at: time).filter { order in
            guard let text = order["updated_at"]?.stringValue, let updated = Timestamp(iso8601: text) else { return true }
            return updated.microseconds > sinceMicros
        }
        let before = newestIndex(store, at: since) - Int64(window) + 1
        let now = newestIndex(store, at: time) - Int64(window) + 1
        let removed = before < now ? (max(0, before)..<max(0, now)).map { "\(store)-\($0)" } : []
        return (changed, removed)
    }

    /// When the order with id `id` (`<store>-<index>`) leaves its store's listing — once `window`
    /// newer orders exist — or nil for an id the shop never issues.
    public static func leavesListing(_ id: String) -> Date? {
        // Ids come back from a store: an index no shop clock reaches is not one of the shop's.
        guard let dash = id.lastIndex(of: "-"), let index = Int64(id[id.index(after: dash)...]), index >= 0, index < 1 << 40 else { return nil }
        let store = String(id[..<dash])
        return Date(timeIntervalSince1970: Double(epoch + (index + Int64(window)) * interval(store)))
    }

    static func order(store: String, index: Int64, newest: Int64) -> JSONObject {
        let step = interval(store)
        let created = epoch + index * step
        let age = newest - index  // in orders
        let stage = Int(min(3, age / 12))
        let updated = created + Int64(stage) * 12 * step
        let seed = ContentHash.hash(Array("\(store)#\(index)".utf8))
        let items = Int(seed % 3) + 1
        var lineItems: [JSONValue] = []
        var total: Int64 = 0
        for item in 0..<items {
            let price = Int64((seed >> (8 * UInt64(item))) % 9000) + 500
            let quantity = Int64(item % 2) + 1
            total += price * quantity
            lineItems.append([
                "sku": .string("SKU-\((seed >> (4 * UInt64(item))) % 1000)"),
                "quantity": .number(JSONNumber(quantity)),
                "unit_price": .string(cents(price)),
            ])
        }
        let customer = Int(seed >> 20) % 50
        return [
            "id": .string("\(store)-\(index)"),
            "store": .string(store),
            "number": .number(JSONNumber(1000 + index)),
            "status": .string(statuses[stage]),
            "currency": .string(store.hasSuffix("eu") ? "EUR" : "USD"),
            "total": .string(cents(total)),
            "customer": ["id": .string("cus_\(customer)"), "email": .string("customer\(customer)@example.com")],
            "line_items": .array(lineItems),
            "created_at": .string(Timestamp(microseconds: created * 1_000_000).iso8601),
            "updated_at": .string(Timestamp(microseconds: updated * 1_000_000).iso8601),
        ]
    }

    static func cents(_ value: Int64) -> String {
        let fraction = value % 100
        return "\(value / 100).\(fraction < 10 ? "0" : "")\(fraction)"
    }
}
