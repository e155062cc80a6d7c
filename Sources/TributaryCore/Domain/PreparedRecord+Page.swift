#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

extension PreparedRecord {
    /// The fewest records a part of a page gets: below twice this a page is prepared in the
    /// caller's task alone (a child task would cost more than it saves).
    public static let minimumPerPart = 64

    /// How many parts a large page is split into: the machine's cores, four at most.
    public static let defaultParts = min(4, max(1, ProcessInfo.processInfo.activeProcessorCount))

    /// Prepares a page of record objects, in their order. A large page is split into up to `parts`
    /// runs of consecutive records, prepared at once in child tasks, so a sync function's
    /// `batchSave` (canonical JSON and a hash per record, ~2 µs each) uses the machine's other
    /// cores while the store waits for the page.
    ///
    /// - Throws: the error of the first record (in the page's order) that cannot be prepared, as
    ///   preparing them one by one would.
    public static func preparing(_ objects: [JSONObject], parts: Int = defaultParts) async throws(TributaryError) -> [PreparedRecord] {
        let parts = max(1, min(parts, objects.count / minimumPerPart))
        guard parts > 1 else { return try preparingInOrder(objects[...]) }
        let bounds = (0...parts).map { objects.count * $0 / parts }
        let results = await withTaskGroup(of: (Int, Result<[PreparedRecord], TributaryError>).self) { group in
            for part in 1..<parts {
                let slice = objects[bounds[part]..<bounds[part + 1]]
                group.addTask { (part, Result { () throws(TributaryError) in try preparingInOrder(slice) }) }
            }
            var results = [Result<[PreparedRecord], TributaryError>](repeating: .success([]), count: parts)
            results[0] = Result { () throws(TributaryError) in try preparingInOrder(objects[bounds[0]..<bounds[1]]) }
            for await (part, result) in group { results[part] = result }
            return results
        }
        var prepared: [PreparedRecord] = []
        prepared.reserveCapacity(objects.count)
        // In order: an earlier part's error wins over a later one's, whichever ended first.
        for result in results { prepared.append(contentsOf: try result.get()) }
        return prepared
    }

    private static func preparingInOrder(_ objects: ArraySlice<JSONObject>) throws(TributaryError) -> [PreparedRecord] {
        var prepared: [PreparedRecord] = []
        prepared.reserveCapacity(objects.count)
        for object in objects { prepared.append(try PreparedRecord(object)) }
        return prepared
    }
}
