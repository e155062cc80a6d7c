import TributaryCore

/// One value of a copied row, as the source database holds it.
public enum CopyValue: Sendable, Hashable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])

    /// What kind of value it is, without the value (for error messages: values may be secrets).
    public var kind: String {
        switch self {
        case .null: return "null"
        case .integer: return "integer"
        case .real: return "real"
        case .text: return "text"
        case .blob: return "bytes"
        }
    }

    /// About how many bytes the value takes (for batch budgets).
    public var byteCount: Int {
        switch self {
        case .null: return 1
        case .integer, .real: return 8
        case .text(let text): return text.utf8.count
        case .blob(let bytes): return bytes.count
        }
    }
}

/// How a column is written in the target (PostgreSQL's type), which also decides how values are
/// compared by ``TableChecksum``.
public enum CopyColumnType: String, Sendable, Hashable {
    case integer, boolean, text, bytes, json, real
}

/// A table `tributary migrate` copies: its name, the key rows are copied in order of (and resumed
/// after), and whether that key is an integer.
public struct CopyTable: Sendable, Hashable {
    public var name: String
    public var key: String
    public var integerKey: Bool

    public init(_ name: String, key: String = "id", integerKey: Bool = true) {
        self.name = name
        self.key = key
        self.integerKey = integerKey
    }

    /// Every table of the store, parents before children (foreign keys hold after each batch).
    /// Migration bookkeeping (`grdb_migrations`, `tributary_migrations`, `sqlite_sequence`) is not copied.
    public static let all: [CopyTable] = [
        CopyTable("store_meta", key: "key", integerKey: false),
        CopyTable("connections"), CopyTable("sync_variants"), CopyTable("datasets"), CopyTable("records"),
        CopyTable("runs"), CopyTable("run_logs"), CopyTable("webhook_deliveries"), CopyTable("provider_webhook_tasks"),
        CopyTable("dataset_purges", key: "dataset_id"),
        CopyTable("action_runs", key: "id", integerKey: false), CopyTable("action_logs"),
        CopyTable("connect_sessions", key: "token_hash", integerKey: false),
        CopyTable("connection_event_runs", key: "id", integerKey: false),
    ]

    /// The key value of a row (the column named `key` among `columns`).
    public func keyValue(of row: [CopyValue], columns: [String]) -> CopyValue? {
        columns.firstIndex(of: key).map { row[$0] }
    }
}

/// A table's row count and an order-independent 64-bit checksum (the sum of every row's wyhash over
/// its canonical encoding): equal on both sides when every value was copied, whatever order each
/// database reads its rows in. JSON columns are compared by their canonical form (PostgreSQL's
/// `jsonb` re-spaces and re-orders keys), booleans as 0/1, integers in text columns as their
/// digits, text and bytes as their bytes.
public struct TableChecksum: Sendable, Hashable, CustomStringConvertible {
    public private(set) var rows: Int = 0
    public private(set) var digest: UInt64 = 0

    public init() {}

    public mutating func add(_ row: [CopyValue], types: [CopyColumnType]) {
        var bytes: [UInt8] = []
        for (value, type) in zip(row, types) {
            Self.append(value, type, to: &bytes)
            bytes.append(0x1F)
        }
        digest &+= bytes.withUnsafeBytes { ContentHash.hash($0, seed: 0x7472_6962) }
        rows += 1
    }

    public var description: String { "\(rows) rows, checksum \(String(digest, radix: 16))" }

    static func append(_ value: CopyValue, _ type: CopyColumnType, to out: inout [UInt8]) {
        switch (value, type) {
        case (.null, _):
            out.append(0)
        case (.integer(let number), .boolean):
            out += [1, number != 0 ? 1 : 0]
        case (.integer(let number), .text):
            out.append(5)
            out += Array(String(number).utf8)
        case (.integer(let number), _):
            out.append(2)
            out += Array(String(number).utf8)
        case (.real(let number), _):
            out.append(3)
            out += Array(String(number).utf8)
        case (.text(let text), .json):
            out.append(4)
            out += canonicalJSON(Array(text.utf8))
        case (.blob(let bytes), .json):
            out.append(4)
            out += canonicalJSON(bytes)
        case (.text(let text), _):
            out.append(5)
            out += Array(text.utf8)
        case (.blob(let bytes), _):
            out.append(5)
            out += bytes
        }
    }

    static func canonicalJSON(_ bytes: [UInt8]) -> [UInt8] {
        guard let value = try? JSONParser.parse(bytes) else { return bytes }
        return JSONWriter.bytes(value, canonical: true)
    }
}

/// What a migration's bookkeeping in the target says of an earlier attempt.
public struct CopyProgress: Sendable, Hashable {
    /// The source the copy is of (its absolute path) and its fingerprint when the copy began.
    public var source: String
    public var fingerprint: String
    /// Tables fully copied, and the last key copied of the table in progress.
    public var finishedTables: Set<String>
    public var lastKeys: [String: CopyValue]
    public var finished: Bool

    public init(source: String, fingerprint: String, finishedTables: Set<String> = [], lastKeys: [String: CopyValue] = [:], finished: Bool = false) {
        self.source = source
        self.fingerprint = fingerprint
        self.finishedTables = finishedTables
        self.lastKeys = lastKeys
        self.finished = finished
    }
}
