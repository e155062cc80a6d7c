import HTTPTypes
import Hummingbird
import TributaryCore
import TributaryStore

extension Dashboard {
    struct ConnectionView {
        let session: SessionView
        let notice: String?
        let problem: ProblemView?
        let integration: String
        let connection: String
        let credentials: String
        let created: TimeView
        let syncs: [SyncSectionView]
        let metadata: String
        let connectionConfig: String?
        let endUser: EndUserView?
        let tags: [TagView]
        let hasTags: Bool
        /// The integration's actions and this connection's latest executions (nil: it has none).
        let actions: ActionsSectionView?
        /// Its on-event function runs, newest first (nil: the integration has none and none ran).
        let events: EventsSectionView?
    }

    struct EventsSectionView {
        let hasRuns: Bool
        let runs: [EventRunView]
    }

    /// One on-event function run, with its log lines.
    struct EventRunView {
        let event: String
        let function: String
        let succeeded: Bool
        let error: String?
        let finished: TimeView
        let logs: [LogLineView]
    }

    /// Nango's end user of a connection, as the page shows it.
    struct EndUserView {
        let id: String
        let displayName: String?
        let email: String?
        let organization: String?

        init?(_ endUser: JSONObject?) {
            guard let endUser, let id = endUser["id"]?.stringValue else { return nil }
            self.id = id
            displayName = endUser["display_name"]?.stringValue
            email = endUser["email"]?.stringValue
            let organization = endUser["organization"]
            self.organization = organization?["display_name"]?.stringValue ?? organization?["id"]?.stringValue
        }
    }

    struct TagView {
        let key: String
        let value: String
    }

    struct ConfirmView {
        let session: SessionView
        let heading: String
        let explanation: String
        let button: String
        let action: String
        let isReset: Bool
        let integration: String
        let connection: String
        let connectionHref: String
        let sync: String
        let variant: String
    }

    /// `GET /dashboard/connection?integration=&connection=[&done=&sync=&variant=]`: every sync of the
    /// connection with a row per variant, and its metadata. `done` names the action just finished.
    func connectionPage(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let (session, environment) = try session(context)
        let query = DashboardForm.query(request)
        let (integration, connection) = try await connectionTarget(query, environment: environment)
        let notice = query["done"].flatMap { Self.notice(done: $0, sync: query["sync"] ?? "", variant: query["variant"] ?? "") }
        return try await connectionResponse(integration, connection, session: session, notice: notice)
    }

    /// `GET /dashboard/connection/rows?integration=&connection=&sync=`: the rows of one sync's table,
    /// which the page's script fetches to refresh statuses.
    func variantRows(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let (session, environment) = try session(context)
        let query = DashboardForm.query(request)
        let (integration, connection) = try await connectionTarget(query, environment: environment)
        let sync = try api.sync(try query.required("sync"), of: integration)
        let section = try await syncSections(integration, connection, only: sync.name)[0]
        return templates.page("variant-rows", VariantRowsView(session: SessionView(session), variants: section.variants))
    }

    /// `GET /dashboard/connection/confirm?…&action=reset|delete`: asks before a reset or a deletion.
    func confirmPage(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let (session, environment) = try session(context)
        let query = DashboardForm.query(request)
        let (_, connection, _, ref) = try await variantTarget(query, environment: environment)
        try await api.existingVariant(ref)
        let name = "\(ref.syncName) › \(ref.variant)"
        let action = query["action"] ?? ""
        let (heading, explanation, button): (String, String, String)
        switch action {
        case "reset":
            heading = "Reset \(name)?"
            explanation =
                "A reset stops a running run, clears this variant's lastSyncDate and checkpoint, and starts a new initial run. Its records stay unless you also empty the cache."
            button = "Reset and run"
        case "delete":
            guard !Variant.isBase(ref.variant) else {
                throw APIError(.badRequest, "invalid_variant", "The base variant cannot be deleted; delete the connection instead.")
            }
            heading = "Delete variant \(name)?"
            explanation = "Deleting stops its run and removes its schedule, checkpoint, run history and records. This cannot be undone."
            button = "Delete variant"
        default:
            throw APIError(.badRequest, "invalid_action", "Only a reset or a deletion needs confirming.")
        }
        let view = ConfirmView(
            session: SessionView(session), heading: heading, explanation: explanation, button: button, action: action,
            isReset: action == "reset", integration: ref.connection.providerConfigKey, connection: ref.connection.connectionId,
            connectionHref: Self.connectionHref(connection.ref), sync: ref.syncName, variant: ref.variant)
        return templates.page("confirm", view)
    }

    /// `POST /dashboard/connection/actions` with `action` = `trigger`, `pause`, `start`, `reset` or
    /// `delete` (the last two with `confirm=yes`; a reset may add `empty_cache=yes`). Success
    /// redirects to the connection page with a notice; an error re-renders it with the error.
    func variantAction(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let (session, environment) = try session(context)
        let form = try await form(request, context)
        let (integration, connection, _, ref) = try await variantTarget(form, environment: environment)
        let action = try form.required("action")
        do {
            switch action {
            case "trigger":
                try await api.trigger([ref], reset: false, emptyCache: false)
            case "pause", "start":
                try await api.existingVariant(ref)
                try await api.setPaused(action == "pause", [ref])
            case "reset":
                try Self.requireConfirmation(form, "A reset")
                try await api.existingVariant(ref)
                try await api.trigger([ref], reset: true, emptyCache: form["empty_cache"] == "yes")
            case "delete":
                try Self.requireConfirmation(form, "Deleting a variant")
                try await api.removeVariant(ref)
            default:
                throw APIError(.badRequest, "invalid_action", "Unknown action '\(action.prefix(40))': use trigger, pause, start, reset or delete.")
            }
        } catch {
            return try await failedAction(error, integration, connection, session: session, request: request, context: context)
        }
        return DashboardTemplates.redirect(to: Self.variantHref(ref, page: "/dashboard/connection", extra: ("done", action)))
    }

    /// `POST /dashboard/connection/variants` with `sync` and `variant`: creates a variant, by the
    /// rules of `POST /sync/{name}/variant/{variant}`.
    func createVariant(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let (session, environment) = try session(context)
        let form = try await form(request, context)
        let (integration, connection, _, ref) = try await variantTarget(form, environment: environment)
        do {
            guard Identifier.isValidSyncName(ref.variant) else {
                throw APIError(
                    .badRequest, "invalid_variant", "Variant name '\(ref.variant.prefix(80))' is invalid: use 1 to 255 characters from a-z, A-Z, 0-9, '_' and '-'.")
            }
            _ = try await api.createVariant(ref, of: integration)
        } catch {
            return try await failedAction(error, integration, connection, session: session, request: request, context: context)
        }
        return DashboardTemplates.redirect(to: Self.variantHref(ref, page: "/dashboard/connection", extra: ("done", "create")))
    }

    // MARK: Building the page

    private func failedAction(
        _ error: any Error, _ integration: IntegrationConfig, _ connection: ConnectionRecord, session: DashboardSession, request: Request,
        context: APIRequestContext
    ) async throws -> Response {
        let apiError = ErrorMiddleware.apiError(for: error, request: request, logger: context.logger)
        return try await connectionResponse(integration, connection, session: session, problem: ProblemView(apiError), status: apiError.status)
    }

    private func connectionResponse(
        _ integration: IntegrationConfig, _ connection: ConnectionRecord, session: DashboardSession, notice: String? = nil,
        problem: ProblemView? = nil, status: HTTPResponse.Status = .ok
    ) async throws -> Response {
        let view = ConnectionView(
            session: SessionView(session), notice: notice, problem: problem, integration: integration.providerConfigKey,
            connection: connection.ref.connectionId, credentials: connection.credentialsType, created: TimeView(connection.createdAt),
            syncs: try await syncSections(integration, connection),
            metadata: JSONWriter.pretty(.object(connection.metadata)),
            connectionConfig: connection.connectionConfig.isEmpty ? nil : JSONWriter.pretty(.object(connection.connectionConfig)),
            endUser: EndUserView(connection.endUser),
            tags: connection.tags.map { TagView(key: $0.key, value: $0.value.stringValue ?? JSONWriter.string($0.value)) },
            hasTags: !connection.tags.isEmpty, actions: try await actionsSection(integration, connection),
            events: try await eventRuns(integration, connection))
        return templates.page("connection", view, status: status)
    }

    /// The connection's latest on-event function runs (nil when its integration has none and none ran).
    func eventRuns(_ integration: IntegrationConfig, _ connection: ConnectionRecord) async throws -> EventsSectionView? {
        let runs = try await api.store.connectionEventRuns(
            environment: connection.ref.environment, providerConfigKey: connection.ref.providerConfigKey, connectionId: connection.ref.connectionId, limit: 20)
        guard !runs.isEmpty || !integration.onEvents.isEmpty else { return nil }
        let views = runs.map { run in
            EventRunView(
                event: run.event.rawValue, function: run.function, succeeded: run.succeeded, error: run.failure, finished: TimeView(run.finishedAt),
                logs: run.logs.map { LogLineView(at: TimeView($0.at), level: $0.level.rawValue, message: $0.message) })
        }
        return EventsSectionView(hasRuns: !views.isEmpty, runs: views)
    }

    /// The connection's syncs (in configuration order), each with a row per variant.
    func syncSections(_ integration: IntegrationConfig, _ connection: ConnectionRecord, only: String? = nil) async throws -> [SyncSectionView] {
        let states = try await api.store.variants(of: connection.ref)
        let now = Timestamp.now()
        var sections: [SyncSectionView] = []
        for sync in integration.syncs where only == nil || sync.name == only {
            var rows: [VariantRowView] = []
            for state in states where state.ref.syncName == sync.name {
                rows.append(try await row(state, sync: sync, linkCredentials: integration.auth.credentialQueryNames, now: now))
            }
            sections.append(
                SyncSectionView(
                    name: sync.name, type: sync.syncType == .full ? "full refresh" : "incremental",
                    frequency: sync.frequency.summary, models: sync.models.joined(separator: ", "), tracksDeletes: sync.detectsDeletes,
                    autoStart: sync.autoStart,
                    rowsHref: Self.connectionHref(connection.ref, sync: sync.name, page: "/dashboard/connection/rows"),
                    variants: rows))
        }
        return sections
    }

    private func row(_ state: VariantState, sync: SyncConfig, linkCredentials: Set<String>, now: Timestamp) async throws -> VariantRowView {
        let ref = state.ref
        // A variant has at most one active run: the latest two hold the last finished one.
        let runs = try await api.store.runs(of: ref, limit: 2, includingWebhooks: false)
        let latest = runs.first
        let status = VariantStatusView(state, latest: latest)
        let lastFinished = runs.first { $0.status.isFinished }
        let counts = try await api.store.recordCounts(of: ref)
        let frequency = state.frequency(configured: sync.frequency)
        let rowId = "variant-\(ref.syncName)--\(ref.variant)"
        return VariantRowView(
            rowId: rowId, integration: ref.connection.providerConfigKey, connection: ref.connection.connectionId, sync: ref.syncName,
            variant: ref.variant, isBase: Variant.isBase(ref.variant), status: status.text, statusKey: status.key,
            activeRunHref: latest.flatMap { $0.status.isActive ? "/dashboard/runs/\($0.id)" : nil },
            latestError: latest.flatMap { $0.status.isFinished ? $0.error : nil },
            frequency: frequency.summary, overridden: state.frequencyOverride != nil,
            lastRun: lastFinished.map { RunSummaryView($0, now: now) },
            records: ModelCountView.list(ref, models: sync.models, counts: counts),
            nextRun: state.paused ? nil : state.nextRunAt.map(TimeView.init),
            checkpoint: state.checkpoint.map { $0.redactingLinkCredentials(linkCredentials).json }, paused: state.paused, historyHref: Self.variantHref(ref),
            resetHref: Self.variantHref(ref, page: "/dashboard/connection/confirm", extra: ("action", "reset")),
            deleteHref: Self.variantHref(ref, page: "/dashboard/connection/confirm", extra: ("action", "delete")))
    }

    /// The notice after an action (`done`), from fixed wording; unknown actions show none.
    static func notice(done: String, sync: String, variant: String) -> String? {
        let name = "\(sync) › \(variant)"
        switch done {
        case "trigger": return "A run of \(name) is queued."
        case "pause": return "\(name) is paused: its schedule starts no runs."
        case "start": return "\(name) is started: it runs on its schedule."
        case "reset": return "\(name) was reset; a new initial run is queued."
        case "delete": return "Variant \(name) was deleted."
        case "create": return "Variant \(name) was created."
        default: return nil
        }
    }

    private static func requireConfirmation(_ form: DashboardForm, _ what: String) throws {
        guard form["confirm"] == "yes" else {
            throw APIError(.badRequest, "confirmation_required", "\(what) must be confirmed: use its button in the variant's row.")
        }
    }
}
