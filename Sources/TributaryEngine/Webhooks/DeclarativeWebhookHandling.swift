import TributaryCore

/// Runs a sync's declarative `webhook:` handler: the record (an object) or records (an array) at
/// `records_path` of the provider's payload are saved to the base variant — or deleted, when the
/// webhook's type is one of `delete_types` or a record's `deleted_field` is `true`. Each record's
/// id comes from `id_field`; a declarative sync's `fields` and `rename` shape it as a run would.
struct DeclarativeWebhookHandling {
    let handler: DeclarativeWebhookHandler
    /// The sync's declarative spec, when it has one: its `fields` and `rename` apply to webhook records too.
    let shape: DeclarativeSpec?

    func handle(_ payload: JSONValue, type: String?, context: any SyncContext) async throws {
        let found: JSONValue?
        if let path = handler.recordsPath {
            found = payload.value(atPath: path)
        } else {
            found = payload
        }
        let items: [JSONValue]
        switch found {
        case .array(let array)?: items = array
        case .object?: items = [found!]
        case nil, .null?:
            await context.log("The webhook has no records at '\(handler.recordsPath ?? "(body)")'; nothing to do.")
            return
        default:
            throw TributaryError(.invalidRecord, "The webhook's '\(handler.recordsPath ?? "body")' is neither a record nor a list of records.")
        }
        let deletesAll = type.map(handler.deleteTypes.contains) ?? false
        var spec = shape ?? DeclarativeSpec(endpoint: "")
        spec.idField = handler.idField
        var saves: [JSONObject] = []
        var deletions: [JSONObject] = []
        for item in items {
            let record = try spec.transform(item)
            let deleted = deletesAll || handler.deletedField.map { item.value(atPath: $0)?.boolValue == true } == true
            if deleted {
                deletions.append(["id": record["id"] ?? .null])  // transform always sets it
            } else {
                saves.append(record)
            }
        }
        try await context.batchSave(saves, model: handler.model)
        try await context.batchDelete(deletions, model: handler.model)
        await context.log("webhook \(type ?? "(no type)"): saved \(saves.count), deleted \(deletions.count) record(s) of \(handler.model)")
    }
}
