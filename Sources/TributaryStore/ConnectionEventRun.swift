import TributaryCore

/// One run of an on-event function (``ConnectionEventFunction``) for a connection, with its log lines.
/// Kept by the connection's names, not its row, so it outlives the connection (a
/// `pre-connection-deletion` run, a refused `validate-connection`), until `retention.runs_days`.
public struct ConnectionEventRun: Sendable, Hashable {
    public var id: String
    public var connection: ConnectionRef
    public var event: ConnectionEvent
    public var function: String
    /// Nil when it succeeded.
    public var failure: String?
    public var logs: [RunLogEntry]
    public var startedAt: Timestamp
    public var finishedAt: Timestamp

    /// Log lines one run keeps at most (the last line says how many were dropped).
    public static let maximumLogLines = 200

    public init(
        id: String, connection: ConnectionRef, event: ConnectionEvent, function: String, failure: String?, logs: [RunLogEntry], startedAt: Timestamp,
        finishedAt: Timestamp
    ) {
        self.id = id
        self.connection = connection
        self.event = event
        self.function = function
        self.failure = failure
        self.logs = logs
        self.startedAt = startedAt
        self.finishedAt = finishedAt
    }

    public var succeeded: Bool { failure == nil }

    /// The log lines as stored (a JSON array of `{at, level, message}`).
    public var logsText: String {
        JSONWriter.string(
            .array(logs.map { .object(["at": .string($0.at.iso8601), "level": .string($0.level.rawValue), "message": .string($0.message)]) }), canonical: false)
    }

    /// Log lines read back from ``logsText``.
    public static func logs(from text: String) -> [RunLogEntry] {
        ((try? JSONParser.parse(text))?.arrayValue ?? []).compactMap { line in
            guard let at = line["at"]?.stringValue.flatMap(Timestamp.init(iso8601:)), let level = line["level"]?.stringValue.flatMap(LogLevel.init(rawValue:)),
                let message = line["message"]?.stringValue
            else { return nil }
            return RunLogEntry(at: at, level: level, message: message)
        }
    }
}
