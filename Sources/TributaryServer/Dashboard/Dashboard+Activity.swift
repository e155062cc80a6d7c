import Hummingbird
import TributaryCore
import TributaryStore

extension Dashboard {
    struct ActivityView {
        let session: SessionView
        let filters: ActivityFiltersView
        let runsChart: String
        let outboxChart: String
        let hasRuns: Bool
        let runs: [ActivityRowView]
        let olderHref: String?
    }

    struct ActivityFiltersView {
        let statuses: [OptionView]
        let integrations: [OptionView]
        let periods: [OptionView]
        let sync: String
        let connection: String
    }

    struct OptionView {
        let value: String
        let label: String
        let selected: Bool
    }

    struct ActivityRowView {
        let run: RunSummaryView
        let integration: String
        let connection: String
        let connectionHref: String
        let sync: String
        let variant: String
        let variantHref: String
    }

    /// The periods the activity page filters by.
    static let activityPeriods: [(value: String, label: String, hours: Int64?)] = [
        ("24h", "Last 24 hours", 24), ("1h", "Last hour", 1), ("7d", "Last 7 days", 168), ("30d", "Last 30 days", 720), ("all", "All kept history", nil),
    ]

    /// `GET /dashboard/activity?status=&integration=&sync=&connection=&period=&before=`: every run of the
    /// environment, newest first, with the runs-per-hour and outbox-backlog charts of the last day.
    func activityPage(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let (session, environment) = try session(context)
        let form = DashboardForm.query(request)
        func value(_ key: String) throws -> String? {
            guard let text = form[key]?.trimmingCharacters(in: .whitespaces), !text.isEmpty else { return nil }
            guard text.utf8.count <= 255 else { throw APIError(.badRequest, "invalid_query_params", "'\(key)' is longer than 255 bytes.") }
            return text
        }
        var status: RunStatus? = nil
        if let text = try value("status") {
            guard let parsed = RunStatus(rawValue: text) else {
                throw APIError(.badRequest, "invalid_query_params", "'status' must be one of \(RunStatus.allCases.map(\.rawValue).joined(separator: ", ")).")
            }
            status = parsed
        }
        let periodValue = try value("period") ?? "24h"
        guard let period = Self.activityPeriods.first(where: { $0.value == periodValue }) else {
            throw APIError(.badRequest, "invalid_query_params", "'period' must be one of \(Self.activityPeriods.map(\.value).joined(separator: ", ")).")
        }
        var before: Int64? = nil
        if let text = try value("before") {
            guard let id = Int64(text), id > 0 else { throw APIError(.badRequest, "invalid_query_params", "'before' must be a run id.") }
            before = id
        }
        let integration = try value("integration")
        let sync = try value("sync")
        let connection = try value("connection")
        let now = Timestamp.now()
        let query = ActivityQuery(
            environment: environment.name, status: status, integration: integration, sync: sync, connectionId: connection,
            since: period.hours.map { now.adding(microseconds: -$0 * 3_600_000_000) }, beforeId: before, limit: Self.activityRunsShown + 1)
        let found = try await api.store.activity(query)
        let shown = Array(found.prefix(Self.activityRunsShown))
        let olderHref =
            found.count > shown.count
            ? DashboardFormat.href(
                "/dashboard/activity",
                [("status", status?.rawValue), ("integration", integration), ("sync", sync), ("connection", connection), ("period", period.value),
                 ("before", shown.last.map { "\($0.id)" })]) : nil

        let hour = now.microseconds / 3_600_000_000
        let hours = Array((hour - 23)...hour)
        let since = Timestamp(microseconds: (hour - 23) * 3_600_000_000)
        let perHour = Dictionary(uniqueKeysWithValues: try await api.store.runsPerHour(environment: environment.name, since: since).map { ($0.hour, $0) })
        let runsChart = BarChart(
            name: "Runs finished per hour over the last 24 hours, failures highlighted",
            bars: hours.map { hour in
                let counts = perHour[hour] ?? HourlyRuns(hour: hour, finished: 0, failed: 0)
                return BarChart.Bar(
                    label: Self.hourLabel(hour), value: Double(counts.finished), part: Double(counts.failed),
                    title: "\(Self.hourLabel(hour))–\(Self.hourLabel(hour + 1)) UTC: \(counts.finished) runs, \(counts.failed) failed")
            }, format: Self.count)
        let flow = try await api.store.outboxFlow(environment: environment.name, since: since)
        let backlog = flow.backlog(atEndOf: hours)
        let outboxChart = BarChart(
            name: "Webhooks to the app waiting at the end of each hour over the last 24 hours",
            bars: zip(hours, backlog).map { hour, pending in
                BarChart.Bar(label: Self.hourLabel(hour + 1), value: Double(pending), title: "\(Self.hourLabel(hour + 1)) UTC: \(pending) waiting")
            }, format: Self.count)

        let integrations = api.config.integrations(in: environment.name).map(\.providerConfigKey)
        let view = ActivityView(
            session: SessionView(session),
            filters: ActivityFiltersView(
                statuses: [OptionView(value: "", label: "Any status", selected: status == nil)]
                    + RunStatus.allCases.map { OptionView(value: $0.rawValue, label: $0.rawValue, selected: $0 == status) },
                integrations: [OptionView(value: "", label: "Any integration", selected: integration == nil)]
                    + integrations.map { OptionView(value: $0, label: $0, selected: $0 == integration) },
                periods: Self.activityPeriods.map { OptionView(value: $0.value, label: $0.label, selected: $0.value == period.value) },
                sync: sync ?? "", connection: connection ?? ""),
            runsChart: runsChart.svg, outboxChart: outboxChart.svg, hasRuns: !shown.isEmpty,
            runs: shown.map { run in
                ActivityRowView(
                    run: RunSummaryView(run, now: now), integration: run.variant.connection.providerConfigKey,
                    connection: run.variant.connection.connectionId, connectionHref: Self.connectionHref(run.variant.connection),
                    sync: run.variant.syncName, variant: run.variant.variant, variantHref: Self.variantHref(run.variant))
            },
            olderHref: olderHref)
        return templates.page("activity", view)
    }

    /// Runs listed per activity page.
    static let activityRunsShown = 50

    static func hourLabel(_ hour: Int64) -> String {
        let hourOfDay = ((hour % 24) + 24) % 24
        return hourOfDay < 10 ? "0\(hourOfDay):00" : "\(hourOfDay):00"
    }

    static let count: @Sendable (Double) -> String = { BarChart.number($0.rounded()) }
}
