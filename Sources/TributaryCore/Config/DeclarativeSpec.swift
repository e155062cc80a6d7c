/// A sync described entirely in `tributary.yaml`: which endpoint to read, how it pages, where the
/// records are and how they map — run by the engine's declarative sync function, no Swift needed.
///
/// `endpoint` and parameter values are templates: `{variant}` is the variant's name and
/// `{metadata.KEY}` the connection's metadata value at `KEY` (after `{variant}` is filled in, so
/// `{metadata.{variant}.store_id}` reads a per-variant setting).
public struct DeclarativeSpec: Sendable, Hashable {
    public struct Parameter: Sendable, Hashable {
        public var name: String
        public var value: String
        public init(_ name: String, _ value: String) {
            self.name = name
            self.value = value
        }
    }

    public var method: ProviderRequest.Method
    public var endpoint: String
    public var params: [Parameter]
    /// nil: one request returns every record.
    public var pagination: Pagination?
    /// Where the records are in a response (dot path); nil: the body is the array. With pagination,
    /// the pagination's own `recordsPath` is this one.
    public var recordsPath: String?
    /// The field that identifies a record (dot path); it becomes the record's `id`.
    public var idField: String
    /// Incremental syncs: the query parameter that receives the `lastSyncDate` (ISO 8601).
    public var incrementalParam: String?
    /// Keep only these fields (dot paths; nil: keep everything).
    public var fields: [String]?
    /// Rename fields: source dot path → target name.
    public var rename: [Parameter]

    public init(
        method: ProviderRequest.Method = .GET, endpoint: String, params: [Parameter] = [], pagination: Pagination? = nil, recordsPath: String? = nil,
        idField: String = "id", incrementalParam: String? = nil, fields: [String]? = nil, rename: [Parameter] = []
    ) {
        self.method = method
        self.endpoint = endpoint
        self.params = params
        self.pagination = pagination
        self.recordsPath = recordsPath
        self.idField = idField
        self.incrementalParam = incrementalParam
        self.fields = fields
        self.rename = rename
    }

    /// Where a filled template goes, which decides how its values are encoded.
    public enum Placement: Sendable {
        /// The endpoint: each value is percent-encoded as one path segment (it can add no `/`, `?`,
        /// `#` or dot segment).
        case path
        /// A query parameter's value: the values go in as they are (the whole value is form-encoded
        /// when the request is sent).
        case queryValue
    }

    /// The most bytes one substituted value, and a whole filled template, may have.
    public static let maximumValueBytes = 2_048
    public static let maximumFilledBytes = 8_192

    /// Fills `{variant}` and `{metadata.KEY}` into `template` in one pass: what a value inserts is
    /// never scanned again (metadata `{"a": "{metadata.a}"}` is just text), and each value is encoded
    /// for its ``Placement``. A `{variant}` inside a metadata key (`{metadata.{variant}.store}`) is
    /// part of the key.
    /// - Throws: `invalid_metadata` naming the key when the connection's metadata lacks it, or when a
    ///   value is too long, or would be a dot segment of the path.
    public static func fill(_ template: String, variant: String, metadata: JSONObject, for placement: Placement = .queryValue) throws -> String {
        func encoded(_ value: String, what: String) throws -> String {
            guard value.utf8.count <= maximumValueBytes else {
                throw TributaryError(.invalidMetadata, "\(what) is \(value.utf8.count) bytes long; a value filled into a request may have \(maximumValueBytes) at most.")
            }
            switch placement {
            case .path: return try URLText.pathSegment(value, what: what)
            case .queryValue: return value
            }
        }
        let variantToken = "{variant}"
        let metadataToken = "{metadata."
        var output = ""
        var rest = Substring(template)
        while let open = rest.firstIndex(of: "{") {
            output += rest[..<open]
            let tail = rest[open...]
            if tail.hasPrefix(variantToken) {
                output += try encoded(variant, what: "The variant name")
                rest = tail.dropFirst(variantToken.count)
            } else if tail.hasPrefix(metadataToken) {
                // The key runs to the first `}` that does not close a `{variant}` inside it.
                var key = ""
                var cursor = tail.dropFirst(metadataToken.count)
                var closed = false
                while let next = cursor.first {
                    if cursor.hasPrefix(variantToken) {
                        key += variant
                        cursor = cursor.dropFirst(variantToken.count)
                    } else if next == "}" {
                        cursor = cursor.dropFirst()
                        closed = true
                        break
                    } else {
                        key.append(next)
                        cursor = cursor.dropFirst()
                    }
                }
                guard closed else {
                    output += tail
                    rest = ""
                    break
                }
                let value = metadata[key] ?? JSONValue.object(metadata).value(atPath: key)
                let rendered: String
                switch value {
                case .string(let s)?: rendered = s
                case .number(let n)?: rendered = n.text
                case .bool(let b)?: rendered = b ? "true" : "false"
                default:
                    throw TributaryError(.invalidMetadata, "The sync needs connection metadata '\(key)' (a string or number), which is not set.")
                }
                output += try encoded(rendered, what: "Connection metadata '\(key)'")
                rest = cursor
            } else {
                output.append("{")
                rest = tail.dropFirst()
            }
            guard output.utf8.count <= maximumFilledBytes else {
                // Not the template itself: configured values (`${VAR}`) may be in it.
                throw TributaryError(.invalidMetadata, "A filled value of the sync's request is longer than \(maximumFilledBytes) bytes.")
            }
        }
        output += rest
        return output
    }

    /// The records of a provider's answer to `request`, found at `recordsPath`, mapped
    /// (``transform(_:)``) and prepared, with the body the next page's position is read from.
    ///
    /// With no `fields` or `rename` and a plain `idField`, the records are read straight from the
    /// response bytes into their canonical form (``DirectRecordReader``), no tree built for them;
    /// the body then holds an empty array where they were, unless `keepingRecordsInBody`. Anything
    /// that path does not vouch for — invalid JSON, a record without a usable id, a key with an
    /// escape or invalid UTF-8 — is read again the usual way, which gives the same records or the
    /// error.
    /// - Throws: `provider_error` for a non-2xx status, a body that is not JSON or no array there;
    ///   `invalid_record` for a record that is not an object or has no id.
    public func preparedRecords(
        of response: ProviderResponse, at recordsPath: String?, answering request: ProviderRequest, keepingRecordsInBody: Bool = false
    ) throws -> (body: JSONValue, records: [PreparedRecord]) {
        if response.isSuccess, !keepingRecordsInBody, readsRecordsDirectly,
            let direct = DirectRecordReader.read(response.body, recordsPath: Pagination.components(recordsPath), idMember: idField)
        {
            return direct
        }
        let (body, records) = try response.records(at: recordsPath, answering: request)
        return (body, try records.map { try PreparedRecord(transform($0)) })
    }

    /// Whether records are saved as the provider sends them, with only `id` set from one member.
    var readsRecordsDirectly: Bool {
        fields == nil && rename.isEmpty && !idField.isEmpty && !idField.utf8.contains(UInt8(ascii: "."))
    }

    /// A provider record as it is saved: `id` from `idField`, then field selection and renaming.
    /// - Throws: `invalid_record` when the record is not an object or has no id.
    public func transform(_ record: JSONValue) throws -> JSONObject {
        guard case .object(let source) = record else { throw TributaryError(.invalidRecord, "A provider record is not a JSON object.") }
        let id: String
        switch record.value(atPath: idField) {
        case .string(let s)? where !s.isEmpty: id = s
        case .number(let n)?: id = n.text
        default: throw TributaryError(.invalidRecord, "A provider record has no '\(idField)' to use as its id.")
        }
        var result = JSONObject()
        if let fields {
            for path in fields {
                if let value = record.value(atPath: path) { result[path] = value }
            }
        } else {
            result = source
        }
        for entry in rename {
            if let value = record.value(atPath: entry.name) {
                result[entry.name] = nil
                result[entry.value] = value
            }
        }
        // Set only when it differs: assigning would copy the whole object (it shares the parsed one).
        // Differs by its bytes: an `id` member that is only canonically equivalent to the id field
        // (`"e\u{301}"` beside `"é"`) is replaced, as `DirectRecordReader` writes the id field's bytes.
        if result["id"]?.stringValue.map({ ExactString.same($0, id) }) != true { result["id"] = .string(id) }
        return result
    }
}
