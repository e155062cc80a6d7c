import Logging
import TributaryCore
import TributaryStore

/// Runs action executions: a synchronous one for the API (``runNow(_:connection:input:)``), an
/// async attempt a worker claimed (``run(_:)``). Each attempt runs the action's function under its
/// time limit while a heartbeat keeps its lease; its output is checked against `max_output_bytes`;
/// the outcome is recorded (fenced) with Nango's error for every way it can fail.
public struct ActionExecutor: Sendable {
    public let store: any Store
    let config: TributaryConfig
    let functions: SyncFunctionRegistry
    let providers: ProviderAccess?
    let logger: Logger
    /// How long an attempt holds its execution without a heartbeat.
    public let leaseSeconds: Int
    /// The first retry's delay after a retryable failure (then doubling).
    let retryDelaySeconds: Double

    public init(
        store: any Store, config: TributaryConfig, functions: SyncFunctionRegistry, providers: ProviderAccess?, retryDelaySeconds: Double = 5,
        logger: Logger
    ) {
        self.store = store
        self.config = config
        self.functions = functions
        self.providers = providers
        self.logger = logger
        self.leaseSeconds = config.scheduler.leaseSeconds
        self.retryDelaySeconds = retryDelaySeconds
    }

    /// Checks that this process can run `action` (its Swift function is registered).
    /// - Throws: `unknown_function` naming the registered action functions.
    public func checkRunnable(_ action: ActionConfig) throws(TributaryError) {
        _ = try functions.function(for: action)
    }

    /// Where `connection`'s environment sends its `async_action` webhooks (nil: none).
    func webhookPlan(for connection: ConnectionRef) -> ActionWebhookPlan? {
        guard let settings = config.environment(named: connection.environment)?.webhooks, settings.signingKey != nil else { return nil }
        let urls = settings.urls(for: [:])
        return urls.isEmpty ? nil : ActionWebhookPlan(urls: urls)
    }

    /// Runs `action` now for the API and answers its output's JSON.
    /// - Throws: ``ActionFailure`` (Nango's status, code and message) when it failed; a store error
    ///   when it could not be recorded.
    public func runNow(_ action: ActionConfig, connection: ConnectionRef, input: [UInt8]) async throws -> [UInt8] {
        let parsed = try Self.parseInput(input)
        let function = try functions.function(for: action)
        let (run, lease) = try await store.startAction(
            ActionRunStart(connection: connection, actionName: action.name, input: input, isAsync: false, leaseSeconds: leaseSeconds))
        let outcome = await attempt(function, action: action, connection: connection, lease: lease, input: parsed)
        guard let outcome else {
            throw ActionFailure(status: 500, code: "action_script_failure", message: "The action lost its lease (execution \(run.id)) and was stopped.")
        }
        try await store.completeAction(lease, outcome, keepOutput: false, retryDelaySeconds: retryDelaySeconds, webhook: nil)
        switch outcome {
        case .succeeded(let output): return output
        case .failed(let failure, _): throw failure
        }
    }

    /// Runs one claimed attempt of an async execution and records how it ended.
    public func run(_ claimed: ClaimedAction) async {
        let connection = claimed.run.connection
        let lease = claimed.lease
        let outcome: ActionOutcome?
        if let action = config.integration(connection.providerConfigKey, in: connection.environment)?.action(named: claimed.run.actionName) {
            do {
                let function = try functions.function(for: action)
                outcome = await attempt(function, action: action, connection: connection, lease: lease, input: try Self.parseInput(claimed.input))
            } catch let failure as ActionFailure {
                outcome = .failed(failure, retryable: false)
            } catch {
                outcome = .failed(Self.failure(for: error, action: action), retryable: false)
            }
        } else {
            outcome = .failed(
                ActionFailure(
                    status: 404, code: "unknown_action",
                    message: "Action '\(claimed.run.actionName)' is no longer configured for integration '\(connection.providerConfigKey)'."),
                retryable: false)
        }
        guard let outcome else { return }  // The lease is gone: whoever holds the execution now records it.
        do {
            let run = try await store.completeAction(
                lease, outcome, keepOutput: true, retryDelaySeconds: retryDelaySeconds, webhook: webhookPlan(for: connection))
            logger.info("async action attempt ended", metadata: ["execution": "\(run.id)", "action": "\(run.actionName)", "status": "\(run.status.rawValue)"])
        } catch {
            logger.warning("could not record an async action's outcome", metadata: ["execution": "\(lease.id)", "error": "\(error)"])
        }
    }

    /// Runs the function under the action's time limit with a heartbeat; nil when the lease was lost.
    func attempt(_ function: any ActionFunction, action: ActionConfig, connection: ConnectionRef, lease: ActionLease, input: JSONValue) async
        -> ActionOutcome?
    {
        let context = ActionRunContext(
            store: store, connection: connection, actionName: action.name, lease: lease, providers: providers, logger: logger)
        enum Ending: Sendable {
            case finished(Result<JSONValue, any Error>)
            case timedOut
            case leaseLost
        }
        let leaseSeconds = self.leaseSeconds
        let store = self.store
        let ending: Ending = await withTaskGroup(of: Ending?.self) { group in
            group.addTask {
                do {
                    return .finished(.success(try await function.run(context, input: input)))
                } catch {
                    return .finished(.failure(error))
                }
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(action.timeoutSeconds))
                return Task.isCancelled ? nil : .timedOut
            }
            group.addTask {
                // The heartbeat: a third of the lease between renewals; a lost lease stops the action.
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(max(1, Double(leaseSeconds) / 3)))
                    if Task.isCancelled { return nil }
                    if let state = try? await store.renewActionLease(lease), !state.isHeld { return .leaseLost }
                }
                return nil
            }
            var result: Ending = .leaseLost
            for await next in group {
                guard let next else { continue }
                result = next
                break
            }
            group.cancelAll()
            return result
        }
        // Stopped from outside (the process is shutting down): nothing is recorded; the lease runs out
        // and the next worker runs the attempt again.
        if Task.isCancelled { return nil }
        switch ending {
        case .leaseLost:
            logger.warning("an action lost its lease and was stopped", metadata: ["execution": "\(lease.id)", "action": "\(action.name)"])
            return nil
        case .timedOut:
            return .failed(
                ActionFailure(
                    status: 500, code: "action_script_failure",
                    message: "Action '\(action.name)' did not finish within its time limit of \(action.timeoutSeconds) s.", payload: ["reason": "timeout"]),
                retryable: false)
        case .finished(.success(let output)):
            let bytes = JSONWriter.bytes(output, canonical: false)
            guard bytes.count <= action.maxOutputBytes else {
                return .failed(
                    ActionFailure(
                        status: 400, code: TributaryError.Code.outputTooLarge.rawValue,
                        message: "Action '\(action.name)' returned \(bytes.count) bytes of output; its limit is \(action.maxOutputBytes) (max_output_bytes)."),
                    retryable: false)
            }
            return .succeeded(output: bytes)
        case .finished(.failure(let error)):
            if let error = error as? TributaryError, error.code == .leaseLost { return nil }
            await context.log("The action failed: \(Self.failure(for: error, action: action).message)", level: .error)
            return .failed(Self.failure(for: error, action: action), retryable: error is any RetryableError)
        }
    }

    /// The input as JSON (an empty body is `null`).
    static func parseInput(_ input: [UInt8]) throws(ActionFailure) -> JSONValue {
        guard !input.isEmpty else { return .null }
        do {
            return try JSONParser.parse(input)
        } catch {
            throw ActionFailure(status: 400, code: "invalid_action_input", message: "The action's input is not valid JSON: \(error.message)")
        }
    }

    /// What the app is told for an error an action threw (Nango's codes).
    static func failure(for error: any Error, action: ActionConfig) -> ActionFailure {
        switch error {
        case let failure as ActionFailure:
            return failure
        case let error as ActionError:
            return ActionFailure(status: 500, code: "action_script_runtime_error", message: "The action script failed with a runtime error", payload: error.payload)
        case let error as ProviderUnavailable:
            return ActionFailure(
                status: 424, code: "script_http_error", message: "The provider did not answer successfully: \(error.description)",
                payload: error.status.map { ["status": .number(JSONNumber($0))] })
        case let error as TributaryError:
            switch error.code {
            case .invalidActionInput, .invalidMetadata, .invalidQuery, .invalidRecord, .unknownModel:
                return ActionFailure(status: 400, code: error.code.rawValue, message: error.message)
            case .invalidCredentials:
                return ActionFailure(status: 424, code: error.code.rawValue, message: error.message)
            case .unknownFunction:
                return ActionFailure(status: 500, code: error.code.rawValue, message: error.message)
            default:
                return ActionFailure(status: 500, code: "action_script_failure", message: "The action script failed with an error: \(error.message)")
            }
        case is CancellationError:
            return ActionFailure(status: 500, code: "action_script_failure", message: "Action '\(action.name)' was stopped (the process is shutting down).")
        default:
            return ActionFailure(status: 500, code: "action_script_failure", message: "The action script failed with an error: \(error)")
        }
    }
}
