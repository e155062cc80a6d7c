import Logging
import Synchronization
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

    /// Where `connection`'s `async_action` webhooks go: the environment's receivers, or the
    /// connection's own (`connection_config.webhook_url`), as for sync webhooks; nil: none.
    func webhookPlan(for connection: ConnectionRef, connectionConfig: JSONObject) -> ActionWebhookPlan? {
        guard let settings = config.environment(named: connection.environment)?.webhooks, settings.signingKey != nil else { return nil }
        let urls = settings.urls(for: connectionConfig)
        return urls.isEmpty ? nil : ActionWebhookPlan(urls: urls)
    }

    /// ``webhookPlan(for:connectionConfig:)`` reading the connection's override from the store (the
    /// environment's receivers when it cannot be read: a webhook is never dropped for want of it).
    func webhookPlan(for connection: ConnectionRef) async -> ActionWebhookPlan? {
        let connectionConfig = (try? await store.connection(connection))?.connectionConfig ?? [:]
        return webhookPlan(for: connection, connectionConfig: connectionConfig)
    }

    /// Runs `action` now for the API and answers its output's JSON.
    /// - Throws: ``ActionFailure`` (Nango's status, code and message) when it failed; a store error
    ///   when it could not be recorded.
    public func runNow(_ action: ActionConfig, connection: ConnectionRef, input: [UInt8]) async throws -> [UInt8] {
        let parsed = try Self.parseInput(input)
        let function = try functions.function(for: action)
        let (run, lease) = try await store.startAction(
            ActionRunStart(connection: connection, actionName: action.name, input: input, isAsync: false, leaseSeconds: leaseSeconds))
        let outcome: ActionOutcome
        switch await attempt(function, action: action, connection: connection, lease: lease, input: parsed) {
        case .ended(let ended):
            outcome = ended
        case .leaseLost:
            throw ActionFailure(status: 500, code: "action_script_failure", message: "The action lost its lease (execution \(run.id)) and was stopped.")
        case .stopped:
            // The request was cancelled (the server is stopping): nobody waits for a retry.
            outcome = .failed(Self.failure(for: CancellationError(), action: action), retryable: false)
        }
        let store = self.store
        let delay = retryDelaySeconds
        _ = try await shielded { try await store.completeAction(lease, outcome, keepOutput: false, retryDelaySeconds: delay, webhook: nil) }
        switch outcome {
        case .succeeded(let output): return output
        case .failed(let failure, _): throw failure
        }
    }

    /// Runs one claimed attempt of an async execution and records how it ended — or, when the
    /// process is stopping, puts it back in the queue for the next worker (no expiry counted).
    public func run(_ claimed: ClaimedAction) async {
        let connection = claimed.run.connection
        let lease = claimed.lease
        let outcome: ActionOutcome
        if let action = config.integration(connection.providerConfigKey, in: connection.environment)?.action(named: claimed.run.actionName) {
            do {
                let function = try functions.function(for: action)
                switch await attempt(function, action: action, connection: connection, lease: lease, input: try Self.parseInput(claimed.input)) {
                case .ended(let ended):
                    outcome = ended
                case .leaseLost:
                    return  // whoever holds the execution now records it
                case .stopped:
                    let store = self.store
                    do {
                        try await shielded { try await store.releaseAction(lease, reason: "The worker stopped (shutdown); queued again for the next worker.") }
                    } catch {
                        logger.warning("could not put a stopped async action back in the queue", metadata: ["execution": "\(lease.id)", "error": "\(error)"])
                    }
                    return
                }
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
        do {
            let plan = await webhookPlan(for: connection)
            let store = self.store
            let delay = retryDelaySeconds
            let run = try await shielded {
                try await store.completeAction(lease, outcome, keepOutput: true, retryDelaySeconds: delay, webhook: plan)
            }
            logger.info("async action attempt ended", metadata: ["execution": "\(run.id)", "action": "\(run.actionName)", "status": "\(run.status.rawValue)"])
        } catch {
            logger.warning("could not record an async action's outcome", metadata: ["execution": "\(lease.id)", "error": "\(error)"])
        }
    }

    /// How an attempt ended.
    enum AttemptResult: Sendable {
        /// Record this.
        case ended(ActionOutcome)
        /// Another attempt holds the execution: record nothing.
        case leaseLost
        /// The calling task was cancelled before the function finished.
        case stopped
    }

    /// Runs the function under the action's time limit while a heartbeat keeps its lease. The
    /// function, the timer and the heartbeat race: the first to report ends the attempt and the
    /// others are cancelled. The attempt does not wait for a function that ignores cancellation — a
    /// timed-out attempt is recorded at once (which ends its lease: nothing else takes it over) and
    /// the function's late writes are refused by the fence.
    func attempt(_ function: any ActionFunction, action: ActionConfig, connection: ConnectionRef, lease: ActionLease, input: JSONValue) async
        -> AttemptResult
    {
        let context = ActionRunContext(
            store: store, connection: connection, actionName: action.name, lease: lease, providers: providers, logger: logger)
        enum Event: Sendable {
            case finished(Result<JSONValue, any Error>)
            case timedOut
            case leaseLost
        }
        let (events, sink) = AsyncStream.makeStream(of: Event.self, bufferingPolicy: .bufferingOldest(4))
        let finished = Mutex<Result<JSONValue, any Error>?>(nil)
        // Owned here: each is cancelled as soon as the attempt ended.
        let work = Task {
            let result: Result<JSONValue, any Error>
            do {
                result = .success(try await function.run(context, input: input))
            } catch {
                result = .failure(error)
            }
            finished.withLock { $0 = result }
            sink.yield(.finished(result))
        }
        let timer = Task {
            guard (try? await Task.sleep(for: .seconds(action.timeoutSeconds))) != nil else { return }
            sink.yield(.timedOut)
        }
        let heartbeat = Task { [store, leaseSeconds] in
            // A third of the lease between renewals; a lost lease stops the action.
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(Double(leaseSeconds) / 3))
                if Task.isCancelled { return }
                if let state = try? await store.renewActionLease(lease), !state.isHeld {
                    sink.yield(.leaseLost)
                    return
                }
            }
        }
        var first: Event? = nil
        for await event in events {
            first = event
            break
        }
        work.cancel()
        timer.cancel()
        heartbeat.cancel()
        sink.finish()
        // Cancelled from outside: a function that finished meanwhile is still recorded.
        let event = first ?? finished.withLock { $0 }.map(Event.finished)
        switch event {
        case nil:
            return .stopped
        case .leaseLost?:
            logger.warning("an action lost its lease and was stopped", metadata: ["execution": "\(lease.id)", "action": "\(action.name)"])
            return .leaseLost
        case .timedOut?:
            return .ended(
                .failed(
                    ActionFailure(
                        status: 500, code: "action_script_failure",
                        message: "Action '\(action.name)' did not finish within its time limit of \(action.timeoutSeconds) s.", payload: ["reason": "timeout"]),
                    retryable: false))
        case .finished(.success(let output))?:
            let bytes = JSONWriter.bytes(output, canonical: false)
            guard bytes.count <= action.maxOutputBytes else {
                return .ended(
                    .failed(
                        ActionFailure(
                            status: 400, code: TributaryError.Code.outputTooLarge.rawValue,
                            message: "Action '\(action.name)' returned \(bytes.count) bytes of output; its limit is \(action.maxOutputBytes) (max_output_bytes)."),
                        retryable: false))
            }
            return .ended(.succeeded(output: bytes))
        case .finished(.failure(let error))?:
            if let error = error as? TributaryError, error.code == .leaseLost { return .leaseLost }
            if error is CancellationError, first == nil { return .stopped }
            let failure = Self.failure(for: error, action: action)
            await context.log("The action failed: \(failure.message)", level: .error)
            return .ended(.failed(failure, retryable: error is any RetryableError))
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
            return ActionFailure(
                status: 500, code: "action_script_runtime_error", message: "The action script failed with a runtime error", payload: capped(error.payload))
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
            return ActionFailure(status: 500, code: "action_script_failure", message: capped("The action script failed with an error: \(error)"))
        }
    }

    /// The most bytes of an error payload (as JSON) and of an error message kept and answered.
    static let maximumPayloadBytes = 65_536
    static let maximumMessageBytes = 4_096

    static func capped(_ payload: JSONObject) -> JSONObject {
        let size = JSONWriter.bytes(.object(payload), canonical: false).count
        guard size > maximumPayloadBytes else { return payload }
        return ["message": .string("The action's error payload was \(size) bytes; at most \(maximumPayloadBytes) are kept.")]
    }

    static func capped(_ message: String) -> String {
        guard message.utf8.count > maximumMessageBytes else { return message }
        return String(decoding: Array(message.utf8.prefix(maximumMessageBytes)), as: UTF8.self) + "… (truncated)"
    }
}
