import Tributary

/// A full-refresh sync with deletion tracking, one variant per catalog.
///
/// The catalog a variant reads comes from the connection metadata, namespaced by the variant
/// (`"<variant>.catalog"`, default: the variant's name). Pages are checkpointed, so an interrupted
/// run resumes where it stopped and still detects deletions correctly.
public struct CatalogSync: SyncFunction {
    public let name = "catalog"
    let client: any CatalogClient
    let pageSize: Int

    public init(client: any CatalogClient, pageSize: Int = 100) {
        self.client = client
        self.pageSize = pageSize
    }

    public func exec(_ nango: any SyncContext) async throws {
        let metadata = try await nango.getMetadata()
        let catalog = metadata["\(nango.variant).catalog"]?.stringValue ?? nango.variant
        var cursor = try await nango.getCheckpoint()?["cursor"]?.stringValue
        var pages = 0
        repeat {
            let page = try await client.products(catalog: catalog, after: cursor, limit: pageSize)
            try await nango.batchSave(page.products, model: "Product")
            cursor = page.next
            if let next = page.next { try await nango.saveCheckpoint(["cursor": .string(next)]) }
            pages += 1
        } while cursor != nil
        await nango.log("catalog \(catalog): \(pages) pages")
    }
}
