import Foundation
import Synchronization
import Testing
import TributaryCore
import TributaryTestSupport

/// A provider that caps its pages below the `limit` asked for is read completely by a run that
/// detects deletions: a short page does not end the listing there, only an empty one does.
@Suite("Pagination that may end early")
struct ShortPageTests {
    /// 23 records, served 5 per page whatever `limit` says.
    final class CappedProvider: Sendable {
        let requests = Mutex(0)
        func send(_ request: ProviderRequest) async throws -> ProviderResponse {
            requests.withLock { $0 += 1 }
            let offset = Int(request.query.first { $0.name == "offset" }?.value ?? "0") ?? 0
            let page = Int(request.query.first { $0.name == "page" }?.value ?? "0") ?? 0
            let start = request.query.contains { $0.name == "page" } ? (page - 1) * 5 : offset
            let ids = (0..<23).dropFirst(max(0, start)).prefix(5).map { "{\"id\":\"r\($0)\"}" }
            return ProviderResponse(status: 200, headers: [], body: Array("{\"items\":[\(ids.joined(separator: ","))]}".utf8))
        }
    }

    func read(_ style: Pagination.Style, stopsAtShortPage: Bool) async throws -> (ids: [String], requests: Int) {
        let provider = CappedProvider()
        let pagination = Pagination(style, recordsPath: "items", limitParameter: "limit", limit: 10, stopsAtShortPage: stopsAtShortPage)
        var ids: [String] = []
        for try await page in ProviderPages(request: ProviderRequest(.GET, "/items"), pagination: pagination, send: { try await provider.send($0) }) {
            ids += page.records.compactMap { $0["id"]?.stringValue }
        }
        return (ids, provider.requests.withLock { $0 })
    }

    @Test(arguments: [Pagination.Style.offset(offsetParameter: "offset"), .page(pageParameter: "page", firstPage: 1)])
    func aShortPageEndsTheListingOnlyWhenAllowed(_ style: Pagination.Style) async throws {
        let early = try await read(style, stopsAtShortPage: true)
        #expect(early.ids.count == 5, "a short page ends a listing that may stop early")
        let complete = try await read(style, stopsAtShortPage: false)
        #expect(complete.ids == (0..<23).map { "r\($0)" })
        #expect(complete.requests == 6, "five pages of records, then the empty one")
    }

    /// A provider that answers every page past the end with its last (short) page again, as some do —
    /// even with a body that changes on every answer (a timestamp): the listing ends.
    @Test func aProviderRepeatingItsLastPageDoesNotMakeTheListingEndless() async throws {
        let requests = Counter()
        let pages = repeatingProvider(ignoresOffset: false, requests: requests)
        var ids: [String] = []
        for try await page in pages { ids += page.records.compactMap { $0["id"]?.stringValue } }
        #expect(ids == (0..<23).map { "r\($0)" })
        #expect(requests.value.withLock { $0 } == 4, "three pages, then the last one again")
    }

    /// A provider that ignores the offset answers the first full page every time: what was read is not
    /// the listing, so reading it fails — a run that detects deletions must not delete the rest.
    @Test func aProviderIgnoringTheOffsetFailsTheListingInsteadOfEndingIt() async throws {
        let requests = Counter()
        let pages = repeatingProvider(ignoresOffset: true, requests: requests)
        let error = await #expect(throws: TributaryError.self) {
            for try await _ in pages {}
        }
        #expect(error?.code == .providerError)
        #expect(error?.message.contains("same 10 records") == true)
        #expect(requests.value.withLock { $0 } == 2)
    }

    final class Counter: Sendable {
        let value = Mutex(0)
    }

    func repeatingProvider(ignoresOffset: Bool, requests: Counter) -> ProviderPages {
        let pagination = Pagination(.offset(offsetParameter: "offset"), recordsPath: "items", limitParameter: "limit", limit: 10, stopsAtShortPage: false)
        return ProviderPages(request: ProviderRequest(.GET, "/items"), pagination: pagination) { request in
            let answer = requests.value.withLock { count -> Int in
                count += 1
                return count
            }
            let offset = Int(request.query.first { $0.name == "offset" }?.value ?? "0") ?? 0
            let start = ignoresOffset ? 0 : min(offset, 20)
            let ids = (start..<min(start + 10, 23)).map { "{\"id\":\"r\($0)\"}" }
            return ProviderResponse(status: 200, headers: [], body: Array("{\"served_at\":\(answer),\"items\":[\(ids.joined(separator: ","))]}".utf8))
        }
    }

    /// A context of a run that detects deletions; only `send` and `detectsDeletes` are used.
    struct DeletionTrackingContext: StubSyncContext {
        let provider: CappedProvider
        var detectsDeletes: Bool { true }
        func send(_ request: ProviderRequest) async throws -> ProviderResponse { try await provider.send(request) }
    }

    @Test func aRunThatDetectsDeletionsPaginatesToTheEmptyPage() async throws {
        let context = DeletionTrackingContext(provider: CappedProvider())
        let pagination = Pagination(.offset(offsetParameter: "offset"), recordsPath: "items", limitParameter: "limit", limit: 10)
        var count = 0
        for try await page in context.paginate(ProviderRequest(.GET, "/items"), pagination) { count += page.records.count }
        #expect(count == 23)
    }
}
