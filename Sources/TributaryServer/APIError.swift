import HTTPTypes
import Hummingbird
import NIOCore
import TributaryCore

/// An API error: HTTP status, stable code and user-safe message, rendered as
/// `{"error": {"code": …, "message": …}}` (Nango's error shape).
public struct APIError: Error, HTTPResponseError, Sendable, CustomStringConvertible {
    public var status: HTTPResponse.Status
    public var code: String
    public var message: String
    /// The methods a 405 names in its `Allow` header.
    var allow: [HTTPRequest.Method] = []

    public init(_ status: HTTPResponse.Status, _ code: String, _ message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    public var description: String { "\(status.code) \(code): \(message)" }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        let body: JSONValue = ["error": ["code": .string(code), "message": .string(message)]]
        var response = JSONResponse.make(body, status: status)
        // What is left of an oversized body is not read: the connection ends with this answer.
        if status == .contentTooLarge { response.headers[.connection] = "close" }
        if !allow.isEmpty { response.headers[.allow] = allow.map(\.rawValue).joined(separator: ", ") }
        return response
    }

    static func invalidBody(_ message: String) -> APIError { APIError(.badRequest, "invalid_body", message) }
    static func invalidQuery(_ message: String) -> APIError { APIError(.badRequest, "invalid_query_params", message) }
    static func invalidURI(_ message: String) -> APIError { APIError(.badRequest, "invalid_uri_params", message) }
    static func missingHeader(_ name: String, code: String) -> APIError {
        APIError(.badRequest, code, "The \(name) header is required.")
    }

    /// The API form of a domain error: the status follows from its code.
    init(_ error: TributaryError) {
        let status: HTTPResponse.Status
        switch error.code {
        case .unknownConnection, .unknownVariant, .unknownSync, .unknownProviderConfig, .unknownRun: status = .notFound
        case .syncRunning, .variantExists, .runNotRunning, .leaseLost: status = .conflict
        case .storeUnavailable: status = .serviceUnavailable
        case .unknownConnectSession, .connectSessionExpired, .connectSessionUsed: status = .unauthorized
        default: status = .badRequest
        }
        self.init(status, error.code.rawValue, error.message)
    }
}

/// JSON responses.
enum JSONResponse {
    static func make(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        bytes(JSONWriter.bytes(value, canonical: false), status: status)
    }

    static func bytes(_ bytes: [UInt8], status: HTTPResponse.Status = .ok) -> Response {
        Response(
            status: status, headers: [.contentType: "application/json; charset=utf-8"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    static let success = make(["success": true])
}
