/// Checks credentials given for a connection (`POST /connections`, `tributary dryrun
/// --credentials`) against the integration's auth scheme, before they are sealed.
///
/// Accepted forms: `{"type": "NONE"}`, `API_KEY {api_key}` (auth `api_key` and `bearer`),
/// `BASIC {username, password}`, `OAUTH2 {access_token, refresh_token?, expires_at?}`,
/// `OAUTH2_CC {token, client_id, client_secret, expires_at?}`.
public enum ConnectionCredentials {
    /// The credential types, in the order error messages list them.
    public static let types = ["NONE", "API_KEY", "BASIC", "OAUTH2", "OAUTH2_CC"]

    /// Validates `credentials` for `auth` and returns their type.
    /// - Throws: `invalid_credentials` naming the field that is missing, unknown or malformed, or
    ///   the type the integration's auth scheme needs.
    public static func validate(_ credentials: JSONObject, for auth: AuthScheme, integration: String) throws -> String {
        func fail(_ message: String) -> TributaryError { TributaryError(.invalidCredentials, message) }
        guard let type = credentials["type"]?.stringValue else {
            throw fail("credentials.type is required: \(types.joined(separator: ", ")).")
        }
        let fields: [String: (required: Bool, kind: String)]
        switch type {
        case "NONE": fields = [:]
        case "API_KEY": fields = ["api_key": (true, "string")]
        case "BASIC": fields = ["username": (true, "string"), "password": (true, "string")]
        case "OAUTH2": fields = ["access_token": (true, "string"), "refresh_token": (false, "string"), "expires_at": (false, "date")]
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
            case .string(let s)?:
                if field.kind == "date", Timestamp(iso8601: s) == nil { throw fail("credentials.\(key) must be an ISO 8601 date-time.") }
                if field.kind == "string", s.utf8.count > 8192 { throw fail("credentials.\(key) is too long.") }
                if field.kind == "string", s.isEmpty, type != "BASIC" { throw fail("credentials.\(key) must not be empty.") }
            default:
                throw fail("credentials.\(key) must be a string.")
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
        let type = try validate(credentials, for: auth, integration: integration)
        if type == "NONE" { return (type, nil) }
        return (type, try cipher.seal(JSONWriter.bytes(.object(credentials))))
    }
}
