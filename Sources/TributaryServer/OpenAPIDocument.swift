import Foundation
import Hummingbird
import NIOCore

/// The API's OpenAPI document, shipped as a resource and served at `/openapi.yaml`.
public enum OpenAPIDocument {
    /// The document's text.
    public static func text() throws -> String {
        guard let url = Bundle.module.url(forResource: "openapi", withExtension: "yaml") else {
            throw APIError(.internalServerError, "server_error", "The OpenAPI document is missing from this build.")
        }
        return try String(contentsOf: url, encoding: .utf8)
    }

    static func response() throws -> Response {
        Response(
            status: .ok, headers: [.contentType: "application/yaml; charset=utf-8"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: try text())))
    }
}
