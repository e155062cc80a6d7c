import Foundation
import Logging
import Synchronization
import TributaryCore

/// `--log-format json`: one JSON object a line on standard error, for log shippers —
/// `{"time", "level", "label", "message", …metadata}`, metadata as nested JSON (a key that clashes
/// with one of the four is prefixed `meta_`). The text format stays swift-log's own for people.
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    /// Lines from every task go out whole, one after the other.
    private static let output = Mutex(())

    init(label: String, metadataProvider: Logger.MetadataProvider? = nil) {
        self.label = label
        self.metadataProvider = metadataProvider
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let line = Self.line(event, label: label, metadata: metadata, provider: metadataProvider, time: Timestamp.now())
        // A failed write (a full disk, a closed pipe) drops the line; it never stops the process.
        Self.output.withLock { _ in try? FileHandle.standardError.write(contentsOf: Data(line)) }
    }

    /// The line for one event (with its newline).
    static func line(_ event: LogEvent, label: String, metadata base: Logger.Metadata, provider: Logger.MetadataProvider?, time: Timestamp) -> [UInt8] {
        var merged = base
        if let provided = provider?.get() { merged.merge(provided) { _, new in new } }
        if let own = event.metadata { merged.merge(own) { _, new in new } }
        var members: [(String, JSONValue)] = [
            ("time", .string(time.iso8601)), ("level", .string(event.level.rawValue)), ("label", .string(label)),
            ("message", .string(event.message.description)),
        ]
        let reserved: Set<String> = ["time", "level", "label", "message"]
        for (key, value) in merged.sorted(by: { $0.key < $1.key }) {
            members.append((reserved.contains(key) ? "meta_\(key)" : key, json(value)))
        }
        return JSONWriter.bytes(.object(JSONObject(members)), canonical: false) + [0x0A]
    }

    static func json(_ value: Logger.Metadata.Value) -> JSONValue {
        switch value {
        case .string(let text): return .string(text)
        case .stringConvertible(let convertible): return .string(convertible.description)
        case .array(let values): return .array(values.map(json))
        case .dictionary(let dictionary): return .object(JSONObject(dictionary.sorted { $0.key < $1.key }.map { ($0.key, json($0.value)) }))
        }
    }
}
