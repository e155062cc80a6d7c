import Crypto

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// HMAC-SHA256 signatures of webhook bodies: the ones Tributary sends (`X-Nango-Hmac-Sha256`) and
/// the ones providers send with theirs.
public enum WebhookSignature {
    /// The header carrying the signature of a webhook Tributary sends.
    public static let header = "X-Nango-Hmac-Sha256"

    /// The header of Nango's older signature, which its SDK's (deprecated, still shipped)
    /// `verifyWebhookSignature` checks: ``legacySign(_:key:)``.
    public static let legacyHeader = "X-Nango-Signature"

    /// Lowercase hex SHA-256 of the key immediately followed by the body — Nango's `X-Nango-Signature`
    /// (its SDK recomputes it over `JSON.stringify` of the parsed body, which is the body as sent:
    /// compact, keys in order).
    public static func legacySign(_ body: [UInt8], key: String) -> String {
        Hex.encode(SHA256.hash(data: Array(key.utf8) + body))
    }

    /// Lowercase hex HMAC-SHA256 of `body` with `key` — what a receiver recomputes over the exact bytes it got.
    public static func sign(_ body: [UInt8], key: String) -> String {
        Hex.encode(HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Array(key.utf8))))
    }

    /// Whether `signature` is the HMAC-SHA256 of `body` with `secret`: hex (any case) or base64, with
    /// or without a `sha256=` prefix — the forms providers use. Compared in constant time.
    public static func verify(_ signature: String, body: [UInt8], secret: String) -> Bool {
        var text = signature.trimmingSpaces()
        if text.lowercased().hasPrefix("sha256=") { text = String(text.dropFirst("sha256=".count)) }
        guard let given = decodeHex(text) ?? Data(base64Encoded: text).map(Array.init), given.count == SHA256.byteCount else { return false }
        return HMAC<SHA256>.isValidAuthenticationCode(given, authenticating: body, using: SymmetricKey(data: Array(secret.utf8)))
    }

    private static func decodeHex(_ text: String) -> [UInt8]? {
        let utf8 = Array(text.utf8)
        guard utf8.count.isMultiple(of: 2) else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(utf8.count / 2)
        var index = 0
        while index < utf8.count {
            guard let high = nibble(utf8[index]), let low = nibble(utf8[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
