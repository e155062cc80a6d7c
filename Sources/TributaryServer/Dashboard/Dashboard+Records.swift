import Hummingbird
import TributaryCore
import TributaryStore

extension Dashboard {
    struct RecordsView {
        let session: SessionView
        let integration: String
        let connection: String
        let connectionHref: String
        let model: String
        let variant: String
        let filters: [FilterOption]
        let hasRecords: Bool
        let records: [RecordRowView]
        let isFirstPage: Bool
        let firstHref: String
        let nextHref: String?
        let pageSize: Int
    }

    struct FilterOption {
        let value: String
        let label: String
        let selected: Bool
    }

    struct RecordRowView {
        let id: String
        let action: String
        let actionKey: String
        let modified: TimeView
        let firstSeen: TimeView
        let json: String
    }

    /// `GET /dashboard/records?integration=&connection=&model=&variant=&filter=&cursor=`: one page of
    /// a dataset's change feed (what `GET /records` returns), oldest change first.
    func recordsPage(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let (session, environment) = try session(context)
        let query = DashboardForm.query(request)
        let (integration, connection) = try await connectionTarget(query, environment: environment)
        let model = try query.required("model")
        try api.requireModel(model, of: integration)
        let variant = query["variant"] ?? Variant.base
        guard Identifier.isValidSyncName(variant) else { throw APIError(.badRequest, "invalid_query_params", "Variant '\(variant.prefix(80))' is invalid.") }
        let filter = query["filter"].flatMap { $0.isEmpty || $0 == "all" ? nil : $0 }
        var actions: Set<RecordAction>? = nil
        if let filter {
            guard let action = RecordAction(filterValue: Substring(filter)) else {
                throw APIError(.badRequest, "invalid_query_params", "filter is one of all, added, updated and deleted.")
            }
            actions = [action]
        }
        let cursor = try query["cursor"].map { try FeedCursor(encoded: $0) }
        let dataset = DatasetRef(connection: connection.ref, model: model, variant: variant)
        let page = try await api.store.changes(try ChangeQuery(dataset: dataset, cursor: cursor, limit: Self.recordsPerPage, actions: actions))
        let rows = page.records.map { record in
            RecordRowView(
                id: record.id, action: record.action.rawValue, actionKey: record.action.rawValue.lowercased(), modified: TimeView(record.lastModifiedAt),
                firstSeen: TimeView(record.firstSeenAt),
                json: (try? JSONParser.parse(record.json)).map(JSONWriter.pretty) ?? String(decoding: record.json, as: UTF8.self))
        }
        let view = RecordsView(
            session: SessionView(session), integration: integration.providerConfigKey, connection: connection.ref.connectionId,
            connectionHref: Self.connectionHref(connection.ref), model: model, variant: variant,
            filters: [("all", "All changes"), ("added", "Added"), ("updated", "Updated"), ("deleted", "Deleted")].map { value, label in
                FilterOption(value: value, label: label, selected: value == (filter ?? "all"))
            },
            hasRecords: !rows.isEmpty, records: rows, isFirstPage: cursor == nil, firstHref: Self.recordsHref(dataset, filter: filter),
            nextHref: page.nextCursor.map { Self.recordsHref(dataset, filter: filter, cursor: $0.encoded) }, pageSize: Self.recordsPerPage)
        return templates.page("records", view)
    }
}
