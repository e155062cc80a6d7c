/// One customer's connection: unique per (environment, integration, connection id).
public struct ConnectionRef: Hashable, Sendable, CustomStringConvertible {
    public var environment: String
    public var providerConfigKey: String
    public var connectionId: String

    public init(environment: String, providerConfigKey: String, connectionId: String) {
        self.environment = environment
        self.providerConfigKey = providerConfigKey
        self.connectionId = connectionId
    }

    public var description: String { "\(environment)/\(providerConfigKey)/\(connectionId)" }
}

/// One variant of one sync inside one connection: the unit that runs, has a schedule, a
/// checkpoint, a `lastSyncDate` and its own records.
public struct VariantRef: Hashable, Sendable, CustomStringConvertible {
    public var connection: ConnectionRef
    public var syncName: String
    public var variant: String

    public init(connection: ConnectionRef, syncName: String, variant: String = Variant.base) {
        self.connection = connection
        self.syncName = syncName
        self.variant = variant
    }

    public var description: String { "\(connection) \(syncName)::\(variant)" }

    /// The dataset this variant writes for `model`.
    public func dataset(_ model: String) -> DatasetRef {
        DatasetRef(connection: connection, model: model, variant: variant)
    }
}

/// The records of one model written by one variant of one connection — what `GET /records` reads.
public struct DatasetRef: Hashable, Sendable, CustomStringConvertible {
    public var connection: ConnectionRef
    public var model: String
    public var variant: String

    public init(connection: ConnectionRef, model: String, variant: String = Variant.base) {
        self.connection = connection
        self.model = model
        self.variant = variant
    }

    public var description: String { "\(connection) \(model)::\(variant)" }
}

/// Name rules for variants.
public enum Variant {
    /// The variant every connection gets for each of its syncs.
    public static let base = "base"
    /// Longest allowed variant name.
    public static let maximumLength = 255

    /// Checks a variant name: `^[a-zA-Z0-9_-]+$`, at most 255 characters.
    public static func validate(_ name: String) throws(TributaryError) {
        guard !name.isEmpty, name.utf8.count <= maximumLength,
            name.utf8.allSatisfy({ isAlphanumeric($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") })
        else {
            throw TributaryError(
                .invalidVariant,
                "Variant name \"\(name.prefix(80))\" is invalid: use 1 to 255 characters from a-z, A-Z, 0-9, '_' and '-'.")
        }
    }

    /// `true` when `name` is `base` in any letter case (reserved).
    public static func isBase(_ name: String) -> Bool { name.lowercased() == base }
}

/// Name rules for models: `^[A-Z][a-zA-Z0-9_]*$`.
public enum ModelName {
    public static let maximumLength = 255

    public static func isValid(_ name: String) -> Bool {
        guard let first = name.utf8.first, first >= UInt8(ascii: "A"), first <= UInt8(ascii: "Z"),
            name.utf8.count <= maximumLength
        else { return false }
        return name.utf8.allSatisfy { isAlphanumeric($0) || $0 == UInt8(ascii: "_") }
    }

    public static func validate(_ name: String) throws(TributaryError) {
        guard isValid(name) else {
            throw TributaryError(
                .invalidModel,
                "Model name \"\(name.prefix(80))\" is invalid: it must start with an uppercase letter followed by letters, digits or '_'.")
        }
    }
}

/// Name rules for syncs and integrations: `^[a-zA-Z0-9_-]+$` (integrations also allow '.').
public enum Identifier {
    public static func isValidSyncName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 255
            && name.utf8.allSatisfy { isAlphanumeric($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }
    }

    public static func isValidKey(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 255
            && name.utf8.allSatisfy {
                isAlphanumeric($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".")
            }
    }
}

@inline(__always) func isAlphanumeric(_ byte: UInt8) -> Bool {
    (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
}
