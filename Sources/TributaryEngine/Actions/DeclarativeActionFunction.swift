import TributaryCore
import TributaryStore

/// Runs a ``DeclarativeAction``: fills its request from the input, the connection's metadata and the
/// execution (``ActionTemplate``), sends it through the connection, and answers the response's JSON
/// (or the value at its `output` path). A provider answer outside 2xx fails the action with
/// `script_http_error` (424, as Nango answers a failed provider call) naming the status.
struct DeclarativeActionFunction: ActionFunction {
    let name: String
    let spec: DeclarativeAction

    func run(_ context: any ActionContext, input: JSONValue) async throws -> JSONValue {
        let template = ActionTemplate(
            input: input, metadata: try await context.getMetadata(), connectionId: context.connectionId, idempotencyKey: context.idempotencyKey)
        let request = try template.request(spec)
        let response = try await context.send(request)
        guard (200..<300).contains(response.status) else {
            throw ActionFailure(
                status: 424, code: "script_http_error",
                message: "The provider answered \(response.status) to \(request.method.rawValue) \(request.shownEndpoint).",
                payload: ["status": .number(JSONNumber(response.status))])
        }
        let json: JSONValue = response.body.isEmpty ? .null : try response.json()
        guard let path = spec.output else { return json }
        guard let value = json.value(atPath: path) else {
            throw ActionFailure(status: 500, code: "action_script_failure", message: "The provider's answer has no '\(path)' (the action's output).")
        }
        return value
    }
}
