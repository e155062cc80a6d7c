import Crypto
import Foundation
import TributaryCore

/// A signed-in dashboard session: which environment it sees and the token its forms must carry.
///
/// Sessions are stateless, so every API process of a scale-out deployment accepts them: the cookie
/// holds the environment, an expiry and a random nonce, signed with HMAC-SHA256 under a key derived
/// from the environment secret key the user logged in with. Rotating that key out of the
/// configuration ends its sessions; nothing about a session is stored.
struct DashboardSession: Sendable, Hashable {
    /// The cookie's name.
    static let cookieName = "tributary_session"
    /// How long a login lasts.
    static let lifetimeSeconds: Int64 = 12 * 3600

    /// The environment the session sees.
    let environment: String
    /// Unix seconds after which the cookie is refused.
    let expires: Int64
    /// The cookie's value.
    let cookieValue: String
    /// The anti-CSRF token every form of this session posts (bound to the session's nonce and key).
    let csrfToken: String

    /// Signs a new session for `environment`, keyed with the secret the user presented.
    static func issue(environment: String, secret: String, now: Timestamp = .now()) -> DashboardSession {
        var nonce = [UInt8](repeating: 0, count: 16)
        var generator = SystemRandomNumberGenerator()
        for i in nonce.indices { nonce[i] = generator.next() }
        let expires = Int64(now.secondsSince1970) + lifetimeSeconds
        return make(environment: environment, expires: expires, nonce: Hex.encode(nonce), key: sessionKey(secret))
    }

    /// The session a cookie value carries, when it is well formed, unexpired and signed with one of
    /// the named environment's secret keys; nil otherwise. Compared in constant time.
    static func verify(_ cookieValue: String, environments: [EnvironmentConfig], now: Timestamp = .now()) -> DashboardSession? {
        let parts = cookieValue.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, let nameBytes = base64URLDecode(parts[0]), let expires = Int64(parts[1]), parts[2].utf8.count == 32,
            let mac = base64URLDecode(parts[3])
        else { return nil }
        let name = String(decoding: nameBytes, as: UTF8.self)
        guard expires > Int64(now.secondsSince1970), let environment = environments.first(where: { $0.name == name }) else { return nil }
        let message = signedMessage(environment: name, expires: expires, nonce: String(parts[2]))
        for secret in environment.secretKeys {
            let key = sessionKey(secret.value)
            if HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: message, using: key) {
                return make(environment: name, expires: expires, nonce: String(parts[2]), key: key)
            }
        }
        return nil
    }

    /// Whether a posted form token is this session's (constant time).
    func accepts(csrfToken presented: String?) -> Bool {
        guard let presented else { return false }
        return AuthMiddleware.constantTimeEqual(Array(presented.utf8), Array(csrfToken.utf8))
    }

    private static func make(environment: String, expires: Int64, nonce: String, key: SymmetricKey) -> DashboardSession {
        let mac = HMAC<SHA256>.authenticationCode(for: signedMessage(environment: environment, expires: expires, nonce: nonce), using: key)
        let csrf = HMAC<SHA256>.authenticationCode(for: Array("csrf|\(nonce)".utf8), using: key)
        return DashboardSession(
            environment: environment, expires: expires,
            cookieValue: "\(base64URL(Array(environment.utf8))).\(expires).\(nonce).\(base64URL(Array(mac)))",
            csrfToken: base64URL(Array(csrf)))
    }

    /// The session-signing key: derived from the secret key (never the key itself, so a cookie says
    /// nothing usable about it).
    private static func sessionKey(_ secret: String) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: Array(secret.utf8)), info: Array("tributary dashboard session v1".utf8), outputByteCount: 32)
    }

    private static func signedMessage(environment: String, expires: Int64, nonce: String) -> [UInt8] {
        Array("session|\(environment)|\(expires)|\(nonce)".utf8)
    }

    private static func base64URL(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    private static func base64URLDecode(_ text: Substring) -> [UInt8]? {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        return Data(base64Encoded: base64).map(Array.init)
    }
}
