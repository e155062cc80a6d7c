import Tributary

/// What the sync needs from the provider: one page of products of a catalog.
///
/// A real application implements this with HTTP calls (through Tributary's proxy once it is
/// available); the example ships an in-memory catalog so it runs anywhere.
public protocol CatalogClient: Sendable {
    /// Products of `catalog` after `cursor` (nil: from the start), at most `limit`; the cursor of the next page or nil.
    func products(catalog: String, after cursor: String?, limit: Int) async throws -> (products: [JSONObject], next: String?)
}

/// A fixed in-memory catalog: `count` products per catalog, priced per catalog.
public struct InMemoryCatalog: CatalogClient {
    public var count: Int
    public var removed: Set<Int>

    public init(count: Int, removed: Set<Int> = []) {
        self.count = count
        self.removed = removed
    }

    public func products(catalog: String, after cursor: String?, limit: Int) async throws -> (products: [JSONObject], next: String?) {
        let start = cursor.flatMap(Int.init) ?? 0
        let end = min(count, start + limit)
        let products: [JSONObject] = (start..<end).filter { !removed.contains($0) }.map { index in
            [
                "id": .string("\(catalog)-\(index)"),
                "catalog": .string(catalog),
                "name": .string("Product \(index)"),
                "price": .string("\(10 + index % 90).00"),
            ]
        }
        return (products, end < count ? String(end) : nil)
    }
}
