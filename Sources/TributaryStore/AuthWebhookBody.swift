import TributaryCore

/// The `auth` webhook, in Nango's shape (`NangoAuthWebhookBody`):
///
/// ```json
/// {"from": "nango", "type": "auth", "operation": "creation", "success": true,
///  "connectionId": "…", "providerConfigKey": "github", "authMode": "OAUTH2", "provider": "github",
///  "environment": "dev", "endUser": {"endUserId": "u-1", "organizationId": "o-1", …}, "tags": {…}}
/// ```
///
/// A failure carries `"success": false` and `"error": {"type", "description"}` — a refused token
/// refresh (`operation: refresh`), so the app can ask its user to reconnect. Written in JavaScript's
/// form (``JavaScriptJSON``) so `X-Nango-Signature` verifies.
public enum AuthWebhookBody {
    public enum Operation: String, Sendable {
        /// A new connection made on the Connect page.
        case creation
        /// An existing connection's credentials replaced (a reconnect session).
        case override
        /// A token refresh (sent when it fails).
        case refresh
    }

    /// Nango's `authMode` for a credentials type (`API_KEY`, `BASIC`, `OAUTH2`, `OAUTH2_CC`, `NONE`).
    public static func body(
        operation: Operation, connection: ConnectionRef, provider: String, authMode: String, endUser: JSONObject?, tags: JSONObject?,
        error: (type: String, description: String)? = nil
    ) -> [UInt8] {
        var body: JSONObject = [
            "from": "nango",
            "type": "auth",
            "operation": .string(operation.rawValue),
            "success": .bool(error == nil),
            "connectionId": .string(connection.connectionId),
            "providerConfigKey": .string(connection.providerConfigKey),
            "authMode": .string(authMode),
            "provider": .string(provider),
            "environment": .string(connection.environment),
        ]
        if let endUser, let id = endUser["id"] {
            var user: JSONObject = ["endUserId": id]
            if let organization = endUser["organization"]?["id"] { user["organizationId"] = organization }
            if let email = endUser["email"] { user["endUserEmail"] = email }
            if let userTags = endUser["tags"] { user["tags"] = userTags }
            body["endUser"] = .object(user)
        }
        if let tags, !tags.isEmpty { body["tags"] = .object(tags) }
        if let error { body["error"] = .object(["type": .string(error.type), "description": .string(error.description)]) }
        return JavaScriptJSON.bytes(.object(body))
    }
}
