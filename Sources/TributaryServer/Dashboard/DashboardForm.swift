import Hummingbird

/// The named values of a dashboard request: a posted `application/x-www-form-urlencoded` body, or
/// a page's query string. Missing values are 400s that name the field.
struct DashboardForm: Sendable {
    let values: [String: String]

    subscript(key: String) -> String? { values[key] }

    /// A value that must be present and non-empty.
    func required(_ key: String) throws -> String {
        guard let value = values[key], !value.isEmpty else {
            throw APIError(.badRequest, "missing_field", "'\(key)' is required.")
        }
        return value
    }

    /// The form in a request body (at most `maxBytes`).
    static func read(_ request: Request, maxBytes: Int) async throws -> DashboardForm {
        let body = try await request.body.collect(upTo: maxBytes)
        let text = String(buffer: body)
        guard !text.isEmpty else { return DashboardForm(values: [:]) }
        do {
            return DashboardForm(values: try URLEncodedFormDecoder().decode([String: String].self, from: text))
        } catch {
            throw APIError(.badRequest, "invalid_form", "The form could not be read: send application/x-www-form-urlencoded fields.")
        }
    }

    /// A page's query parameters (the last value of a repeated name).
    static func query(_ request: Request) -> DashboardForm {
        var values: [String: String] = [:]
        for (key, value) in request.uri.queryParameters { values[String(key)] = String(value) }
        return DashboardForm(values: values)
    }
}
