import ArgumentParser
import Foundation
import TributaryCore
import TributarySQLite

/// `tributary backup`: a consistent copy of a live SQLite store.
struct BackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Write a consistent copy of the SQLite store, also while `serve` runs (SQLite's online backup); checked before it is reported.",
        discussion: "PostgreSQL stores are backed up with the database's own tools (pg_dump or a base backup): see docs/OPERATIONS.md.")

    @Option(name: .long, help: "The new file to write (never overwritten).")
    var to: String

    @OptionGroup var options: ConfigOptions

    func run() async throws {
        let output = CLIContext.current.output
        let config = try options.load(output: output).config
        if StoreSelection.choosesPostgres(options.database, config: config.database) {
            throw CLIError(
                "The store is PostgreSQL: back it up with pg_dump (pg_dump --format=custom \"$DATABASE_URL\" > tributary.dump) or a base backup; see docs/OPERATIONS.md.")
        }
        let source = options.database ?? config.database.path
        guard FileManager.default.fileExists(atPath: source) else {
            throw CLIError("There is no SQLite store at '\(source)' to back up.")
        }
        let store = try SQLiteStore(path: source)
        defer { try? store.close() }
        let summary: SQLiteBackupSummary
        do {
            summary = try store.backup(to: to)
        } catch let error as TributaryError {
            throw CLIError(error.message)
        }
        let counts = summary.counts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        output.line("backed up \(source) to \(summary.path) (\(summary.bytes) bytes, integrity ok): \(counts)")
    }
}
