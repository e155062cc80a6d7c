import Hummingbird
import TributaryCore
import TributaryStore

extension API {
    /// `GET /records` with `Connection-Id` and `Provider-Config-Key` headers: one page of a
    /// dataset's change feed, `{records, next_cursor}`.
    func records(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let environment = try context.requireEnvironment()
        let query = try QueryReader(
            request, allowed: ["model", "variant", "cursor", "limit", "modified_after", "delta", "filter", "ids", "ids[]"])
        let (connectionId, key) = try connectionHeaders(request)
        let integration = try integration(key, in: environment)
        let model = try query.required("model")
        try requireModel(model, of: integration)
        let variant = try query.optional("variant") ?? Variant.base
        guard Identifier.isValidSyncName(variant) else { throw APIError.invalidQuery("variant '\(variant.prefix(80))' is invalid.") }
        let connection = try await existingConnection(
            ConnectionRef(environment: environment.name, providerConfigKey: integration.providerConfigKey, connectionId: connectionId))

        let limit = try query.integer("limit", in: 1...ChangeQuery.maximumLimit) ?? ChangeQuery.defaultLimit
        let cursor = try query.optional("cursor").map { try FeedCursor(encoded: $0) }
        var modifiedAfter: Timestamp? = nil
        if let text = try query.optional("modified_after") ?? query.optional("delta") {
            guard let time = Timestamp(iso8601: text) else {
                throw APIError.invalidQuery("modified_after must be an ISO 8601 date-time such as 2024-01-31T10:00:00Z.")
            }
            modifiedAfter = time
        }
        var actions: Set<RecordAction>? = nil
        if let text = try query.optional("filter") {
            actions = []
            for part in text.split(separator: ",") {
                guard let action = RecordAction(filterValue: part) else {
                    throw APIError.invalidQuery("filter takes a comma list of added, updated and deleted; '\(part.prefix(40))' is not one.")
                }
                actions?.insert(action)
            }
        }
        var ids: [String]? = nil
        let idValues = query.all("ids") + query.all("ids[]")
        if !idValues.isEmpty {
            guard idValues.allSatisfy({ !$0.isEmpty && $0.utf8.count <= 256 }) else { throw APIError.invalidQuery("each id must be 1 to 256 characters.") }
            ids = idValues
        }
        let page = try await store.changes(
            try ChangeQuery(
                dataset: DatasetRef(connection: connection.ref, model: model, variant: variant), cursor: cursor, limit: limit,
                modifiedAfter: modifiedAfter, actions: actions, ids: ids))

        return JSONResponse.bytes(FeedRenderer.body(of: page))
    }

    /// The most records one `PATCH /records/prune` prunes (Nango's bound), and the default.
    static let maximumPrunedPerCall = 10_000
    static let defaultPrunedPerCall = 1_000

    /// `PATCH /records/prune` with `Connection-Id`, `Provider-Config-Key` and `{model, variant?,
    /// until_cursor, limit?}`: drops the payloads of the dataset's records up to and including the
    /// cursor's, oldest first — ids, change tracking and feed positions stay, `pruned_at` is set.
    /// `{count, has_more}`: call again while `has_more`.
    func pruneRecords(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let environment = try context.requireEnvironment()
        _ = try QueryReader(request, allowed: [])
        let (connectionId, key) = try connectionHeaders(request)
        let body = try await BodyReader.read(request, maxBytes: maxBody, allowed: ["model", "variant", "until_cursor", "limit"])
        let integration = try integration(key, in: environment)
        let model = try body.string("model")
        try requireModel(model, of: integration)
        let variant = try body.optionalString("variant") ?? Variant.base
        guard Identifier.isValidSyncName(variant) else { throw APIError.invalidBody("variant '\(variant.prefix(80))' is invalid.") }
        let cursor = try FeedCursor(encoded: try body.string("until_cursor", maxLength: 1000))
        var limit = Self.defaultPrunedPerCall
        if let value = body.object["limit"] {
            guard let number = value.int64Value, (1...Int64(Self.maximumPrunedPerCall)).contains(number) else {
                throw APIError.invalidBody("limit must be a whole number from 1 to \(Self.maximumPrunedPerCall).")
            }
            limit = Int(number)
        }
        let connection = try await existingConnection(
            ConnectionRef(environment: environment.name, providerConfigKey: integration.providerConfigKey, connectionId: connectionId))
        let (count, hasMore) = try await store.pruneRecords(
            DatasetRef(connection: connection.ref, model: model, variant: variant), through: cursor, limit: limit)
        context.logger.info("records pruned", metadata: ["connection": "\(connection.ref)", "model": "\(model)", "count": "\(count)"])
        return JSONResponse.make(["count": .number(JSONNumber(count)), "has_more": .bool(hasMore)])
    }
}
