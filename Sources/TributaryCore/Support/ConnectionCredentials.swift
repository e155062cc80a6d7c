/// Checks credentials given for a connection (`POST /connections`, `tributary dryrun
/// --credentials`) against the integration's auth scheme, before they are sealed.
///
/// Accepted forms, as Nango's import takes them: `{"type": "NONE"}`, `API_KEY {apiKey}` (or the
/// older `api_key`; auth `api_key` and `bearer`), `BASIC {username, password}`,
/// `OAUTH2 {access_token, refresh_token?, expires_at?}` (Nango's `config_override` is refused),
/// `OAUTH2_CC {token, client_id, client_secret, expires_at?}`; `expires_at` is an ISO 8601 date-time
/// or milliseconds since 1970. They are stored in one form (`api_key`, ISO dates) whichever was sent.
public enum ConnectionCredentials {
    /// The credential types, in the order error messages list them.
    public static let types = ["NONE", "API_KEY", "BASIC", "OAUTH2", "OAUTH2_CC"]

    /// Validates `credentials` for `auth` and returns their type.
    /// - Throws: `invalid_credentials` naming the field that is missing, unknown or malformed, or
    ///   the type the integration's auth scheme needs.
    public static func validate(_ credentials: JSONObject, for auth: AuthScheme, integration: String) throws -> String {
        try validateNormalized(try normalized(credentials), for: auth, integration: integration)
    }

    /// The stored form of credentials in any accepted spelling: Nango's `apiKey` becomes `api_key`, an
    /// `expires_at` in milliseconds becomes an ISO 8601 date-time.
    /// - Throws: `invalid_credentials` when both spellings of a field are given, or a date is out of range.
    public static func normalized(_ credentials: JSONObject) throws -> JSONObject {
        var result = credentials
        if let apiKey = result.removeValue(forKey: "apiKey") {
            guard result["api_key"] == nil else {
                throw TributaryError(.invalidCredentials, "Give credentials.apiKey or credentials.api_key, not both.")
            }
            result["api_key"] = apiKey
        }
        if case .number(let number)? = result["expires_at"] {
            // Milliseconds since 1970, as JavaScript's Date#getTime gives them (Nango coerces dates).
            guard let milliseconds = number.doubleValue, milliseconds.isFinite, abs(milliseconds) < 253_402_300_800_000 else {
                throw TributaryError(.invalidCredentials, "credentials.expires_at must be an ISO 8601 date-time or milliseconds since 1970.")
            }
            result["expires_at"] = .string(Timestamp(microseconds: Int64(milliseconds) * 1_000).iso8601)
        }
        return result
    }

    private static func validateNormalized(_ credentials: JSONObject, for auth: AuthScheme, integration: String) throws -> String {
        func fail(_ message: String) -> TributaryError { TributaryError(.invalidCredentials, message) }
        guard let type = credentials["type"]?.stringValue else {
            throw fail("credentials.type is required: \(types.joined(separator: ", ")).")
        }
        let fields: [String: (required: Bool, kind: String)]
        switch type {
        case "NONE": fields = [:]
        case "API_KEY": fields = ["api_key": (true, "string")]
        case "BASIC": fields = ["username": (true, "string"), "password": (true, "string")]
        case "OAUTH2":
            fields = [
                "access_token": (true, "string"), "refresh_token": (false, "string"), "expires_at": (false, "date"), "config_override": (false, "override"),
            ]
        case "OAUTH2_CC":
            fields = ["token": (true, "string"), "client_id": (true, "string"), "client_secret": (true, "string"), "expires_at": (false, "date")]
        default:
            throw fail("credentials.type '\(type.prefix(40))' is not supported; use \(types.joined(separator: ", ")).")
        }
        for key in credentials.keys where key != "type" && fields[key] == nil {
            throw fail("Unknown field 'credentials.\(key)' for type \(type); allowed: \(fields.keys.sorted().joined(separator: ", ")).")
        }
        for (key, field) in fields {
            switch credentials[key] {
            case nil:
                if field.required { throw fail("credentials.\(key) is required for type \(type).") }
            case _? where field.kind == "override":
                // Nango's per-connection OAuth client: refreshing with it is not built, and keeping it
                // while refreshing with the integration's client would fail every refresh later.
                throw fail(
                    "credentials.config_override (a per-connection OAuth client) is not supported: tokens are refreshed with the integration's client_id and client_secret.")
            case .string(let s)? where field.kind != "override":
                if field.kind == "date", Timestamp(iso8601: s) == nil { throw fail("credentials.\(key) must be an ISO 8601 date-time.") }
                if field.kind == "string", s.utf8.count > 8192 { throw fail("credentials.\(key) is too long.") }
                if field.kind == "string", s.isEmpty, type != "BASIC" { throw fail("credentials.\(key) must not be empty.") }
            default:
                throw fail(field.kind == "override" ? "credentials.\(key) must be an object." : "credentials.\(key) must be a string.")
            }
        }
        let accepted: [String]
        switch auth {
        case .none: accepted = ["NONE"]
        case .apiKey, .bearer: accepted = ["API_KEY"]
        case .basic: accepted = ["BASIC"]
        case .oauth2: accepted = ["OAUTH2"]
        case .oauth2ClientCredentials: accepted = ["OAUTH2_CC"]
        }
        guard accepted.contains(type) else {
            throw fail(
                "Integration '\(integration)' uses auth \(auth.typeName); credentials must be of type \(accepted.joined(separator: " or ")), not \(type).")
        }
        return type
    }

    /// Validates and seals `credentials` for storage; `NONE` seals to nothing.
    public static func seal(_ credentials: JSONObject, for auth: AuthScheme, integration: String, cipher: CredentialCipher) throws
        -> (type: String, sealed: [UInt8]?)
    {
        let stored = try normalized(credentials)
        let type = try validateNormalized(stored, for: auth, integration: integration)
        if type == "NONE" { return (type, nil) }
        return (type, try cipher.seal(JSONWriter.bytes(.object(stored))))
    }

    /// Opened credentials in the shape Nango's `GET /connections/{id}` answers them, per type:
    /// `API_KEY {type, apiKey}`, `BASIC {type, username, password}`, `OAUTH2 {type, access_token,
    /// refresh_token?, expires_at?, raw}`, `OAUTH2_CC {type, token, client_id, client_secret,
    /// expires_at?, raw}`, `NONE {}`. `raw` is the token endpoint's last answer (or, before any
    /// refresh, the imported token fields).
    /// - Parameter includeRefreshToken: Nango's `refresh_token=true`; otherwise the refresh token is
    ///   left out of the credentials and of `raw`.
    public static func nangoShape(_ stored: JSONObject, type: String, includeRefreshToken: Bool) -> JSONObject {
        var result: JSONObject = [:]
        func copy(_ fields: [String]) {
            for field in fields { if let value = stored[field] { result[field] = value } }
        }
        switch type {
        case "API_KEY":
            result = ["type": "API_KEY", "apiKey": stored["api_key"] ?? .string("")]
        case "BASIC":
            result = ["type": "BASIC"]
            copy(["username", "password"])
        case "OAUTH2", "OAUTH2_CC":
            result = ["type": .string(type)]
            copy(type == "OAUTH2" ? ["access_token", "refresh_token", "expires_at"] : ["token", "client_id", "client_secret", "expires_at"])
            var imported = result
            imported["type"] = nil
            imported["config_override"] = nil
            var raw = stored["raw"]?.objectValue ?? imported
            if !includeRefreshToken {
                result["refresh_token"] = nil
                raw["refresh_token"] = nil
            }
            result["raw"] = .object(raw)
        default:
            break
        }
        return result
    }
}
