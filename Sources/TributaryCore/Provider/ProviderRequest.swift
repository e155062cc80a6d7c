#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A call to the connection's provider. The endpoint is a path below the integration's `base_url`
/// (or an absolute URL on the same host, e.g. a `Link` header's next page); credentials are added
/// by Tributary, never by the caller.
public struct ProviderRequest: Sendable {
    /// An HTTP method for provider calls.
    public enum Method: String, Sendable, Hashable, CaseIterable {
        case GET, POST, PUT, PATCH, DELETE
    }

    public var method: Method
    public var endpoint: String
    /// Query parameters, in order (a name may repeat).
    public var query: [(name: String, value: String)]
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]?
    /// Attempts after the first on network errors, 5xx and 429 (nil: the configured default).
    public var retries: Int?
    /// A page of a paginated listing (set by ``ProviderPages``): its response may be
    /// `outbound.max_page_bytes` long at most, which bounds a run's memory.
    public var isPage = false

    public init(
        _ method: Method = .GET, _ endpoint: String, query: [(name: String, value: String)] = [], headers: [(name: String, value: String)] = [],
        body: [UInt8]? = nil, retries: Int? = nil
    ) {
        self.method = method
        self.endpoint = endpoint
        self.query = query
        self.headers = headers
        self.body = body
        self.retries = retries
    }

    /// A request with a JSON body (`Content-Type: application/json`).
    public static func json(_ method: Method, _ endpoint: String, body: JSONValue, query: [(name: String, value: String)] = []) -> ProviderRequest {
        ProviderRequest(method, endpoint, query: query, headers: [("Content-Type", "application/json")], body: JSONWriter.bytes(body, canonical: false))
    }

    /// The endpoint as log lines and errors show it: without its query, fragment and any
    /// `user:password@` (a provider's next link may carry credentials in either), at most 300 characters.
    public var shownEndpoint: String {
        let beforeQuery = endpoint.prefix { $0 != "?" && $0 != "#" }
        return String(URLText.removingUserInfo(from: String(beforeQuery)).prefix(300))
    }

    /// Sets (replaces) a query parameter.
    public mutating func setQuery(_ name: String, _ value: String) {
        query.removeAll { $0.name == name }
        query.append((name, value))
    }
}

/// A provider's answer.
public struct ProviderResponse: Sendable {
    public var status: Int
    /// Response headers as received (names in their original case).
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// The URL that answered, without credentials (set by provider access; nil in hand-made responses).
    /// A relative link in the response resolves against it.
    public var url: String?
    /// Query parameters that carry the connection's credentials (set by provider access): a next link
    /// in the response loses them before it is kept anywhere.
    public var credentialQueryNames: Set<String> = []

    public init(status: Int, headers: [(name: String, value: String)], body: [UInt8], url: String? = nil) {
        self.status = status
        self.headers = headers
        self.body = body
        self.url = url
    }

    /// The first header named `name` (case-insensitive).
    public func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }

    /// The body parsed as JSON.
    /// - Throws: `provider_error` when it is not JSON.
    public func json() throws -> JSONValue {
        do {
            return try JSONParser.parse(body)
        } catch {
            throw TributaryError(.providerError, "The provider's response (HTTP \(status)) is not valid JSON: \(error).")
        }
    }

    public var isSuccess: Bool { (200..<300).contains(status) }

    /// The JSON body of a successful answer to `request` and the array of records at `recordsPath`
    /// (nil: the body is the array).
    /// - Throws: `provider_error` for a non-2xx status, a body that is not JSON, or no array there.
    public func records(at recordsPath: String?, answering request: ProviderRequest) throws -> (body: JSONValue, records: [JSONValue]) {
        guard isSuccess else {
            throw TributaryError(.providerError, "The provider answered HTTP \(status) to \(request.method.rawValue) \(request.shownEndpoint).")
        }
        let body = try json()
        guard let records = (recordsPath.map { body.value(atPath: $0) } ?? body)?.arrayValue else {
            throw TributaryError(.providerError, "The provider's response has no array of records at '\(recordsPath ?? "(the body)")'.")
        }
        return (body, records)
    }
}

extension JSONValue {
    /// The value at a dot-separated path (`data.items`, `meta.next_cursor`, `items.0.id`); the empty
    /// path is the value itself.
    public func value(atPath path: String) -> JSONValue? {
        // One member of an object (a record's `id`, once per record): no splitting.
        if case .object(let object) = self, !path.utf8.contains(UInt8(ascii: ".")) { return path.isEmpty ? self : object[path] }
        var current: JSONValue? = self
        for component in path.split(separator: ".", omittingEmptySubsequences: true) {
            if case .array = current, let index = Int(component) {
                current = current?[index]
            } else {
                current = current?[String(component)]
            }
        }
        return current
    }
}

/// The provider stayed unreachable, or kept answering 5xx or 429, through every retry of a call.
/// A ``RetryableError``: the run is retried later with backoff (`Retry-After` honoured).
public struct ProviderUnavailable: RetryableError, CustomStringConvertible, Sendable {
    /// The last HTTP status, or nil for a network error.
    public var status: Int?
    public var reason: String
    public var retryAfterSeconds: Double?
    /// The provider's last answer (5xx or 429), nil for a network error. The `/proxy` endpoint
    /// hands it back as it came.
    public var response: ProviderResponse?

    public init(status: Int?, reason: String, retryAfterSeconds: Double? = nil, response: ProviderResponse? = nil) {
        self.status = status
        self.reason = reason
        self.retryAfterSeconds = retryAfterSeconds
        self.response = response
    }

    public var description: String {
        status.map { "The provider answered HTTP \($0) through every retry: \(reason)" } ?? "The provider could not be reached through every retry: \(reason)"
    }
}
