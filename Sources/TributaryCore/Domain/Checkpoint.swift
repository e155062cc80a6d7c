/// A variant's checkpoint: a small flat object of strings, numbers and booleans, saved durably so
/// an interrupted run can resume where it stopped.
public struct Checkpoint: Sendable, Hashable, ExpressibleByDictionaryLiteral, CustomStringConvertible {
    /// At most this many keys.
    public static let maximumKeys = 32
    /// Keys at most this many bytes.
    public static let maximumKeyLength = 255
    /// String values at most this many bytes.
    public static let maximumStringLength = 4000

    public private(set) var values: JSONObject

    /// Creates a checkpoint, validating that it is flat and small.
    public init(_ values: JSONObject) throws(TributaryError) {
        guard values.count <= Self.maximumKeys else {
            throw TributaryError(.invalidCheckpoint, "A checkpoint holds at most \(Self.maximumKeys) keys; got \(values.count).")
        }
        for (key, value) in values {
            guard !key.isEmpty, key.utf8.count <= Self.maximumKeyLength else {
                throw TributaryError(.invalidCheckpoint, "Checkpoint keys must be 1 to \(Self.maximumKeyLength) bytes long.")
            }
            switch value {
            case .string(let s) where s.utf8.count > Self.maximumStringLength:
                throw TributaryError(
                    .invalidCheckpoint, "Checkpoint value for \"\(key)\" is longer than \(Self.maximumStringLength) bytes.")
            case .string, .number, .bool:
                continue
            default:
                throw TributaryError(
                    .invalidCheckpoint, "Checkpoint value for \"\(key)\" must be a string, number or boolean (checkpoints are flat).")
            }
        }
        self.values = values
    }

    /// Literal checkpoints in code — `["next": .string(cursor)]`, where the values often come from a
    /// provider. A literal is not checked here (a provider's 5,000-byte cursor must not trap the
    /// process): ``validated()`` checks it, and saving a checkpoint does, failing the run with a clear
    /// error naming the key.
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        values = JSONObject(elements)
    }

    /// The checkpoint, checked to be flat and small.
    /// - Throws: `invalid_checkpoint` naming the key that is not.
    public func validated() throws(TributaryError) -> Checkpoint { try Checkpoint(values) }

    public subscript(key: String) -> JSONValue? { values[key] }

    /// Canonical JSON text of the checkpoint (what the stores persist).
    public var json: String { JSONWriter.string(.object(values)) }

    /// Parses persisted checkpoint JSON.
    public init(json: String) throws(TributaryError) {
        let parsed: JSONValue
        do {
            parsed = try JSONParser.parse(json)
        } catch {
            throw TributaryError(.invalidCheckpoint, "Stored checkpoint is not valid JSON: \(error.message)")
        }
        guard case .object(let object) = parsed else {
            throw TributaryError(.invalidCheckpoint, "A checkpoint must be a JSON object.")
        }
        try self.init(object)
    }

    public var description: String { json }

    /// The checkpoint with every string value's URL credentials removed: query parameters named in
    /// `names` and a `user:password@`. A next link saved by an older version (before links lost the
    /// key they echoed) is shown and resumed from without it.
    public func redactingLinkCredentials(_ names: Set<String>) -> Checkpoint {
        var copy = self
        for (key, value) in values {
            guard case .string(let text) = value else { continue }
            let redacted = URLText.removingCredentials(named: names, from: text)
            if redacted != text { copy.values[key] = .string(redacted) }
        }
        return copy
    }
}
