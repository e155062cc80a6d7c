import Testing
import TributaryCore

@Suite("Preparing a page of records")
struct PreparedRecordPageTests {
    /// Records whose canonical form differs from their input (unsorted keys, integer ids, metadata to
    /// drop); those in `heavy` carry a 64 KB member, so their chunk takes far longer than the others.
    static func page(_ count: Int, heavy: Range<Int> = 0..<0) -> [JSONObject] {
        let bulk = JSONValue.string(String(repeating: "x", count: 65_536))
        return (0..<count).map { index -> JSONObject in
            var object: JSONObject = [
                "total": .number(JSONNumber(Int64(index % 7))), "id": .number(JSONNumber(Int64(index))), "name": .string("order \(index)"),
                "_nango_metadata": ["cursor": "x"],
            ]
            if heavy.contains(index) { object["notes"] = bulk }
            return object
        }
    }

    @Test(arguments: [0, 1, 255, 256, 257, 511, 512, 513, 1000])
    func theSameRecordsInTheSameOrderAsOneByOne(_ count: Int) async throws {
        let objects = Self.page(count)
        let oneByOne = try objects.map { try PreparedRecord($0) }
        for parts in [1, 2, 3, 4, 0, -1, Int.max] {
            let prepared = try await PreparedRecord.preparing(objects, parts: parts)
            #expect(prepared == oneByOne, "\(count) records, \(parts) at once")
        }
        #expect(try await PreparedRecord.preparing(objects) == oneByOne)
    }

    /// The first chunk is the slowest by far, so the others end before it: the page is still put
    /// together in its own order.
    @Test func chunksThatEndOutOfOrderAreKeptInThePagesOrder() async throws {
        let objects = Self.page(1024, heavy: 0..<256)
        let oneByOne = try objects.map { try PreparedRecord($0) }
        for parts in [2, 4] {
            #expect(try await PreparedRecord.preparing(objects, parts: parts) == oneByOne, "\(parts) at once")
        }
    }

    /// The error is the first invalid record's in the page's order, not the first one found: the
    /// second chunk (slow) has its bad record last, the third and fourth (fast) theirs first.
    @Test func theFirstInvalidRecordInThePagesOrderIsReported() async throws {
        var objects = Self.page(1024, heavy: 256..<511)
        objects[511] = ["id": ""]
        objects[512] = ["name": "no id"]
        objects[768] = ["id": 1.5]
        for parts in [2, 4] {
            for _ in 0..<5 {
                let error = await #expect(throws: TributaryError.self) { try await PreparedRecord.preparing(objects, parts: parts) }
                #expect(error?.message == "A record's \"id\" must be 1 to 255 bytes long.", "\(parts) at once")
            }
        }
        objects[511] = ["id": 511]
        let error = await #expect(throws: TributaryError.self) { try await PreparedRecord.preparing(objects, parts: 4) }
        #expect(error?.message == "A record has no \"id\" field; every record needs a string or integer id.")
    }

    /// Cancelled while its chunks are under way: the whole page or `CancellationError`, never a part.
    @Test func cancelledMidwayItIsTheWholePageOrCancellation() async throws {
        let objects = Self.page(4096, heavy: 0..<256)
        let oneByOne = try objects.map { try PreparedRecord($0) }
        for attempt in 0..<10 {
            let task = Task { try await PreparedRecord.preparing(objects, parts: 1) }
            try await Task.sleep(for: .milliseconds(attempt))
            task.cancel()
            do {
                #expect(try await task.value == oneByOne)
            } catch is CancellationError {}
        }
    }

    @Test func aCancelledTaskGetsCancellationNotAPartialPage() async throws {
        let objects = Self.page(2048)
        let task = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await PreparedRecord.preparing(objects, parts: 2)
        }
        await #expect(throws: CancellationError.self) { try await task.value }
    }
}
