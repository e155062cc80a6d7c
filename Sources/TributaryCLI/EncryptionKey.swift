#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import TributaryCore

/// The key that seals connection credentials at rest: `TRIBUTARY_ENCRYPTION_KEY` (32 bytes, base64).
enum EncryptionKey {
    static let variable = "TRIBUTARY_ENCRYPTION_KEY"

    /// The cipher for the key in the environment, or nil when it is not set.
    /// - Throws: `invalid_credentials` when it is set but not 32 base64-encoded bytes.
    static func cipherFromEnvironment() throws -> CredentialCipher? {
        guard let key = ProcessInfo.processInfo.environment[variable], !key.isEmpty else { return nil }
        return try CredentialCipher(base64Key: key)
    }
}
