import Foundation
import Synchronization

/// How a provider endpoint pages through results, for ``SyncContext/paginate(_:_:resumingAfter:)``
/// and declarative syncs.
public struct Pagination: Sendable, Hashable {
    public enum Style: Sendable, Hashable {
        /// The response body holds the next page's cursor at `nextCursorPath`; it is sent back as the
        /// query parameter `cursorParameter`. The last page has no (or an empty) cursor.
        case cursor(nextCursorPath: String, cursorParameter: String)
        /// The next page's URL is in the `Link` header (`rel="next"`), or, with `nextURLPath`, in the
        /// body at that path. The last page has none.
        case link(nextURLPath: String?)
        /// The query parameter `offsetParameter` skips the records already read (starting at 0); an
        /// empty page is the last, and so is a short one unless ``Pagination/stopsAtShortPage`` is off.
        case offset(offsetParameter: String)
        /// The query parameter `pageParameter` numbers pages from `firstPage`; an empty page is the
        /// last, and so is a short one unless ``Pagination/stopsAtShortPage`` is off.
        case page(pageParameter: String, firstPage: Int)
    }

    public var style: Style
    /// Where the records are in the response body (dot path); nil: the body is the array of records.
    public var recordsPath: String?
    /// The query parameter that sets the page size, and the size to ask for.
    public var limitParameter: String?
    public var limit: Int?
    /// Offset and page styles: whether a page with fewer records than `limit` is the last. A provider
    /// that caps its page size below `limit` would then seem to end after one page, so runs that
    /// detect deletions turn this off (``SyncContext/paginate(_:_:resumingAfter:)`` does) and read
    /// until an empty page — one request more, never a partial listing that drives deletes.
    public var stopsAtShortPage: Bool

    /// Whether the next position is read from within the records (a cursor or next-link path
    /// below ``recordsPath``): the body a page reader answers must then keep its records.
    var readsNextFromRecords: Bool {
        let path: String?
        switch style {
        case .cursor(let cursorPath, _): path = cursorPath
        case .link(let linkPath): path = linkPath
        case .offset, .page: path = nil
        }
        guard let path else { return false }
        let records = Self.components(recordsPath)
        return Self.components(path).starts(with: records)
    }

    /// The members of a dot path, as ``JSONValue/value(atPath:)`` walks them.
    static func components(_ path: String?) -> [String] {
        path?.split(separator: ".", omittingEmptySubsequences: true).map(String.init) ?? []
    }

    public init(_ style: Style, recordsPath: String? = nil, limitParameter: String? = nil, limit: Int? = nil, stopsAtShortPage: Bool = true) {
        self.stopsAtShortPage = stopsAtShortPage
        self.style = style
        self.recordsPath = recordsPath
        self.limitParameter = limitParameter
        self.limit = limit
    }
}

/// One page read by ``ProviderPages``.
public struct ProviderPage: Sendable {
    /// The records found at the pagination's `recordsPath`.
    public var records: [JSONValue]
    public var response: ProviderResponse
    /// What reads the page after this one (a cursor, an offset, a page number or a URL); nil on the
    /// last page. Save it in a checkpoint to resume there (`paginate(…, resumingAfter:)`).
    public var next: String?
}

/// One page read by ``ProviderPages/forEachPage(preparedBy:_:)``: its records mapped and prepared.
/// The response is not kept: a page waiting for its turn holds only what will be written.
public struct PreparedPage: Sendable {
    public var records: [PreparedRecord]
    /// What reads the page after this one; nil on the last page (see ``ProviderPage/next``).
    public var next: String?
}

/// The pages of a paginated provider endpoint, fetched one at a time as they are iterated — memory
/// holds one page. Created by ``SyncContext/paginate(_:_:resumingAfter:)``.
public struct ProviderPages: AsyncSequence, Sendable {
    public typealias Element = ProviderPage

    let send: @Sendable (ProviderRequest) async throws -> ProviderResponse
    let request: ProviderRequest
    let pagination: Pagination
    let start: String?

    public init(
        request: ProviderRequest, pagination: Pagination, resumingAfter start: String? = nil,
        send: @escaping @Sendable (ProviderRequest) async throws -> ProviderResponse
    ) {
        self.request = request
        self.pagination = pagination
        self.start = start
        self.send = send
    }

    public func makeAsyncIterator() -> Iterator {
        Iterator(pages: self, position: start, finished: false, previousPage: nil)
    }

    /// Calls `body` with every page in order, fetching (and parsing) the pages after it while `body`
    /// runs — a sync function that saves each page overlaps the provider's latency and the parsing
    /// with its own store writes. At most four pages are in memory (``pagesInFlight``). When `body`
    /// throws, the fetch in flight is cancelled and the error is rethrown.
    ///
    /// ```swift
    /// try await nango.paginate(orders, pagination).forEachPage { page in
    ///     try await nango.batchSave(page.records.compactMap(\.objectValue), model: "Order")
    /// }
    /// ```
    public func forEachPage(_ body: (ProviderPage) async throws -> Void) async throws {
        try await forEachPage(preparing: { $0 }, body)
    }

    /// ``forEachPage(_:)`` with a `prepare` step that runs in the fetching task, right after each
    /// page is parsed: the work it does (mapping, ``PreparedRecord``s) overlaps `body` working on
    /// the page before.
    public func forEachPage<Prepared: Sendable>(
        preparing prepare: @escaping @Sendable (ProviderPage) throws -> Prepared, _ body: (Prepared) async throws -> Void
    ) async throws {
        try await pipelined({ iterator in try await iterator.next().map(prepare) }, { for item in $0 { try await body(item) } })
    }

    /// ``forEachPage(_:)`` for a declarative sync: each page's records come mapped by `spec` and
    /// prepared (canonical JSON and hash), read straight from the response bytes where
    /// ``DeclarativeSpec/preparedRecords(of:at:answering:keepingRecordsInBody:)`` can. The page
    /// after is fetched and prepared while `body` runs.
    public func forEachPage(preparedBy spec: DeclarativeSpec, _ body: (PreparedPage) async throws -> Void) async throws {
        try await pipelined(preparedPages(spec), { for item in $0 { try await body(item) } })
    }

    /// ``forEachPage(preparedBy:_:)`` handing `body` every page that is ready when it is free, in
    /// order (one at least, ``batchPages`` at most): a body slower than the fetching side — a store
    /// write — takes the pages that waited for it in one call, and pays its per-call cost (a
    /// transaction) once for them. Memory still holds ``pagesInFlight`` pages at most.
    ///
    /// With `writeExecutor` (``SyncContext/writeExecutor``), `body` runs on it while this is the
    /// only writing side there (``WriteExecutor/isAlone``), and the fetching side on the shared pool:
    /// a body that only saves goes on the moment each write ends.
    public func forEachBatch(
        preparedBy spec: DeclarativeSpec, writingOn writeExecutor: (any WriteExecutor)? = nil, _ body: ([PreparedPage]) async throws -> Void
    ) async throws {
        try await pipelined(maxBatch: Self.batchPages, bodyExecutor: writeExecutor, preparedPages(spec), body)
    }

    /// The fetching side's step of a declarative sync: the next page, mapped by `spec` and prepared.
    private func preparedPages(_ spec: DeclarativeSpec) -> @Sendable (inout Iterator) async throws -> PreparedPage? {
        let keep = pagination.readsNextFromRecords
        return { iterator in
            try await iterator.nextContent { response, request, recordsPath in
                try spec.preparedRecords(of: response, at: recordsPath, answering: request, keepingRecordsInBody: keep)
            } fingerprint: { records in
                records.map(\.hash).withUnsafeBytes { ContentHash.hash($0) }
            }.map { PreparedPage(records: $0.records, next: $0.next) }
        }
    }


    /// How many pages a listing holds at most: those `body` works on, and those ready or being
    /// fetched and prepared after them.
    static let pagesInFlight = 4

    /// How many ready pages ``forEachBatch(preparedBy:_:)`` hands over at once: with four pages in
    /// flight, the fetching side fills the next batch of two while `body` works on one. Measured
    /// (docs/BENCHMARKS.md): a million-record declarative sync 4–6% faster on SQLite than page by
    /// page; three pages at once (larger transactions) made the incremental run slower.
    static let batchPages = 2

    /// Runs `step` for item after item in a child task while `body` works on the items in order,
    /// up to `maxBatch` at a time: each call gets the items ready by then (one at least). The
    /// fetching side runs ahead by up to ``pagesInFlight`` items, counting those in `body`, so a
    /// slow page on one side does not hold up the other. When `body` throws, the fetching side is
    /// cancelled and the error is rethrown; an error from `step` reaches the caller once `body` is
    /// done with the items before it. With `bodyExecutor`, `body` runs on it while this is its only
    /// writing side (re-decided after each call, the scope changed only when the answer does), and
    /// `step` on the global concurrent executor (not inheriting it).
    private func pipelined<Item: Sendable>(
        maxBatch: Int = 1, bodyExecutor: (any WriteExecutor)? = nil, _ step: @escaping @Sendable (inout Iterator) async throws -> Item?,
        _ body: ([Item]) async throws -> Void
    ) async throws {
        let start = makeAsyncIterator()
        try await withThrowingTaskGroup(of: Void.self) { group in
            // The fetching side appends each item to `ready`, then signals it; `body` takes what is ready.
            let ready = ReadyItems<Item>()
            let (arrivals, arrivalsIn) = AsyncStream.makeStream(of: Void.self)
            // A credit lets the fetching side start one more item; `body` hands one back per item done.
            let (credits, creditsIn) = AsyncStream.makeStream(of: Void.self)
            defer {
                creditsIn.finish()
                group.cancelAll()
            }
            for _ in 0..<Self.pagesInFlight { creditsIn.yield() }
            group.addTask(executorPreference: bodyExecutor == nil ? nil : globalConcurrentExecutor) {
                defer { arrivalsIn.finish() }
                var iterator = start
                var tokens = credits.makeAsyncIterator()
                while await tokens.next() != nil {
                    try Task.checkCancellation()
                    guard let item = try await step(&iterator) else { return }
                    ready.append(item)
                    arrivalsIn.yield()
                }
            }
            func work() async throws {
                let batch = ready.take(upTo: maxBatch)
                guard !batch.isEmpty else { return }
                try Task.checkCancellation()
                try await body(batch)
                for _ in batch { creditsIn.yield() }
            }
            // One signal per item: an item signalled but already taken leaves nothing to do.
            bodyExecutor?.join()
            defer { bodyExecutor?.leave() }
            var signals = arrivals.makeAsyncIterator()
            var listed = false
            while !listed {
                // The body's executor for as long as the answer holds (a new scope costs a hop); off
                // it, the global one — not a caller's preference, which may be that same executor.
                let onIt = bodyExecutor?.isAlone ?? false
                let executor: (any TaskExecutor)? = bodyExecutor.map { onIt ? $0 : globalConcurrentExecutor }
                try await withTaskExecutorPreference(executor) {
                    while await signals.next() != nil {
                        try await work()
                        if let bodyExecutor, bodyExecutor.isAlone != onIt { return }
                    }
                    listed = true
                }
            }
            while ready.hasItems { try await work() }
            // The items end at the end of the listing, with the fetching side's error, or when this
            // task is cancelled (the fetching side then stops without one).
            try Task.checkCancellation()
            while try await group.next() != nil {}
        }
    }

    public struct Iterator: AsyncIteratorProtocol, Sendable {
        let pages: ProviderPages
        /// What reads the next page (nil: the first page).
        var position: String?
        var finished: Bool
        /// The hash of the previous page's records, for offset and page styles that read to an empty page:
        /// a provider that answers a page past the end with its last (short) page again would otherwise
        /// be read forever — the same short page twice ends the listing; the same full page twice fails
        /// the read (the provider ignores the position, so the listing cannot be trusted for deletes).
        var previousPage: UInt64?

        public mutating func next() async throws -> ProviderPage? {
            try await nextContent { response, request, recordsPath in
                try response.records(at: recordsPath, answering: request)
            } fingerprint: { records in
                ContentHash.hash(JSONWriter.bytes(.array(records), canonical: true))
            }.map { ProviderPage(records: $0.records, response: $0.response, next: $0.next) }
        }

        /// The next page, its records read from the response by `read` (which also answers the
        /// body the next position is taken from); `fingerprint` tells a repeated page of the offset
        /// and page styles.
        mutating func nextContent<Records: Collection>(
            _ read: (ProviderResponse, ProviderRequest, String?) throws -> (body: JSONValue, records: Records),
            fingerprint: (Records) -> UInt64
        ) async throws -> (records: Records, response: ProviderResponse, next: String?)? {
            guard !finished else { return nil }
            // A listing may never end (a provider that always sends a next link): a pause, reset,
            // delete or shutdown stops it between pages, whatever `send` does.
            try Task.checkCancellation()
            let pagination = pages.pagination
            var request = pages.request
            request.isPage = true
            if let parameter = pagination.limitParameter, let limit = pagination.limit { request.setQuery(parameter, String(limit)) }
            switch pagination.style {
            case .cursor(_, let parameter):
                if let position { request.setQuery(parameter, position) }
            case .link:
                if let position {
                    request.endpoint = position
                    request.query = []  // the next link carries every parameter
                }
            case .offset(let parameter):
                request.setQuery(parameter, position ?? "0")
            case .page(let parameter, let firstPage):
                request.setQuery(parameter, position ?? String(firstPage))
            }
            let response = try await pages.send(request)
            let (body, records) = try read(response, request, pagination.recordsPath)
            if !pagination.stopsAtShortPage, !records.isEmpty {
                switch pagination.style {
                case .offset, .page:
                    // The records, not the body: a body that also carries a timestamp or request id
                    // would never repeat, and the listing would never end.
                    let hash = fingerprint(records)
                    if hash == previousPage {
                        // A short page again is a provider answering past the end with its last page: the
                        // listing is over. A full page again means the provider ignores the position (or
                        // loops): what was read is not the whole listing, and deletes must not trust it.
                        if let limit = pagination.limit, records.count >= limit {
                            throw TributaryError(
                                .providerError,
                                "The provider answered \(request.shownEndpoint) at \(position ?? "the first position") with the same \(records.count) records as the page before: it may ignore the pagination parameter, so the listing is incomplete and nothing is deleted."
                            )
                        }
                        finished = true
                        return nil
                    }
                    previousPage = hash
                case .cursor, .link: break
                }
            }
            let short = records.isEmpty || (pagination.stopsAtShortPage && pagination.limit.map { records.count < $0 } ?? false)
            var next: String? = nil
            switch pagination.style {
            case .cursor(let path, _):
                switch body.value(atPath: path) {
                case .string(let cursor)? where !cursor.isEmpty: next = cursor
                case .number(let number)?: next = number.text
                default: next = nil
                }
            case .link(let path):
                next = (path.map { body.value(atPath: $0)?.stringValue } ?? Self.nextLink(response.header("Link"))).map(URLText.trimmingC0ControlOrSpace)
                if next?.isEmpty == true { next = nil }
                // RFC 3986: a relative link resolves against the URL that returned it (`/api/orders?page=2`
                // from `https://host/api/orders` is `https://host/api/orders?page=2`, not below base_url again).
                if let link = next, let base = response.url { next = Self.resolve(link, against: base) }
                // A link that echoes a credential (`?api_key=…`) is kept without it: it goes into checkpoints,
                // logs and errors. Provider access adds the credential again when it follows the link.
                // A `user:password@` in a link is dropped the same way.
                if let link = next { next = URLText.removingCredentials(named: response.credentialQueryNames, from: link) }
            case .offset:
                next = short ? nil : String((Int(position ?? "0") ?? 0) + records.count)
            case .page(_, let firstPage):
                next = short ? nil : String((Int(position ?? String(firstPage)) ?? firstPage) + 1)
            }
            if next == nil || next == position { finished = true }
            position = next
            return (records, response, finished ? nil : next)
        }

        /// `link` resolved against `base` per RFC 3986; a link that does not parse is kept as it is (provider
        /// access then refuses it or keeps it on the integration's host).
        static func resolve(_ link: String, against base: String) -> String {
            guard let baseURL = URL(string: base), let resolved = URL(string: link, relativeTo: baseURL)?.absoluteURL else { return link }
            return resolved.absoluteString
        }

        /// The `rel="next"` target of an RFC 8288 `Link` header.
        static func nextLink(_ header: String?) -> String? {
            guard let header else { return nil }
            for part in header.split(separator: ",") {
                let pieces = part.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
                guard let target = pieces.first, target.hasPrefix("<"), target.hasSuffix(">") else { continue }
                let isNext = pieces.dropFirst().contains { parameter in
                    let compact = parameter.replacingOccurrences(of: " ", with: "").lowercased()
                    return compact == "rel=\"next\"" || compact == "rel=next"
                }
                if isNext { return String(target.dropFirst().dropLast()) }
            }
            return nil
        }
    }
}

/// Items the fetching side of ``ProviderPages``' pipeline has ready, in order.
private final class ReadyItems<Item: Sendable>: Sendable {
    private let items = Mutex<[Item]>([])

    func append(_ item: Item) { items.withLock { $0.append(item) } }

    /// The oldest `limit` items (fewer when fewer are ready), removed.
    func take(upTo limit: Int) -> [Item] {
        items.withLock { items in
            let count = min(limit, items.count)
            defer { items.removeFirst(count) }
            return Array(items.prefix(count))
        }
    }

    var hasItems: Bool { items.withLock { !$0.isEmpty } }
}
