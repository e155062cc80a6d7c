/// A record ready for the store: its external id, its canonical JSON bytes and their hash.
///
/// Preparing happens in the caller's task (off the database writer), so parsing, canonicalising
/// and hashing a page overlap with the store writing the previous one; a large page of objects is
/// prepared in chunks at once (``preparing(_:parts:)``).
public struct PreparedRecord: Sendable, Equatable {
    /// The record's `id`, as a string.
    public let id: String
    /// Canonical JSON of the record (sorted keys, `id` as a string, no `_nango_metadata`).
    public let json: [UInt8]
    /// ``ContentHash`` of ``json``.
    public let hash: UInt64

    /// Prepares a record object.
    ///
    /// - Throws: ``TributaryError`` `invalid_record` when the record has no usable `id`.
    public init(_ object: JSONObject) throws(TributaryError) {
        var writer = JSONWriter(canonical: true, reservingCapacity: 512)
        try self.init(object, writer: &writer)
    }

    /// Prepares a record object with `writer`'s buffer (a page's records share one writer).
    init(_ object: JSONObject, writer: inout JSONWriter) throws(TributaryError) {
        let id = try Self.externalId(of: object)
        // Written without `_nango_metadata` and with `id` as a string, without copying the object.
        writer.removeAll()
        writer.writeRecord(object, id: id, skipping: RecordMetadata.key)
        self.id = id
        self.json = writer.bytes
        self.hash = writer.hash
    }

    /// A record whose canonical bytes and their hash were written already (``DirectRecordReader``).
    init(id: String, canonicalJSON json: [UInt8], hash: UInt64) {
        self.id = id
        self.json = json
        self.hash = hash
    }

    /// Prepares a record given as any JSON value (it must be an object).
    public init(value: JSONValue) throws(TributaryError) {
        guard case .object(let object) = value else {
            throw TributaryError(.invalidRecord, "A record must be a JSON object with an \"id\".")
        }
        try self.init(object)
    }

    /// The external id of a record: its `id` member, a non-empty string of at most 255 bytes or an integer.
    public static func externalId(of object: JSONObject) throws(TributaryError) -> String {
        let id: String
        switch object["id"] {
        case .string(let s)?:
            id = s
        case .number(let n)? where n.int64Value != nil:
            id = n.text
        case nil:
            throw TributaryError(.invalidRecord, "A record has no \"id\" field; every record needs a string or integer id.")
        default:
            throw TributaryError(.invalidRecord, "A record's \"id\" must be a string or an integer.")
        }
        guard !id.isEmpty, id.utf8.count <= 255 else {
            throw TributaryError(.invalidRecord, "A record's \"id\" must be 1 to 255 bytes long.")
        }
        guard !id.utf8.contains(0) else {
            throw TributaryError(.invalidRecord, "A record's \"id\" must not contain NUL characters.")
        }
        return id
    }
}

/// The `_nango_metadata` block Tributary adds to every record it returns.
public enum RecordMetadata {
    public static let key = "_nango_metadata"
}

/// What last happened to a record, as reported in `_nango_metadata.last_action`.
public enum RecordAction: String, Sendable, Hashable, CaseIterable {
    case added = "ADDED"
    case updated = "UPDATED"
    case deleted = "DELETED"

    /// Parses `added`, `updated` or `deleted` in any letter case (the `filter` query parameter).
    public init?(filterValue: some StringProtocol) {
        switch filterValue.lowercased() {
        case "added": self = .added
        case "updated": self = .updated
        case "deleted": self = .deleted
        default: return nil
        }
    }
}
