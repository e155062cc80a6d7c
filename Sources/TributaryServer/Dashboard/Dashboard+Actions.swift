import Hummingbird
import TributaryCore
import TributaryStore

extension Dashboard {
    /// Action executions shown on a connection's page.
    static let actionsShown = 20

    /// One action execution in a list.
    struct ActionSummaryView {
        let id: String
        let shortId: String
        let href: String
        let name: String
        let mode: String
        let status: String
        let statusKey: String
        let attempts: Int
        let created: TimeView
        let duration: String
        let problem: String?

        init(_ run: ActionRun, now: Timestamp) {
            id = run.id
            shortId = String(run.id.prefix(8))
            href = "/dashboard/actions/\(run.id)"
            name = run.actionName
            mode = run.isAsync ? "async" : "sync"
            status = run.status.rawValue
            statusKey = run.status.rawValue
            attempts = run.attempts
            created = TimeView(run.createdAt)
            duration = Dashboard.duration(of: run, now: now)
            problem = run.failure.map { "\($0.code): \($0.message)" }
        }
    }

    /// The connection page's actions section: what the integration offers, and the latest executions.
    struct ActionsSectionView {
        let configured: String
        let hasExecutions: Bool
        let executions: [ActionSummaryView]
    }

    struct ActionView {
        let session: SessionView
        let id: String
        let name: String
        let connection: String
        let connectionHref: String
        let mode: String
        let status: String
        let statusKey: String
        let isActive: Bool
        let attempts: Int
        let maxRetries: Int
        /// Nil when none (Mustache shows a section for any number, 0 included).
        let retryableFailures: Int?
        let expiries: Int?
        let created: TimeView
        let started: TimeView?
        let finished: TimeView?
        let nextAttempt: TimeView?
        let duration: String
        let worker: String?
        let outputBytes: Int?
        let failureCode: String?
        let failureMessage: String?
        let failureStatus: Int?
        let failurePayload: String?
        let hasLogs: Bool
        let logs: [LogLineView]
    }

    static func duration(of run: ActionRun, now: Timestamp) -> String {
        guard let started = run.startedAt else { return "not started" }
        return DashboardFormat.duration(from: started, to: run.finishedAt ?? now) + (run.status.isFinished ? "" : " so far")
    }

    /// The section for `connection`: nil when the integration has no actions and none ran.
    func actionsSection(_ integration: IntegrationConfig, _ connection: ConnectionRecord) async throws -> ActionsSectionView? {
        let runs = try await api.store.actionRuns(environment: connection.ref.environment, connection: connection.ref, limit: Self.actionsShown)
        guard !integration.actions.isEmpty || !runs.isEmpty else { return nil }
        let now = Timestamp.now()
        return ActionsSectionView(
            configured: integration.actions.map(\.name).joined(separator: ", "), hasExecutions: !runs.isEmpty,
            executions: runs.map { ActionSummaryView($0, now: now) })
    }

    /// `GET /dashboard/actions/{id}`: one action execution of the session's environment with its log lines.
    func actionPage(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let (session, environment) = try session(context)
        let id = (context.parameters.get("id") ?? "").lowercased()
        guard API.isUUID(id), let run = try await api.store.actionRun(id, environment: environment.name) else {
            throw APIError(.notFound, "unknown_action_execution", "Action execution '\(id.prefix(40))' does not exist.")
        }
        let logs = try await api.store.actionLogs(run.id, limit: Self.logLinesShown)
        let view = ActionView(
            session: SessionView(session), id: run.id, name: run.actionName, connection: run.connection.connectionId,
            connectionHref: Self.connectionHref(run.connection), mode: run.isAsync ? "async" : "sync", status: run.status.rawValue,
            statusKey: run.status.rawValue, isActive: !run.status.isFinished, attempts: run.attempts, maxRetries: run.maxRetries,
            retryableFailures: run.retryableFailures > 0 ? run.retryableFailures : nil, expiries: run.expiries > 0 ? run.expiries : nil, created: TimeView(run.createdAt), started: run.startedAt.map(TimeView.init),
            finished: run.finishedAt.map(TimeView.init), nextAttempt: run.status == .queued ? run.nextAttemptAt.map(TimeView.init) : nil,
            duration: Self.duration(of: run, now: .now()), worker: run.worker, outputBytes: run.outputBytes, failureCode: run.failure?.code,
            failureMessage: run.failure?.message, failureStatus: run.failure?.status,
            failurePayload: run.failure?.payload.map { JSONWriter.pretty(.object($0)) }, hasLogs: !logs.isEmpty,
            logs: logs.map { LogLineView(at: TimeView($0.at), level: $0.level.rawValue, message: $0.message) })
        return templates.page("action", view)
    }
}
