import ArgumentParser
import Foundation
import Logging
import TributaryCore
import TributaryPostgres
import TributarySQLite
import TributaryStore

/// `tributary migrate`: moves a SQLite store to PostgreSQL with everything in it.
struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Copy a SQLite store into PostgreSQL — connections, variants with checkpoints and schedules, records with their hashes and feed positions, runs, logs, the webhook outbox — so apps' cursors keep working.",
        discussion: """
            Stop every `serve` on the SQLite file first: a store with live run leases is refused. The target must be a \
            PostgreSQL database with no Tributary data, or this migration's own interrupted copy, which is resumed. \
            --verify compares every table's row count and checksum on both sides (after the copy, or alone on a finished one).
            """)

    @Option(name: .long, help: "The SQLite store to copy (its schema is upgraded first, as `serve` would).")
    var from: String

    @Option(name: .long, help: "The PostgreSQL database to copy into (postgres://user:password@host:5432/db).")
    var to: String

    @Flag(name: .long, help: "Compare row counts and checksums of every table on both sides.")
    var verify = false

    @Option(name: .long, help: "Rows per batch (each batch is one transaction in the target).")
    var batch = 500

    func run() async throws {
        let output = CLIContext.current.output
        guard FileManager.default.fileExists(atPath: from) else { throw CLIError("There is no SQLite store at '\(from)'.") }
        guard (1...5000).contains(batch) else { throw CLIError("--batch must be from 1 to 5000.") }
        let url: PostgresURL
        do { url = try PostgresURL(to) } catch { throw CLIError("--to \(error)") }
        var logger = Logger(label: "tributary.migrate")
        logger.logLevel = .warning
        // Refusals first: nothing is written to a file that is not a Tributary store, or is in use.
        guard SQLiteStore.isTributaryStore(path: from) else { throw CLIError("'\(from)' is not a Tributary store (it has no Tributary tables).") }
        let source = try SQLiteStore(path: from)
        defer { try? source.close() }
        let leases = try await source.liveLeases()
        guard leases == 0 else {
            throw CLIError(
                "'\(from)' is in use: \(leases) run\(leases == 1 ? "" : "s") hold a live lease. Stop every `tributary serve` on it (runs re-queue on shutdown), then migrate.")
        }
        try await source.migrate()
        let target = PostgresStore(url: url, maximumConnections: 2, logger: logger)
        let migration = StoreMigration(
            source: source, snapshot: try source.copySnapshot(), target: target, sourcePath: URL(fileURLWithPath: from).standardizedFileURL.path, batch: batch, output: output)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await target.run() }
            defer { group.cancelAll() }
            try await target.migrateForCopy()
            try await migration.run(verify: verify)
        }
    }
}

/// The copy itself, table by table in key order, resumable after its last committed batch.
struct StoreMigration {
    let source: SQLiteStore
    /// What is copied: the file as of the moment the copy began.
    let snapshot: SQLiteCopySnapshot
    let target: PostgresStore
    let sourcePath: String
    let batch: Int
    let output: CLIOutput

    func run(verify: Bool) async throws {
        let fingerprint = try await snapshot.copyFingerprint()
        if let progress = try await target.copyProgress() {
            guard progress.source == sourcePath else {
                throw CLIError("The target holds a copy of another store ('\(progress.source)'); migrate into an empty database.")
            }
            if progress.finished {
                guard verify else { throw CLIError("The target already holds a finished copy of '\(sourcePath)'; run with --verify to check it.") }
                try await self.verify()
                return
            }
            guard progress.fingerprint == fingerprint else {
                throw CLIError(
                    "'\(sourcePath)' changed since the interrupted copy began (was it served meanwhile?); drop and recreate the target database, then migrate again.")
            }
            output.line("resuming the interrupted copy of \(sourcePath) (\(progress.finishedTables.count) of \(CopyTable.all.count) tables done)")
            try await copy(progress)
        } else {
            guard try await !target.holdsData() else {
                throw CLIError("The target database already holds Tributary data; migrate into an empty database (or the one an interrupted migrate was copying into).")
            }
            try await target.beginCopy(source: sourcePath, fingerprint: fingerprint)
            try await copy(CopyProgress(source: sourcePath, fingerprint: fingerprint))
        }
        // Written to while it was read (a serve still using it)? Then the copy is of a moment that is
        // already gone: it is not finished, and says so.
        guard try await source.copyFingerprint() == fingerprint else {
            throw CLIError(
                "'\(sourcePath)' changed while it was being copied: a serve is still using it. Stop it, drop and recreate the target database, then migrate again.")
        }
        try await target.finishCopy(highWaterMarks: try await snapshot.idHighWaterMarks())
        output.line("copied \(sourcePath) to \(target.displayLocation)")
        if verify { try await self.verify() }
    }

    private func copy(_ progress: CopyProgress) async throws {
        for table in CopyTable.all where !progress.finishedTables.contains(table.name) {
            let (names, columns) = try await plan(table)
            guard !names.isEmpty else {
                try await target.importRows(table, columns: [], rows: [], done: true)
                continue
            }
            var key = progress.lastKeys[table.name]
            var copied = 0
            while true {
                try Task.checkCancellation()
                // A batch is at most `batch` rows and about 32 MiB; the table is done at the first empty one.
                let rows = try await snapshot.copyRows(table, columns: names, after: key, limit: batch)
                try await target.importRows(table, columns: columns, rows: rows, done: rows.isEmpty)
                copied += rows.count
                guard let last = rows.last else { break }
                key = table.keyValue(of: last, columns: names)
            }
            output.line("  \(table.name): \(copied) rows")
        }
    }

    /// The columns both sides have, in the target's order; a source column the target lacks stops the
    /// copy (it would be lost).
    private func plan(_ table: CopyTable) async throws -> (names: [String], columns: [(name: String, type: CopyColumnType)]) {
        let sourceColumns = try await snapshot.copyColumns(table)
        guard !sourceColumns.isEmpty else { return ([], []) }
        let targetColumns = try await target.copyColumnTypes(table)
        guard !targetColumns.isEmpty else { throw CLIError("The target has no table '\(table.name)'; is it Tributary's schema?") }
        let lost = Set(sourceColumns).subtracting(targetColumns.map(\.name))
        guard lost.isEmpty else {
            throw CLIError("Table '\(table.name)': the target has no column \(lost.sorted().joined(separator: ", ")); upgrade Tributary on both sides first.")
        }
        let columns = targetColumns.filter { sourceColumns.contains($0.name) }
        return (columns.map(\.name), columns)
    }

    /// Every table's row count and checksum on both sides; a difference fails the command.
    func verify() async throws {
        var differences: [String] = []
        for table in CopyTable.all {
            let (names, columns) = try await plan(table)
            guard !names.isEmpty else { continue }
            let sourceSum = try await snapshot.copyChecksum(table, columns: names, types: columns.map(\.type))
            let targetSum = try await target.copyChecksum(table, columns: columns)
            let same = sourceSum == targetSum
            output.line("  \(table.name): \(sourceSum) \(same ? "= target" : "≠ target \(targetSum)")")
            if !same { differences.append(table.name) }
        }
        guard differences.isEmpty else { throw CLIError("Verification failed: \(differences.joined(separator: ", ")) differ between the stores.") }
        output.line("verified: every table has the same rows on both sides")
    }
}
