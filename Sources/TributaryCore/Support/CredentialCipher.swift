import Crypto

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Seals and opens connection credentials with AES-256-GCM (swift-crypto).
///
/// The key comes from the environment (`TRIBUTARY_ENCRYPTION_KEY`, 32 bytes, base64). Sealed
/// bytes are `nonce ‖ ciphertext ‖ tag` (GCM's combined form); opening fails on any change.
public struct CredentialCipher: Sendable {
    private let key: SymmetricKey

    /// - Throws: `invalid_credentials` unless `base64Key` decodes to exactly 32 bytes.
    public init(base64Key: String) throws(TributaryError) {
        guard let data = Data(base64Encoded: base64Key.trimmingSpaces()), data.count == 32 else {
            throw TributaryError(
                .invalidCredentials, "The encryption key must be 32 random bytes, base64-encoded (e.g. `openssl rand -base64 32`).")
        }
        key = SymmetricKey(data: data)
    }

    /// A cipher with a fixed, publicly known key — for the demo and tests only.
    public static let insecureDevelopment = try! CredentialCipher(base64Key: Data(repeating: 7, count: 32).base64EncodedString())

    /// A short name for one sealed version of credentials (hex SHA-256 of the sealed bytes): it
    /// changes whenever they are replaced, and says nothing about what they hold.
    public static func fingerprint(_ sealed: [UInt8]) -> String { Hex.encode(SHA256.hash(data: sealed)) }

    public func seal(_ plaintext: [UInt8]) throws -> [UInt8] {
        guard let combined = try AES.GCM.seal(plaintext, using: key).combined else {
            throw TributaryError(.invalidCredentials, "Could not seal credentials.")
        }
        return Array(combined)
    }

    public func open(_ sealed: [UInt8]) throws -> [UInt8] {
        do {
            return Array(try AES.GCM.open(try AES.GCM.SealedBox(combined: sealed), using: key))
        } catch {
            throw TributaryError(.invalidCredentials, "Stored credentials cannot be decrypted with the configured key.")
        }
    }
}
