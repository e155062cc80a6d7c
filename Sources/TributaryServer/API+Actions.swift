import Foundation
import HTTPTypes
import Hummingbird
import TributaryCore
import TributaryEngine
import TributaryStore

/// Actions (Nango's `triggerAction`, `triggerActionAsync`, `getAsyncActionResult`):
/// `POST /action/trigger` runs one now and answers its output, or with `X-Async: true` queues it and
/// answers `202 {id, statusUrl}`; `GET /action/{id}` answers an async execution's output once it ended.
extension API {
    /// Nango's bound on `X-Max-Retries`.
    static let maximumActionRetries = 5

    /// `POST /action/trigger` with `Connection-Id`, `Provider-Config-Key` (and `X-Async`,
    /// `X-Max-Retries`) and `{action_name, input}`. Failures answer Nango's error shape with the
    /// action's `payload` (`action_script_runtime_error` for an ``ActionError``).
    func triggerAction(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let environment = try context.requireEnvironment()
        _ = try QueryReader(request, allowed: [])
        let (connectionId, key) = try connectionHeaders(request)
        let isAsync = try Self.flag(request.header("X-Async"), header: "X-Async")
        let maxRetries = try Self.retries(request.header("X-Max-Retries"))
        let body = try await BodyReader.read(request, maxBytes: maxBody, allowed: ["action_name", "input"])
        let name = try body.string("action_name", maxLength: 255)
        let input = body.object["input"] ?? .null
        let integration = try integration(key, in: environment)
        guard let action = integration.action(named: name) else {
            let known = integration.actions.map(\.name).joined(separator: ", ")
            throw APIError(
                .notFound, "unknown_action",
                "Integration '\(integration.providerConfigKey)' has no action '\(name)' (actions: \(known.isEmpty ? "none" : known)).")
        }
        let connection = try await existingConnection(
            ConnectionRef(environment: environment.name, providerConfigKey: integration.providerConfigKey, connectionId: connectionId))
        guard let actions else { throw APIError(.serviceUnavailable, "actions_unavailable", "This process does not run actions.") }
        try actions.checkRunnable(action)
        let inputBytes = JSONWriter.bytes(input, canonical: false)
        if isAsync {
            let run = try await store.queueAction(
                ActionRunStart(
                    connection: connection.ref, actionName: action.name, input: inputBytes, isAsync: true, maxRetries: maxRetries,
                    leaseSeconds: actions.leaseSeconds))
            actionWorker?.wake()
            context.logger.info("async action queued", metadata: ["connection": "\(connection.ref)", "action": "\(action.name)", "execution": "\(run.id)"])
            var response = JSONResponse.make(["id": .string(run.id), "statusUrl": .string(run.statusURL)], status: .accepted)
            response.headers[.location] = run.statusURL
            return response
        }
        do {
            return JSONResponse.bytes(try await actions.runNow(action, connection: connection.ref, input: inputBytes))
        } catch let failure as ActionFailure {
            return Self.response(for: failure)
        }
    }

    /// `GET /action/{id}`: an async execution's output (200) or its failure (Nango's error, its
    /// status); 404 `not_found` while it has not ended, as Nango answers.
    func actionResult(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let environment = try context.requireEnvironment()
        _ = try QueryReader(request, allowed: [])
        let id = context.parameters.get("id") ?? ""
        guard Self.isUUID(id) else { throw APIError.invalidURI("'\(id.prefix(80))' is not an action id (a UUID).") }
        guard let run = try await store.actionRun(id.lowercased(), environment: environment.name), run.isAsync else {
            throw APIError(.notFound, "not_found", "No action '\(id)' found.")
        }
        switch run.status {
        case .succeeded:
            return JSONResponse.bytes(run.output ?? Array("null".utf8))
        case .failed:
            return Self.response(for: run.failure ?? ActionFailure(status: 500, code: "action_script_failure", message: "The action failed."))
        case .queued, .running:
            throw APIError(
                .notFound, "not_found", "Action '\(run.id)' has not finished yet (\(run.status.rawValue), attempt \(max(1, run.attempts))); ask again later.")
        }
    }

    static func response(for failure: ActionFailure) -> Response {
        JSONResponse.make(failure.body, status: HTTPResponse.Status(code: (400...599).contains(failure.status) ? failure.status : 500))
    }

    /// A boolean header as Nango reads it (`true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`); absent: false.
    static func flag(_ value: String?, header: String) throws -> Bool {
        guard let value else { return false }
        switch value.trimmingCharacters(in: .whitespaces).lowercased() {
        case "true", "1", "yes", "on", "y", "enabled": return true
        case "false", "0", "no", "off", "n", "disabled", "": return false
        default: throw APIError(.badRequest, "invalid_headers", "\(header) must be true or false, not '\(value.prefix(40))'.")
        }
    }

    /// `X-Max-Retries`: 0 … 5 (default 0).
    static func retries(_ value: String?) throws -> Int {
        guard let value else { return 0 }
        guard let retries = Int(value.trimmingCharacters(in: .whitespaces)), (0...maximumActionRetries).contains(retries) else {
            throw APIError(.badRequest, "invalid_headers", "X-Max-Retries must be a whole number from 0 to \(maximumActionRetries), not '\(value.prefix(40))'.")
        }
        return retries
    }

    static func isUUID(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count == 36 else { return false }
        for (index, byte) in bytes.enumerated() {
            if [8, 13, 18, 23].contains(index) {
                guard byte == UInt8(ascii: "-") else { return false }
            } else {
                guard byte.isHexDigit else { return false }
            }
        }
        return true
    }
}

extension UInt8 {
    fileprivate var isHexDigit: Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(self)
            || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(self)
    }
}
