import HTTPTypes
import Hummingbird
import NIOCore
import TributaryCore
import TributaryEngine

extension API {
    /// Request headers the proxy passes to the provider as they are; others only with the
    /// `Nango-Proxy-` prefix (which is removed), as Nango does.
    static let proxiedHeaders: Set<String> = ["accept", "content-type", "if-none-match", "if-modified-since"]
    /// Response headers the proxy never copies back (per-hop, or recomputed by this server).
    static let hopByHopHeaders: Set<String> = [
        "connection", "keep-alive", "transfer-encoding", "content-length", "te", "trailer", "upgrade", "proxy-authenticate", "server", "date",
    ]

    /// `GET|POST|PUT|PATCH|DELETE /proxy/{anyPath}` with `Connection-Id` and `Provider-Config-Key`:
    /// sends the same method, path (below the integration's `base_url`), query and body to the
    /// provider with the connection's credentials added, and answers with the provider's status,
    /// headers and body. Optional `Retries` header (0…10, default 0): retries on network errors,
    /// 5xx and 429, honouring `Retry-After`; after the last one the provider's answer is returned
    /// as it came.
    func proxy(_ request: Request, _ context: APIRequestContext, method: ProviderRequest.Method) async throws -> Response {
        let environment = try context.requireEnvironment()
        let (connectionId, key) = try connectionHeaders(request)
        if request.header("Base-Url-Override") != nil {
            throw APIError(
                .badRequest, "invalid_headers",
                "Base-Url-Override is not supported: credentials are only sent to the integration's base_url.")
        }
        var retries = 0
        if let text = request.header("Retries") {
            guard let value = Int(text), (0...10).contains(value) else { throw APIError(.badRequest, "invalid_headers", "Retries must be a whole number from 0 to 10.") }
            retries = value
        }
        let integration = try integration(key, in: environment)
        let connection = try await existingConnection(
            ConnectionRef(environment: environment.name, providerConfigKey: integration.providerConfigKey, connectionId: connectionId))
        guard let providers else {
            throw APIError(.serviceUnavailable, "proxy_unavailable", "This Tributary process does not call providers.")
        }
        let endpoint = try Self.proxyEndpoint(path: request.uri.path, query: request.uri.query)

        var outgoing = ProviderRequest(method, endpoint)
        outgoing.retries = retries
        for field in request.headers {
            let name = field.name.canonicalName
            if name.hasPrefix("nango-proxy-"), name.count > "nango-proxy-".count {
                outgoing.headers.append((String(field.name.rawName.dropFirst("nango-proxy-".count)), field.value))
            } else if Self.proxiedHeaders.contains(name) {
                outgoing.headers.append((field.name.rawName, field.value))
            }
        }
        let body = try await request.body(upTo: maxBody)
        if body.readableBytes > 0 { outgoing.body = Array(body.readableBytesView) }

        let answer: ProviderResponse
        do {
            answer = try await providers.send(outgoing, for: connection.ref, freshCredentials: true)
        } catch let unavailable as ProviderUnavailable {
            guard let last = unavailable.response else {
                throw APIError(.badGateway, "provider_unreachable", unavailable.description)
            }
            answer = last
        } catch let error as TributaryError where error.code == .providerError {
            throw APIError(.badGateway, error.code.rawValue, error.message)
        }
        context.logger.info(
            "proxied", metadata: ["connection": "\(connection.ref)", "method": "\(method.rawValue)", "path": "\(request.uri.path)", "status": "\(answer.status)"])
        var headers = HTTPFields()
        for (name, value) in answer.headers where !Self.hopByHopHeaders.contains(name.lowercased()) {
            if let field = HTTPField.Name(name) { headers.append(HTTPField(name: field, value: value)) }
        }
        return Response(status: HTTPResponse.Status(code: answer.status), headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: answer.body)))
    }

    /// The provider path and query of a `/proxy/…` URI, checked to be well-formed percent-encoded text.
    static func proxyEndpoint(path fullPath: String, query: String?) throws -> String {
        let path = String(fullPath.dropFirst("/proxy".count))
        guard path.count > 1 else { throw APIError.invalidURI("Give the provider's path after /proxy, e.g. /proxy/v1/orders.") }
        guard isPercentEncoded(path, allowing: "/:@!$&'()*+,;="), query.map({ isPercentEncoded($0, allowing: "/?:@!$&'()*+,;=") }) ?? true else {
            throw APIError.invalidURI("The proxied path or query has characters that must be percent-encoded.")
        }
        // Every spelling a server may decode to a dot segment: `..`, `%2e%2E`, `.%2e`, `%2E`, …
        guard !URLText.hasDotSegment(path) else {
            throw APIError.invalidURI("The proxied path must not contain '.' or '..' segments.")
        }
        return query.map { path + "?" + $0 } ?? path
    }

    /// Whether `text` holds only unreserved characters, `extra`, and `%` followed by two hex digits.
    static func isPercentEncoded(_ text: String, allowing extra: String) -> Bool {
        let bytes = Array(text.utf8)
        let allowed = Set(extra.utf8)
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "%") {
                guard index + 2 < bytes.count, isHex(bytes[index + 1]), isHex(bytes[index + 2]) else { return false }
                index += 3
                continue
            }
            guard Self.unreserved.contains(byte) || allowed.contains(byte) else { return false }
            index += 1
        }
        return true
    }

    /// RFC 3986 unreserved characters.
    static let unreserved = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~".utf8)

    private static func isHex(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66)
    }
}
