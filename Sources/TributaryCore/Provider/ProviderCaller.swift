/// Something that calls the connection's provider: a sync function's context and an action's.
///
/// ``send(_:)`` goes through the integration's `base_url`, the connection's credentials (refreshed
/// when they expire or the provider answers 401), retries with backoff and the connection's rate
/// limit; the helpers here build requests for it.
public protocol ProviderCaller: Sendable {
    /// Calls the connection's provider: the endpoint below the integration's `base_url`, with the
    /// connection's credentials added (refreshed when they expire or the provider answers 401),
    /// retried with backoff on network errors, 5xx and 429 (`Retry-After` honoured), under the
    /// connection's rate limit. Returns the response whatever its status; throws
    /// ``ProviderUnavailable`` when every retry failed.
    func send(_ request: ProviderRequest) async throws -> ProviderResponse

    /// Whether ``paginate(_:_:resumingAfter:)`` reads offset and page styles until an empty page,
    /// never stopping at a short one (a sync run that detects deletions must see every page).
    var readsListingsToTheEnd: Bool { get }
}

extension ProviderCaller {
    public var readsListingsToTheEnd: Bool { false }

    /// `GET endpoint?query` through ``send(_:)``.
    public func get(_ endpoint: String, query: [(name: String, value: String)] = [], headers: [(name: String, value: String)] = []) async throws
        -> ProviderResponse
    {
        try await send(ProviderRequest(.GET, endpoint, query: query, headers: headers))
    }

    /// `POST` a JSON body through ``send(_:)``.
    public func post(_ endpoint: String, json: JSONValue, query: [(name: String, value: String)] = []) async throws -> ProviderResponse {
        try await send(.json(.POST, endpoint, body: json, query: query))
    }

    /// `PUT` a JSON body through ``send(_:)``.
    public func put(_ endpoint: String, json: JSONValue, query: [(name: String, value: String)] = []) async throws -> ProviderResponse {
        try await send(.json(.PUT, endpoint, body: json, query: query))
    }

    /// `PATCH` a JSON body through ``send(_:)``.
    public func patch(_ endpoint: String, json: JSONValue, query: [(name: String, value: String)] = []) async throws -> ProviderResponse {
        try await send(.json(.PATCH, endpoint, body: json, query: query))
    }

    /// `DELETE endpoint?query` through ``send(_:)``.
    public func delete(_ endpoint: String, query: [(name: String, value: String)] = []) async throws -> ProviderResponse {
        try await send(ProviderRequest(.DELETE, endpoint, query: query))
    }

    /// The pages of a paginated endpoint, fetched one at a time as you iterate:
    ///
    /// ```swift
    /// let orders = ProviderRequest(.GET, "/orders", query: [("store", nango.variant)])
    /// for try await page in nango.paginate(orders, Pagination(.cursor(nextCursorPath: "next_cursor", cursorParameter: "cursor"), recordsPath: "orders")) {
    ///     try await nango.batchSave(page.records.compactMap(\.objectValue), model: "Order")
    ///     if let next = page.next { try await nango.saveCheckpoint(["next": .string(next)]) }
    /// }
    /// ```
    /// - Parameter resumingAfter: a ``ProviderPage/next`` saved earlier: start at that page.
    ///
    /// A sync run that detects deletions reads offset and page styles until an empty page, never
    /// stopping at a short one (``Pagination/stopsAtShortPage``).
    public func paginate(_ request: ProviderRequest, _ pagination: Pagination, resumingAfter next: String? = nil) -> ProviderPages {
        var pagination = pagination
        if readsListingsToTheEnd { pagination.stopsAtShortPage = false }
        return ProviderPages(request: request, pagination: pagination, resumingAfter: next) { try await self.send($0) }
    }
}
