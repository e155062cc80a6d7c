import Testing
import TributaryCore

/// Credentials as Nango's import takes them, stored in one form, and handed to the app in Nango's shape.
@Suite("Connection credentials in Nango's shapes")
struct ConnectionCredentialsTests {
    @Test func nangosImportSpellingsAreStoredInOneForm() throws {
        #expect(try ConnectionCredentials.normalized(["type": "API_KEY", "apiKey": "k"]) == ["type": "API_KEY", "api_key": "k"])
        #expect(throws: TributaryError.self) { try ConnectionCredentials.normalized(["type": "API_KEY", "apiKey": "k", "api_key": "k"]) }
        // JavaScript's Date#getTime: milliseconds since 1970.
        let oauth = try ConnectionCredentials.normalized(["type": "OAUTH2", "access_token": "a", "expires_at": 1_800_000_000_000])
        #expect(oauth["expires_at"] == .string(Timestamp(microseconds: 1_800_000_000_000_000).iso8601))
        #expect(throws: TributaryError.self) { try ConnectionCredentials.normalized(["type": "OAUTH2", "access_token": "a", "expires_at": 1e300]) }
        #expect(try ConnectionCredentials.validate(["type": "API_KEY", "apiKey": "k"], for: .apiKey(header: "X", queryParameter: nil), integration: "i") == "API_KEY")
        // A per-connection OAuth client would make every later refresh fail: refused clearly, not kept.
        let override: JSONObject = ["type": "OAUTH2", "access_token": "a", "config_override": ["client_id": "c"]]
        let refused = #expect(throws: TributaryError.self) {
            try ConnectionCredentials.validate(override, for: .oauth2(tokenURL: "https://t", clientID: "c", clientSecret: Secret("s")), integration: "i")
        }
        #expect(refused?.message.contains("config_override") == true)
    }

    @Test func theAppGetsNangosShapePerType() {
        #expect(ConnectionCredentials.nangoShape(["type": "API_KEY", "api_key": "k"], type: "API_KEY", includeRefreshToken: false) == ["type": "API_KEY", "apiKey": "k"])
        #expect(
            ConnectionCredentials.nangoShape(["type": "BASIC", "username": "u", "password": "p"], type: "BASIC", includeRefreshToken: false)
                == ["type": "BASIC", "username": "u", "password": "p"])
        #expect(ConnectionCredentials.nangoShape([:], type: "NONE", includeRefreshToken: false) == [:])
        let stored: JSONObject = [
            "type": "OAUTH2", "access_token": "a", "refresh_token": "r", "expires_at": "2026-12-04T00:00:00Z",
            "raw": ["access_token": "a", "refresh_token": "r", "expires_in": 3600, "scope": "read"],
        ]
        let withoutRefresh = ConnectionCredentials.nangoShape(stored, type: "OAUTH2", includeRefreshToken: false)
        #expect(withoutRefresh["access_token"] == "a" && withoutRefresh["expires_at"] == "2026-12-04T00:00:00Z")
        #expect(withoutRefresh["refresh_token"] == nil && withoutRefresh["raw"]?["refresh_token"] == nil, "only with refresh_token=true")
        #expect(withoutRefresh["raw"]?["scope"] == "read", "raw is the token endpoint's answer")
        let withRefresh = ConnectionCredentials.nangoShape(stored, type: "OAUTH2", includeRefreshToken: true)
        #expect(withRefresh["refresh_token"] == "r" && withRefresh["raw"]?["refresh_token"] == "r")
        // Before any refresh, raw is what was imported.
        let imported = ConnectionCredentials.nangoShape(["type": "OAUTH2_CC", "token": "t", "client_id": "c", "client_secret": "s"], type: "OAUTH2_CC", includeRefreshToken: false)
        #expect(imported["token"] == "t" && imported["raw"] == ["token": "t", "client_id": "c", "client_secret": "s"])
    }
}
