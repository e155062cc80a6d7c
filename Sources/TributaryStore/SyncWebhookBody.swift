import TributaryCore

/// The sync webhooks a finished run sends, with Nango's body (SPEC §7):
///
/// ```json
/// {"connectionId": "c-1", "from": "nango", "model": "Order", "modifiedAfter": "2026-11-21T10:00:00.000Z",
///  "providerConfigKey": "shop", "queryTimeStamp": "2026-11-21T10:00:00.000Z",
///  "responseResults": {"added": 3, "deleted": 0, "updated": 1}, "success": true, "syncName": "orders",
///  "syncType": "INCREMENTAL", "syncVariant": "base", "type": "sync"}
/// ```
///
/// A failed run sends one webhook naming all models (comma-separated) with `success: false`,
/// `error: {type: "script_error", description}`, `startedAt` and `failedAt`. Both carry `checkpoint`:
/// the variant's checkpoint as the run left it (`null` when it has none — none saved, or cleared), the
/// field `GET /sync/status` has, without link credentials. Keys are sorted (Nango's stable
/// stringify) and the bytes are fixed when queued, so the signature covers exactly what is sent;
/// they are written in JavaScript's form (``JavaScriptJSON``), so Nango's SDK, which verifies
/// `X-Nango-Signature` over `JSON.stringify` of the parsed body, computes the same bytes.
/// `from` stays `"nango"` so receivers written for Nango accept them unchanged.
public enum SyncWebhookBody {
    /// The messages for `run` under `plan`: one per model with changes (or every model when
    /// `sendOnZeroChanges`) and receiver on success; one per receiver on failure when
    /// `sendOnFailure`; none for a cancelled or expired run.
    /// - Parameter checkpoint: the variant's checkpoint after the run (read in the finishing transaction).
    public static func messages(for run: RunRecord, plan: SyncWebhookPlan, checkpoint: Checkpoint?) -> [OutboxMessage] {
        guard !plan.urls.isEmpty else { return [] }
        let ref = run.variant
        var base: JSONObject = [
            "from": "nango",
            "type": "sync",
            "connectionId": .string(ref.connection.connectionId),
            "providerConfigKey": .string(ref.connection.providerConfigKey),
            "syncName": .string(ref.syncName),
            "syncVariant": .string(ref.variant),
            "syncType": .string(run.kind.rawValue),
            "checkpoint": checkpoint.map { .object($0.redactingLinkCredentials(plan.linkCredentials).values) } ?? .null,
        ]
        var bodies: [(model: String, success: Bool, body: [UInt8])] = []
        switch run.status {
        case .succeeded:
            base["success"] = .bool(true)
            base["modifiedAfter"] = .string(run.startedAt.iso8601)
            base["queryTimeStamp"] = .string(run.startedAt.iso8601)
            var models = plan.models
            for model in run.results.keys.sorted() where !models.contains(model) { models.append(model) }
            for model in models {
                let result = run.results[model] ?? ModelResult()
                guard plan.sendOnZeroChanges || result.added + result.updated + result.deleted > 0 else { continue }
                var body = base
                body["model"] = .string(model)
                body["responseResults"] = [
                    "added": .number(JSONNumber(result.added)), "updated": .number(JSONNumber(result.updated)),
                    "deleted": .number(JSONNumber(result.deleted)),
                ]
                bodies.append((model, true, JavaScriptJSON.bytes(.object(body))))
            }
        case .failed:
            guard plan.sendOnFailure else { return [] }
            let models = plan.models.joined(separator: ",")
            var body = base
            body["success"] = .bool(false)
            body["model"] = .string(models)
            body["error"] = ["type": "script_error", "description": .string(run.error ?? "The run failed.")]
            body["startedAt"] = .string(run.startedAt.iso8601)
            body["failedAt"] = .string((run.finishedAt ?? run.startedAt).iso8601)
            bodies.append((models, false, JavaScriptJSON.bytes(.object(body))))
        case .queued, .running, .cancelled, .expired:
            return []
        }
        return plan.urls.flatMap { url in bodies.map { OutboxMessage(url: url, body: $0.body, model: $0.model, success: $0.success) } }
    }
}
