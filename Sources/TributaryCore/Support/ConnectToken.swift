import Crypto

/// The random values of the Connect flow, and how they are kept: a session token is handed to the
/// app once and stored only as its SHA-256 (``hash(_:)``), as is an OAuth `state`; a PKCE verifier
/// (RFC 7636) stays on the server, sealed, and only its S256 challenge goes to the provider.
public enum ConnectToken {
    /// The prefix of a session token (Nango's), so a leaked one is recognisable in a secret scanner.
    public static let sessionPrefix = "nango_connect_session_"

    /// A new session token: the prefix and 64 hex digits (256 random bits).
    public static func newSessionToken() -> String { sessionPrefix + Hex.encode(randomBytes(32)) }

    /// A new OAuth `state`: 64 hex digits.
    public static func newState() -> String { Hex.encode(randomBytes(32)) }

    /// A new PKCE code verifier: 64 characters of base64url (RFC 7636 allows 43–128).
    public static func newCodeVerifier() -> String { base64URL(randomBytes(48)) }

    /// The S256 challenge of `verifier`: base64url (no padding) of its SHA-256.
    public static func challenge(for verifier: String) -> String { base64URL(Array(SHA256.hash(data: Array(verifier.utf8)))) }

    /// What is stored in place of a token or state: lowercase hex SHA-256.
    public static func hash(_ token: String) -> String { Hex.encode(SHA256.hash(data: Array(token.utf8))) }

    /// Whether `text` has a session token's form (so a wrong kind of value is refused without a lookup).
    public static func looksLikeSessionToken(_ text: String) -> Bool {
        guard text.hasPrefix(sessionPrefix) else { return false }
        let rest = text.utf8.dropFirst(sessionPrefix.utf8.count)
        return rest.count == 64 && rest.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0) }
    }

    static func randomBytes(_ count: Int) -> [UInt8] {
        SymmetricKey(size: SymmetricKeySize(bitCount: count * 8)).withUnsafeBytes { Array($0) }
    }

    /// Base64url without padding (RFC 4648 §5).
    public static func base64URL(_ bytes: [UInt8]) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count * 4 + 2) / 3)
        var index = 0
        while index < bytes.count {
            let chunk = bytes[index..<min(index + 3, bytes.count)]
            let b0 = chunk[chunk.startIndex], b1 = chunk.count > 1 ? chunk[chunk.startIndex + 1] : 0, b2 = chunk.count > 2 ? chunk[chunk.startIndex + 2] : 0
            out.append(alphabet[Int(b0 >> 2)])
            out.append(alphabet[Int((b0 & 0x03) << 4 | b1 >> 4)])
            if chunk.count > 1 { out.append(alphabet[Int((b1 & 0x0F) << 2 | b2 >> 6)]) }
            if chunk.count > 2 { out.append(alphabet[Int(b2 & 0x3F)]) }
            index += 3
        }
        return String(decoding: out, as: UTF8.self)
    }
}
