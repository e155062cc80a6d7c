import TributaryCore
import TributaryStore

/// Formats runs and records for the terminal.
enum RunPrinter {
    static func summary(_ run: RunRecord) -> String {
        let seconds = run.finishedAt.map { Double($0.microseconds - run.startedAt.microseconds) / 1_000_000 } ?? 0
        let secondsText = String(Double(Int(seconds * 1000)) / 1000)
        return "run \(run.id) of \(run.variant.syncName)::\(run.variant.variant) on \(run.variant.connection.connectionId): \(run.status.rawValue) in \(secondsText) s (\(run.kind.rawValue))"
    }

    /// A table of per-model results with the variant's record counts.
    static func table(_ run: RunRecord, counts: [String: Int]) -> [String] {
        var rows = [["model", "added", "updated", "deleted", "records"]]
        for model in Set(run.results.keys).union(counts.keys).sorted() {
            let result = run.results[model] ?? ModelResult()
            rows.append([model, "\(result.added)", "\(result.updated)", "\(result.deleted)", "\(counts[model] ?? 0)"])
        }
        let widths = (0..<rows[0].count).map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { index, cell in
                index == 0
                    ? cell + String(repeating: " ", count: widths[index] - cell.count)
                    : String(repeating: " ", count: widths[index] - cell.count) + cell
            }.joined(separator: "  ")
        }
    }
}
