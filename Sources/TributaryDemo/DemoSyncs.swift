#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import TributaryCore

/// Built-in demo sync functions over ``DemoShop``.
public enum DemoSyncs {
    /// Every demo function.
    public static var all: [any SyncFunction] { [DemoOrdersFullSync(), DemoOrdersIncrementalSync()] }
}

/// Full refresh with deletion tracking: lists all of the variant's store orders, page by page,
/// checkpointing after each page so an interrupted run resumes where it stopped.
///
/// Connection metadata tunes it per variant (handy for demos and tests): `"<variant>.page_size"`
/// (default 50), `"<variant>.page_delay_ms"` (a pause after each page, like a slow provider) and
/// `"<variant>.frozen_at"` (an ISO time: the shop's clock stops there, so the data does not change).
public struct DemoOrdersFullSync: SyncFunction {
    public let name = "demo-orders"

    public init() {}

    public func exec(_ nango: any SyncContext) async throws {
        let store = DemoShop.store(forVariant: nango.variant)
        let metadata = try await nango.getMetadata()
        let pageSize = max(1, Int(metadata["\(nango.variant).page_size"]?.int64Value ?? 50))
        let delay = metadata["\(nango.variant).page_delay_ms"]?.int64Value ?? 0
        let clock = metadata["\(nango.variant).frozen_at"]?.stringValue.flatMap(Timestamp.init(iso8601:))?.date ?? Date()
        let orders = DemoShop.orders(store: store, at: clock)
        let checkpoint = try await nango.getCheckpoint()
        var page = Int(checkpoint?["page"]?.int64Value ?? 0)
        if page > 0 { await nango.log("resuming at page \(page) from the checkpoint") }
        while page * pageSize < orders.count {
            let slice = Array(orders[(page * pageSize)..<min(orders.count, (page + 1) * pageSize)])
            try await nango.batchSave(slice, model: "Order")
            if delay > 0 { try await Task.sleep(for: .milliseconds(delay)) }
            page += 1
            try await nango.saveCheckpoint(["page": .number(JSONNumber(page))])
        }
        await nango.log("listed \(orders.count) orders of store \(store)")
    }
}

/// Incremental: saves orders changed since `lastSyncDate` and deletes those that dropped out.
public struct DemoOrdersIncrementalSync: SyncFunction {
    public let name = "demo-orders-incremental"

    public init() {}

    public func exec(_ nango: any SyncContext) async throws {
        let store = DemoShop.store(forVariant: nango.variant)
        let now = Date()
        guard let since = nango.lastSyncDate else {
            try await nango.batchSave(DemoShop.orders(store: store, at: now), model: "OrderChange")
            await nango.log("initial load of store \(store)")
            return
        }
        let (changed, removed) = DemoShop.changes(store: store, since: since, at: now)
        try await nango.batchSave(changed, model: "OrderChange")
        try await nango.batchDelete(ids: removed, model: "OrderChange")
        await nango.log("\(changed.count) changed and \(removed.count) removed orders of store \(store) since \(Timestamp(since).iso8601)")
    }
}
