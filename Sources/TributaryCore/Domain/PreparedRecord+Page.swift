#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

extension PreparedRecord {
    /// The most records one task prepares without a break (~0.4 ms here): a large page goes in
    /// chunks of at most this many, so no chunk holds a thread of the shared pool for long.
    package static let chunkSize = 256

    /// How many chunks of a page are prepared at once: the machine's cores, four at most.
    package static let defaultParts = min(4, max(1, ProcessInfo.processInfo.activeProcessorCount))

    /// Prepares a page of record objects, in their order. A page of more than ``chunkSize`` records
    /// is split into chunks of consecutive records (at most ``chunkSize`` each), `parts` of them (by
    /// default one per core, four at most) prepared at once in child tasks, so a sync function's
    /// `batchSave` (canonical JSON and a hash per record, ~1.7 µs each here) uses the machine's
    /// other cores while the store waits for the page.
    ///
    /// - Throws: the error of the first record (in the page's order) that cannot be prepared, as
    ///   preparing them one by one would; `CancellationError` when the task is cancelled meanwhile.
    public static func preparing(_ objects: [JSONObject], parts: Int? = nil) async throws -> [PreparedRecord] {
        try Task.checkCancellation()
        guard objects.count > chunkSize else { return try preparingInOrder(objects[...]).get() }
        let chunks = (objects.count + chunkSize - 1) / chunkSize
        let bounds = (0...chunks).map { objects.count * $0 / chunks }
        let inFlight = max(1, min(parts ?? defaultParts, chunks))
        let results = await withTaskGroup(of: (Int, Result<[PreparedRecord], TributaryError>).self) { group in
            func start(_ chunk: Int) {
                let slice = objects[bounds[chunk]..<bounds[chunk + 1]]
                group.addTask { (chunk, preparingInOrder(slice)) }
            }
            for chunk in 0..<inFlight { start(chunk) }
            var next = inFlight
            var failed = false
            var results = [Result<[PreparedRecord], TributaryError>](repeating: .success([]), count: chunks)
            for await (chunk, result) in group {
                results[chunk] = result
                if case .failure = result { failed = true }
                // Chunks start in page order: once one failed, those not started yet come after it
                // and cannot change the error reported.
                if next < chunks, !failed, !Task.isCancelled {
                    start(next)
                    next += 1
                }
            }
            return results
        }
        // A cancelled page stops between chunks; what was prepared is dropped.
        try Task.checkCancellation()
        var prepared: [PreparedRecord] = []
        prepared.reserveCapacity(objects.count)
        // In order: an earlier chunk's error wins over a later one's, whichever ended first.
        for result in results { prepared.append(contentsOf: try result.get()) }
        return prepared
    }

    /// The records of `objects` one by one, or the first one's error.
    private static func preparingInOrder(_ objects: ArraySlice<JSONObject>) -> Result<[PreparedRecord], TributaryError> {
        Result { () throws(TributaryError) in
            var prepared: [PreparedRecord] = []
            prepared.reserveCapacity(objects.count)
            var writer = JSONWriter(canonical: true, reservingCapacity: 1024)
            for object in objects { prepared.append(try PreparedRecord(object, writer: &writer)) }
            return prepared
        }
    }
}
