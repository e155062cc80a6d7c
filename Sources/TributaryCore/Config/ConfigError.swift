/// One problem found in a configuration file, with its position.
public struct ConfigIssue: Sendable, Equatable, CustomStringConvertible {
    public let file: String
    /// 1-based line (0 when unknown).
    public let line: Int
    /// 1-based column (0 when unknown).
    public let column: Int
    public let message: String

    public init(file: String, line: Int, column: Int, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.message = message
    }

    /// `file:line:column: message`, the form editors and terminals link to.
    public var description: String {
        line > 0 ? "\(file):\(line):\(column): \(message)" : "\(file): \(message)"
    }
}

/// A configuration file that cannot be used; lists every problem found.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    public let issues: [ConfigIssue]
    public init(issues: [ConfigIssue]) { self.issues = issues }
    public var description: String { issues.map(\.description).joined(separator: "\n") }
}
