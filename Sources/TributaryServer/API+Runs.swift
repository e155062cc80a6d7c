import Hummingbird
import TributaryCore
import TributaryStore

extension API {
    /// `GET /sync/runs?provider_config_key=&connection_id=&sync=&variant=&limit=` — a variant's runs, newest first
    /// (a Tributary extension; Nango has no public equivalent).
    func listRuns(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let environment = try context.requireEnvironment()
        let query = try QueryReader(request, allowed: ["provider_config_key", "connection_id", "sync", "variant", "limit"])
        let integration = try integration(try query.required("provider_config_key"), in: environment)
        let sync = try sync(try query.required("sync"), of: integration)
        let variant = try query.optional("variant") ?? Variant.base
        var limit = 20
        if let text = try query.optional("limit") {
            guard let value = Int(text), (1...500).contains(value) else { throw APIError.invalidQuery("limit must be a whole number from 1 to 500.") }
            limit = value
        }
        let connection = try await existingConnection(
            ConnectionRef(environment: environment.name, providerConfigKey: integration.providerConfigKey, connectionId: try query.required("connection_id")))
        let ref = VariantRef(connection: connection.ref, syncName: sync.name, variant: variant)
        try await existingVariant(ref)
        let runs = try await store.runs(of: ref, limit: limit)
        return JSONResponse.make(["runs": .array(runs.map(runJSON))])
    }

    /// `GET /sync/runs/{runId}?logs_limit=` — one run with its log lines.
    func getRun(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let environment = try context.requireEnvironment()
        let query = try QueryReader(request, allowed: ["logs_limit"])
        var logsLimit = 1000
        if let text = try query.optional("logs_limit") {
            guard let value = Int(text), (1...10_000).contains(value) else {
                throw APIError.invalidQuery("logs_limit must be a whole number from 1 to 10000.")
            }
            logsLimit = value
        }
        let run = try await existingRun(context.parameters.get("runId"), in: environment)
        let logs = try await store.logs(ofRun: run.id, limit: logsLimit)
        var object = runJSON(run).objectValue ?? [:]
        object["logs"] = .array(
            logs.map { entry in ["at": .string(entry.at.iso8601), "level": .string(entry.level.rawValue), "message": .string(entry.message)] })
        return JSONResponse.make(.object(object))
    }

    func runJSON(_ run: RunRecord) -> JSONValue {
        [
            "id": .number(JSONNumber(run.id)),
            "connection_id": .string(run.variant.connection.connectionId),
            "provider_config_key": .string(run.variant.connection.providerConfigKey),
            "sync": .string(run.variant.syncName),
            "variant": .string(run.variant.variant),
            "status": .string(run.status.rawValue),
            "type": .string(run.kind.rawValue),
            "startedAt": .string(run.startedAt.iso8601),
            "finishedAt": run.finishedAt.map { .string($0.iso8601) } ?? .null,
            "results": .object(ModelResult.json(run.results)),
            "error": run.error.map { .string($0) } ?? .null,
            "worker": run.worker.map { .string($0) } ?? .null,
            "attempts": .number(JSONNumber(run.attempts)),
        ]
    }
}
