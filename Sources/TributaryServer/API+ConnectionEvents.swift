import Foundation
import Hummingbird
import TributaryCore
import TributaryEngine
import TributaryStore

extension API {
    /// Runs the integrations' on-event functions for this request (its logger).
    func connectionEvents(_ context: APIRequestContext) -> ConnectionEventRunner {
        ConnectionEventRunner(config: config, functions: functions, store: store, providers: providers, logger: context.logger)
    }

    /// `validate-connection` refused a connection: 400 with the function's words.
    static func validationFailed(_ message: String) -> APIError {
        APIError(.badRequest, "connection_validation_failed", "The connection was refused by its validate-connection function: \(message)")
    }

    /// `GET /connection-events?provider_config_key=&connection_id=&limit=`: the environment's on-event
    /// function runs, newest first, with their log lines — also of connections deleted since.
    func listConnectionEvents(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let environment = try context.requireEnvironment()
        let query = try QueryReader(request, allowed: ["provider_config_key", "connection_id", "limit"])
        let limit = try query.integer("limit", in: 1...500) ?? 100
        let runs = try await store.connectionEventRuns(
            environment: environment.name, providerConfigKey: try query.optional("provider_config_key"), connectionId: try query.optional("connection_id"),
            limit: limit)
        return JSONResponse.make(["events": .array(runs.map { .object(Self.eventJSON($0)) })])
    }

    static func eventJSON(_ run: ConnectionEventRun) -> JSONObject {
        [
            "id": .string(run.id), "event": .string(run.event.rawValue), "function": .string(run.function),
            "provider_config_key": .string(run.connection.providerConfigKey), "connection_id": .string(run.connection.connectionId),
            "success": .bool(run.succeeded), "error": run.failure.map { .string($0) } ?? .null,
            "started_at": .string(run.startedAt.iso8601), "finished_at": .string(run.finishedAt.iso8601),
            "logs": .array(run.logs.map { ["at": .string($0.at.iso8601), "level": .string($0.level.rawValue), "message": .string($0.message)] }),
        ]
    }
}
