import Hummingbird
import TributaryCore
import TributaryStore

extension Dashboard {
    struct VariantView {
        let session: SessionView
        let connection: String
        let connectionHref: String
        let sync: String
        let variant: String
        let status: String
        let frequency: String
        let lastSyncDate: TimeView?
        let nextRun: TimeView?
        let checkpoint: String?
        let records: [ModelCountView]
        let created: TimeView
        let hasRuns: Bool
        let runs: [RunSummaryView]
        /// Duration and records changed per finished run, oldest first (SVG).
        let durationChart: String
        let recordsChart: String
    }

    struct RunView {
        let session: SessionView
        let id: Int64
        let connection: String
        let connectionHref: String
        let variantHref: String
        let sync: String
        let variant: String
        let status: String
        let statusKey: String
        /// Queued or running: the page refreshes its body from `bodyHref` until the run ends.
        let isActive: Bool
        let bodyHref: String
        let type: String
        let started: TimeView
        let finished: TimeView?
        let duration: String
        let worker: String?
        let error: String?
        let hasResults: Bool
        let results: [ResultView]
        let hasLogs: Bool
        let logs: [LogLineView]
        let truncatedLogs: Bool
        let shownLogs: Int
    }

    struct ResultView {
        let model: String
        let added: Int
        let updated: Int
        let deleted: Int
    }

    struct LogLineView {
        let at: TimeView
        let level: String
        let message: String
    }

    /// `GET /dashboard/variant?integration=&connection=&sync=&variant=`: a variant's state and its run history.
    func variantPage(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let (session, environment) = try session(context)
        let (integration, connection, sync, ref) = try await variantTarget(DashboardForm.query(request), environment: environment)
        let state = try await api.existingVariant(ref)
        let runs = try await api.store.runs(of: ref, limit: Self.runsShown)
        let counts = try await api.store.recordCounts(of: ref)
        let now = Timestamp.now()
        let view = VariantView(
            session: SessionView(session), connection: connection.ref.connectionId, connectionHref: Self.connectionHref(connection.ref),
            sync: sync.name, variant: ref.variant, status: VariantStatusView(state, latest: runs.first { $0.kind != .webhook }).text,
            frequency: state.frequency(configured: sync.frequency).summary, lastSyncDate: state.lastSyncDate.map(TimeView.init),
            nextRun: state.paused ? nil : state.nextRunAt.map(TimeView.init), checkpoint: state.checkpoint.map { $0.redactingLinkCredentials(integration.auth.credentialQueryNames).json },
            records: ModelCountView.list(ref, models: sync.models, counts: counts),
            created: TimeView(state.createdAt), hasRuns: !runs.isEmpty, runs: runs.map { RunSummaryView($0, now: now) },
            durationChart: Self.durationChart(runs).svg, recordsChart: Self.recordsChart(runs).svg)
        return templates.page("variant", view)
    }

    /// `GET /dashboard/runs/{id}`: one run of the session's environment with its log lines.
    func runPage(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        templates.page("run", try await runView(context))
    }

    /// `GET /dashboard/runs/{id}/body`: the run's status, results and logs, which the page re-fetches
    /// while the run is active.
    func runBody(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        templates.page("run-body", try await runView(context))
    }

    private func runView(_ context: APIRequestContext) async throws -> RunView {
        let (session, environment) = try session(context)
        let run = try await api.existingRun(context.parameters.get("runId"), in: environment)
        let logs = try await api.store.logs(ofRun: run.id, limit: Self.logLinesShown + 1)
        let shown = logs.prefix(Self.logLinesShown)
        return RunView(
            session: SessionView(session), id: run.id, connection: run.variant.connection.connectionId,
            connectionHref: Self.connectionHref(run.variant.connection), variantHref: Self.variantHref(run.variant), sync: run.variant.syncName,
            variant: run.variant.variant, status: run.status.rawValue, statusKey: run.status.rawValue, isActive: run.status.isActive,
            bodyHref: "/dashboard/runs/\(run.id)/body", type: run.kind.rawValue,
            started: TimeView(run.startedAt), finished: run.finishedAt.map(TimeView.init),
            duration: DashboardFormat.duration(of: run, now: .now()),
            worker: run.worker, error: run.error, hasResults: !run.results.isEmpty,
            results: run.results.keys.sorted().map { model in
                let result = run.results[model] ?? ModelResult()
                return ResultView(model: model, added: result.added, updated: result.updated, deleted: result.deleted)
            },
            hasLogs: !shown.isEmpty,
            logs: shown.map { LogLineView(at: TimeView($0.at), level: $0.level.rawValue, message: $0.message) },
            truncatedLogs: logs.count > shown.count, shownLogs: shown.count)
    }

    /// Each finished run's length, oldest first; failed runs drawn in full in the highlight colour.
    static func durationChart(_ runs: [RunRecord]) -> BarChart {
        let finished = runs.filter { $0.finishedAt != nil }.reversed()
        return BarChart(
            name: "Duration of each of the latest runs, oldest first, failed runs highlighted",
            bars: finished.map { run in
                let seconds = max(0, (run.finishedAt ?? run.startedAt).secondsSince1970 - run.startedAt.secondsSince1970)
                return BarChart.Bar(
                    label: "#\(run.id)", value: seconds, part: run.status == .failed ? seconds : 0,
                    title: "Run #\(run.id), \(run.status.rawValue): \(DashboardFormat.duration(from: run.startedAt, to: run.finishedAt ?? run.startedAt))")
            },
            format: { seconds in seconds < 10 ? String(format: "%.1f s", seconds) : "\(BarChart.number(seconds.rounded())) s" })
    }

    /// Records each finished run added, updated and deleted, oldest first; deletions highlighted.
    static func recordsChart(_ runs: [RunRecord]) -> BarChart {
        let finished = runs.filter { $0.finishedAt != nil }.reversed()
        return BarChart(
            name: "Records changed by each of the latest runs, oldest first, deletions highlighted",
            bars: finished.map { run in
                let total = run.results.values.reduce(ModelResult(), +)
                return BarChart.Bar(
                    label: "#\(run.id)", value: Double(total.added + total.updated + total.deleted), part: Double(total.deleted),
                    title: "Run #\(run.id): +\(total.added) ~\(total.updated) −\(total.deleted)")
            },
            format: count)
    }
}
