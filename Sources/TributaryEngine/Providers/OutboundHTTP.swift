import AsyncHTTPClient
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import TributaryCore

/// The one HTTP client the process uses to call providers (async-http-client), as a `Service`:
/// it is shut down when the service group stops. One attempt per call; retries, credentials and
/// rate limits are ``ProviderAccess``'s.
public final class OutboundHTTP: Service, Sendable {
    let client: HTTPClient

    public init() {
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow  // a redirect must not carry credentials elsewhere
        configuration.timeout = .init(connect: .seconds(10))
        // A failed connection fails the attempt at once; ProviderAccess's retries (backoff, jitter,
        // a bounded count) decide what happens next, instead of the pool retrying until the deadline.
        configuration.connectionPool.retryConnectionEstablishment = false
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    public func run() async throws {
        try? await gracefulShutdown()
        try await shutdown()
    }

    /// Closes the client's connections (for use outside a service group).
    public func shutdown() async throws {
        try await client.shutdown()
    }

    /// Sends one request and reads the whole response body, up to `maxBytes`.
    ///
    /// - Throws: `provider_error` when the body is larger than `maxBytes` (naming `limitName`, the
    ///   setting that sets it); the client's error on a network failure or timeout.
    func perform(
        method: ProviderRequest.Method, url: String, headers: [(name: String, value: String)], body: [UInt8]?, timeout: Duration, maxBytes: Int,
        limitName: String? = nil
    ) async throws -> ProviderResponse {
        var request = HTTPClientRequest(url: url)
        request.method = NIOHTTP1.HTTPMethod(rawValue: method.rawValue)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        let response = try await client.execute(request, timeout: .milliseconds(Int64(timeout.inSeconds * 1000)))
        let buffer: ByteBuffer
        do {
            buffer = try await response.body.collect(upTo: maxBytes)
        } catch is NIOTooManyBytesError {
            throw TributaryError(
                .providerError, "The provider's response is larger than the limit of \(maxBytes) bytes\(limitName.map { " (\($0))" } ?? "").")
        }
        return ProviderResponse(
            status: Int(response.status.code), headers: response.headers.map { ($0.name, $0.value) }, body: Array(buffer.readableBytesView))
    }
}
