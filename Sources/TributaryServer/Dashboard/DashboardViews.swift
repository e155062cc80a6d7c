import Foundation
import TributaryCore
import TributaryStore

// The values the dashboard's Mustache templates render. Templates read stored properties by name
// (Mirror), so every field here is one the templates use; Mustache escapes each one for HTML.

/// The signed-in environment and the token its forms post.
struct SessionView {
    let environment: String
    let csrf: String

    init(_ session: DashboardSession) {
        environment = session.environment
        csrf = session.csrfToken
    }
}

/// An error shown on a page (`role="alert"`).
struct ProblemView {
    let title: String
    let message: String
    let code: String

    init(_ error: APIError, title: String? = nil) {
        self.title = title ?? (error.status.code >= 500 ? "Something went wrong" : "That did not work")
        message = error.message
        code = "\(error.status.code) \(error.code)"
    }
}

/// A point in time: machine-readable for `<time datetime>` and short for people (UTC).
struct TimeView {
    let iso: String
    let text: String

    init(_ time: Timestamp) {
        iso = time.iso8601
        // 2024-01-31T10:00:00.000000+00:00 → 2024-01-31 10:00:00 UTC
        text = iso.prefix(19).replacingOccurrences(of: "T", with: " ") + " UTC"
    }
}

enum DashboardFormat {
    /// A run's length: `0.42 s`, `12.3 s`, `4 min 3 s`, `2 h 5 min`.
    static func duration(from start: Timestamp, to end: Timestamp) -> String {
        let seconds = max(0, end.secondsSince1970 - start.secondsSince1970)
        switch seconds {
        case ..<10: return String(format: "%.2f s", seconds)
        case ..<60: return String(format: "%.1f s", seconds)
        case ..<3600: return "\(Int(seconds) / 60) min \(Int(seconds) % 60) s"
        default: return "\(Int(seconds) / 3600) h \(Int(seconds) % 3600 / 60) min"
        }
    }

    /// A dashboard link: `path` with its query values percent-encoded, in order; nil values are left out.
    static func href(_ path: String, _ query: [(String, String?)]) -> String {
        let parts = query.compactMap { key, value in
            value.map { "\(key)=\($0.addingPercentEncoding(withAllowedCharacters: unreserved) ?? "")" }
        }
        return parts.isEmpty ? path : path + "?" + parts.joined(separator: "&")
    }

    /// RFC 3986's unreserved characters: everything else in a query value is percent-encoded.
    private static let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

    /// A run's length so far (`… so far` while it is active).
    static func duration(of run: RunRecord, now: Timestamp) -> String {
        duration(from: run.startedAt, to: run.finishedAt ?? now) + (run.status.isActive ? " so far" : "")
    }
}

/// How a variant stands, in one word: its active run's state, else paused, else its latest run's
/// outcome (Nango's `SUCCESS`/`ERROR`/`STOPPED`), else `NOT RUN`.
struct VariantStatusView {
    let text: String
    /// Lowercase, for CSS and tests (`success`, `running`, `error`…).
    let key: String

    init(_ state: VariantState, latest: RunRecord?) {
        switch (latest?.status, state.paused) {
        case (.queued?, _): text = "QUEUED"
        case (.running?, _): text = "RUNNING"
        case (_, true): text = "PAUSED"
        case (nil, false): text = "NOT RUN"
        case (let status?, false): text = API.executionStatus(status)
        }
        key = text.lowercased().replacingOccurrences(of: " ", with: "-")
    }
}

/// A run in a list: the variant row's last run, or a line of the variant's history.
struct RunSummaryView {
    let id: Int64
    let href: String
    let status: String
    let statusKey: String
    let type: String
    let started: TimeView
    let duration: String
    let added: Int
    let updated: Int
    let deleted: Int
    let error: String?

    init(_ run: RunRecord, now: Timestamp) {
        id = run.id
        href = "/dashboard/runs/\(run.id)"
        status = run.status.rawValue
        statusKey = run.status.rawValue
        type = run.kind.rawValue
        started = TimeView(run.startedAt)
        duration = DashboardFormat.duration(of: run, now: now)
        let total = run.results.values.reduce(ModelResult(), +)
        added = total.added
        updated = total.updated
        deleted = total.deleted
        error = run.error
    }
}

/// A model's record count, linking to its records.
struct ModelCountView {
    let model: String
    let count: Int
    let href: String

    /// A variant's count of each of `models` (0 when it has none), each linking to its records.
    static func list(_ ref: VariantRef, models: [String], counts: [String: Int]) -> [ModelCountView] {
        models.map { model in
            ModelCountView(
                model: model, count: counts[model] ?? 0,
                href: Dashboard.recordsHref(DatasetRef(connection: ref.connection, model: model, variant: ref.variant)))
        }
    }
}

/// One row of a connection page: one variant of one sync.
struct VariantRowView {
    let rowId: String
    let integration: String
    let connection: String
    let sync: String
    let variant: String
    let isBase: Bool
    let status: String
    let statusKey: String
    /// The queued or running run's page, when there is one.
    let activeRunHref: String?
    /// The error of the latest run when it failed.
    let latestError: String?
    let frequency: String
    let overridden: Bool
    /// The latest finished run.
    let lastRun: RunSummaryView?
    let records: [ModelCountView]
    let nextRun: TimeView?
    let checkpoint: String?
    let paused: Bool
    let historyHref: String
    let resetHref: String
    let deleteHref: String
}

/// One sync of a connection page, with a row per variant.
struct SyncSectionView {
    let name: String
    let type: String
    let frequency: String
    let models: String
    let tracksDeletes: Bool
    let autoStart: Bool
    let rowsHref: String
    let variants: [VariantRowView]
}

/// The rows of one sync, as the status refresh fetches them.
struct VariantRowsView {
    let session: SessionView
    let variants: [VariantRowView]
}
