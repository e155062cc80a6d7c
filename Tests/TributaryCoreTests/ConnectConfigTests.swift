import Testing
import TributaryCore

/// Connect's configuration (OAuth authorization, verification, the environment's `connect`, auth
/// webhook switches) and its random values (session tokens, PKCE).
@Suite("Connect: configuration and tokens")
struct ConnectConfigTests {
    let yaml = """
        server: { public_url: "https://sync.example.com" }
        environments:
          dev:
            secret_key: dev-key-0123456789abcdef
            connect: { redirect_url: "https://app.example.com/connected?from=tributary", session_minutes: 10 }
            webhooks: { urls: [https://app.example.com/hooks], signing_key: whsec-0123456789abcdef, on_auth_refresh_error: false }
        integrations:
          github:
            auth:
              type: oauth2
              authorization_url: https://github.example.com/login/oauth/authorize
              token_url: https://github.example.com/login/oauth/access_token
              client_id: abc
              client_secret: ${SECRET}
              scopes: [repo, read:user]
              scope_separator: ","
              authorization_params: { allow_signup: "false", prompt: consent }
            syncs: {}
          legacy-oauth:
            auth: { type: oauth2, token_url: https://x.example.com/token, client_id: a, client_secret: b }
            syncs: {}
          keyed:
            auth: { type: api_key, header: X-Api-Key, verification: { method: get, path: /me } }
            syncs: {}
          machine:
            auth: { type: oauth2_client_credentials, token_url: https://x.example.com/token }
            syncs: {}
        """

    @Test func parsesOAuthAuthorizationVerificationAndTheEnvironmentsConnectSettings() throws {
        let config = try ConfigLoader.parse(yaml: yaml, file: "c.yaml", environment: ["SECRET": "s3cret"])
        let github = try #require(config.integration("github", in: "dev"))
        let authorization = try #require(github.oauthAuthorization)
        #expect(authorization.authorizationURL == "https://github.example.com/login/oauth/authorize")
        #expect(authorization.scopes == ["repo", "read:user"] && authorization.scopeSeparator == "," && authorization.usesPKCE)
        #expect(authorization.parameters.map(\.name) == ["allow_signup", "prompt"])
        #expect(github.isConnectable)
        #expect(config.integration("legacy-oauth", in: "dev")?.isConnectable == false, "an oauth2 integration without authorization_url is import-only")
        #expect(config.integration("machine", in: "dev")?.isConnectable == false)
        let keyed = try #require(config.integration("keyed", in: "dev"))
        #expect(keyed.verification == ConnectVerification(method: "GET", path: "/me") && keyed.isConnectable)
        let dev = try #require(config.environment(named: "dev"))
        #expect(dev.connect.redirectURL == "https://app.example.com/connected?from=tributary" && dev.connect.sessionSeconds == 600)
        #expect(dev.webhooks.sendOnAuthCreation && !dev.webhooks.sendOnAuthRefreshError)
    }

    @Test func connectMistakesAreReportedWithTheirLine() {
        func problems(_ text: String) -> [ConfigIssue] {
            do {
                _ = try ConfigLoader.parse(yaml: text, file: "c.yaml", environment: ["SECRET": "s"])
                return []
            } catch { return error.issues }
        }
        let reserved = problems(yaml.replacingOccurrences(of: "prompt: consent", with: "state: fixed"))
        #expect(reserved.contains { $0.message.contains("'state' is set by the flow itself") && $0.line == 17 })
        let badURL = problems(yaml.replacingOccurrences(of: "https://github.example.com/login/oauth/authorize", with: "javascript:alert(1)"))
        #expect(badURL.contains { $0.message.contains("authorization_url must be an http:// or https:// URL") })
        let verificationOnOAuth = problems(yaml.replacingOccurrences(of: "scope_separator: \",\"", with: "verification: { path: /me }"))
        #expect(verificationOnOAuth.contains { $0.message.contains("'verification' does not apply to type oauth2") })
        let pkceWithoutFlow = problems(yaml.replacingOccurrences(of: "client_id: a, client_secret: b }", with: "client_id: a, client_secret: b, disable_pkce: true }"))
        #expect(pkceWithoutFlow.contains { $0.message.contains("'disable_pkce' does not apply") })
        let redirect = problems(yaml.replacingOccurrences(of: "https://app.example.com/connected?from=tributary", with: "app.example.com/x#y"))
        #expect(redirect.contains { $0.message.contains("connect.redirect_url must be an http:// or https:// URL") && $0.line == 5 })
        let minutes = problems(yaml.replacingOccurrences(of: "session_minutes: 10", with: "session_minutes: 0"))
        #expect(minutes.contains { $0.message.contains("session_minutes must be a whole number from 1 to 1440") })
        let method = problems(yaml.replacingOccurrences(of: "method: get", with: "method: DELETE"))
        #expect(method.contains { $0.message.contains("verification.method must be GET, POST or HEAD") })
    }

    @Test func onEventFunctionsAreListedPerIntegrationAndEvent() throws {
        let withEvents = yaml.replacingOccurrences(
            of: "  keyed:\n", with: "  keyed:\n    on_events: { validate-connection: [check-key, check-plan], pre-connection-deletion: revoke }\n")
        let config = try ConfigLoader.parse(yaml: withEvents, file: "c.yaml", environment: ["SECRET": "s"])
        let keyed = try #require(config.integration("keyed", in: "dev"))
        #expect(keyed.onEvents == [.validateConnection: ["check-key", "check-plan"], .preConnectionDeletion: ["revoke"]])
        func problems(_ text: String) -> [ConfigIssue] {
            do {
                _ = try ConfigLoader.parse(yaml: text, file: "c.yaml", environment: ["SECRET": "s"])
                return []
            } catch { return error.issues }
        }
        let unknown = problems(withEvents.replacingOccurrences(of: "pre-connection-deletion", with: "pre-connection-delete"))
        #expect(unknown.contains { $0.message.contains("unknown key 'pre-connection-delete'") && $0.message.contains("did you mean 'pre-connection-deletion'") })
        let badName = problems(withEvents.replacingOccurrences(of: "revoke }", with: "\"re voke\" }"))
        #expect(badName.contains { $0.message.contains("'re voke' is not a function name") })
    }

    @Test func pkceFollowsRFC7636AndTokensHaveTheirForm() {
        // RFC 7636 appendix B.
        #expect(ConnectToken.challenge(for: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
        // RFC 4648 §10 vectors, in the URL alphabet without padding.
        let vectors = ["": "", "f": "Zg", "fo": "Zm8", "foo": "Zm9v", "foob": "Zm9vYg", "fooba": "Zm9vYmE", "foobar": "Zm9vYmFy"]
        for (text, encoded) in vectors { #expect(ConnectToken.base64URL(Array(text.utf8)) == encoded) }
        #expect(ConnectToken.base64URL([0xFB, 0xFF]) == "-_8")
        let verifier = ConnectToken.newCodeVerifier()
        #expect((43...128).contains(verifier.count) && verifier.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" })
        let token = ConnectToken.newSessionToken()
        #expect(ConnectToken.looksLikeSessionToken(token) && token != ConnectToken.newSessionToken())
        #expect(!ConnectToken.looksLikeSessionToken(token.uppercased()) && !ConnectToken.looksLikeSessionToken(token + "0"))
        #expect(!ConnectToken.looksLikeSessionToken("nango_connect_session_" + String(repeating: "g", count: 64)))
        #expect(ConnectToken.hash(token).count == 64 && ConnectToken.hash(token) != ConnectToken.hash(token + "x"))
        #expect(ConnectToken.newState().count == 64)
    }
}
