import Foundation
import Logging
import Synchronization
import TributaryCore
import TributaryStore

/// Runs an integration's on-event functions (`on_events` in `tributary.yaml`) for one connection,
/// in order, each under a time limit, and records every run with its log lines in the environment's
/// history (``ConnectionEventStore``) — by the connection's names, so it outlives the connection.
///
/// `validate-connection` runs before the connection is saved, with the credentials about to be
/// stored: the first failure stops there and its message refuses the connection. The other events
/// run every function; a failure is recorded and changes nothing else.
public struct ConnectionEventRunner: Sendable {
    let config: TributaryConfig
    let functions: SyncFunctionRegistry?
    let store: any Store
    let providers: ProviderAccess?
    let logger: Logger
    /// How long one function may run (cancelled after; provider calls and `checkCancellation` stop it).
    let timeLimit: Duration

    public init(
        config: TributaryConfig, functions: SyncFunctionRegistry?, store: any Store, providers: ProviderAccess?, logger: Logger,
        timeLimit: Duration = .seconds(60)
    ) {
        self.config = config
        self.functions = functions
        self.store = store
        self.providers = providers
        self.logger = logger
        self.timeLimit = timeLimit
    }

    /// The connection about to be saved, for `validate-connection`: its credentials (stored form) and metadata.
    public struct Candidate: Sendable {
        public var credentials: JSONObject
        public var metadata: JSONObject
        public init(credentials: JSONObject, metadata: JSONObject) {
            self.credentials = credentials
            self.metadata = metadata
        }
    }

    /// Whether the integration of `connection` has functions for `event`.
    public func has(_ event: ConnectionEvent, for connection: ConnectionRef) -> Bool {
        !(config.integration(connection.providerConfigKey, in: connection.environment)?.onEvents[event] ?? []).isEmpty
    }

    /// Runs the functions of `event`; returns the first failure's message (nil: all succeeded, or none is configured).
    @discardableResult
    public func run(_ event: ConnectionEvent, connection: ConnectionRef, candidate: Candidate? = nil) async -> String? {
        guard let integration = config.integration(connection.providerConfigKey, in: connection.environment) else { return nil }
        var firstFailure: String?
        for name in integration.onEvents[event] ?? [] {
            // A cancelled caller (shutdown) starts nothing more.
            if Task.isCancelled { break }
            let started = Timestamp.now()
            let context = EventRunContext(
                connection: connection, event: event, integration: integration, candidate: candidate, store: store, providers: providers)
            var failure: String?
            if let function = functions?.event(named: name) {
                failure = await attempt(function, context)
            } else {
                failure = "The on-event function '\(name)' is not registered in this binary."
            }
            let run = ConnectionEventRun(
                id: UUID().uuidString.lowercased(), connection: connection, event: event, function: name, failure: failure, logs: context.lines,
                startedAt: started, finishedAt: .now())
            do {
                try await store.recordConnectionEventRun(run)
            } catch {
                logger.error("could not record an on-event function run", metadata: ["connection": "\(connection)", "function": "\(name)"])
            }
            if let failure {
                logger.notice("on-event function failed", metadata: ["connection": "\(connection)", "event": "\(event.rawValue)", "function": "\(name)"])
                firstFailure = firstFailure ?? failure
                if event == .validateConnection { break }
            }
        }
        return firstFailure
    }

    /// One function under the time limit; its failure in words (nil: it succeeded). The function and
    /// a timer race, as an action's attempt does: the first to report ends the run and the other is
    /// cancelled, and the run does not wait for a function that ignores cancellation (the request
    /// goes on; the function's late provider calls and metadata writes are its own business).
    private func attempt(_ function: any ConnectionEventFunction, _ context: EventRunContext) async -> String? {
        let limit = timeLimit
        let (events, sink) = AsyncStream.makeStream(of: Result<Void, any Error>?.self, bufferingPolicy: .bufferingOldest(2))
        // Owned here: both are cancelled as soon as one reported (or the caller was cancelled).
        let work = Task {
            do {
                try await function.run(context)
                sink.yield(.success(()))
            } catch {
                sink.yield(.failure(error))
            }
        }
        let timer = Task {
            guard (try? await Task.sleep(for: limit)) != nil else { return }
            sink.yield(nil)
        }
        var first: Result<Void, any Error>?? = nil
        for await event in events {
            first = event
            break
        }
        work.cancel()
        timer.cancel()
        sink.finish()
        switch first {
        case nil:
            return "It was stopped before it finished (its request was cancelled)."
        case .some(nil):
            return "It did not finish within its time limit (\(limit))."
        case .some(.success?):
            return nil
        case .some(.failure(let error)?):
            switch error {
            case let error as ConnectionEventError: return error.message
            case let error as TributaryError: return error.message
            case let error as ProviderUnavailable: return "The provider could not be reached (\(error.reason))."
            case is CancellationError: return "It was cancelled."
            default: return "It failed: \(String(describing: type(of: error)))."
            }
        }
    }

}

/// The context an on-event function gets: provider calls with the stored credentials (or the
/// candidate's), metadata, and log lines collected for its run.
final class EventRunContext: ConnectionEventContext {
    let environment: String
    let providerConfigKey: String
    let connectionId: String
    let event: ConnectionEvent
    private let connection: ConnectionRef
    private let integration: IntegrationConfig
    private let candidate: ConnectionEventRunner.Candidate?
    private let store: any Store
    private let providers: ProviderAccess?
    private let collected = Mutex<(lines: [RunLogEntry], dropped: Int)>(([], 0))

    init(
        connection: ConnectionRef, event: ConnectionEvent, integration: IntegrationConfig, candidate: ConnectionEventRunner.Candidate?, store: any Store,
        providers: ProviderAccess?
    ) {
        self.connection = connection
        environment = connection.environment
        providerConfigKey = connection.providerConfigKey
        connectionId = connection.connectionId
        self.event = event
        self.integration = integration
        self.candidate = candidate
        self.store = store
        self.providers = providers
    }

    var lines: [RunLogEntry] {
        collected.withLock { state in
            state.dropped == 0
                ? state.lines
                : state.lines + [.init(at: .now(), level: .warn, message: "\(state.dropped) more log lines were dropped")]
        }
    }

    func send(_ request: ProviderRequest) async throws -> ProviderResponse {
        try Task.checkCancellation()
        guard let providers else { throw TributaryError(.providerError, "This process makes no provider calls.") }
        if let candidate { return try await providers.send(request, credentials: candidate.credentials, integration: integration) }
        // Run right after the connection was created or changed: never with credentials kept from before.
        return try await providers.send(request, for: connection, freshCredentials: true)
    }

    func getMetadata() async throws -> JSONObject {
        if let candidate { return candidate.metadata }
        guard let record = try await store.connection(connection) else {
            throw TributaryError(.unknownConnection, "Connection '\(connectionId)' does not exist.")
        }
        return record.metadata
    }

    func updateMetadata(_ metadata: JSONObject) async throws {
        guard candidate == nil else {
            throw TributaryError(.invalidMetadata, "validate-connection cannot change metadata: the connection is not saved yet.")
        }
        try await store.updateMetadata(metadata, of: [connection])
    }

    func log(_ message: String, level: LogLevel) async {
        collected.withLock { state in
            if state.lines.count < ConnectionEventRun.maximumLogLines - 1 {
                state.lines.append(.init(at: .now(), level: level, message: String(message.prefix(4000))))
            } else {
                state.dropped += 1
            }
        }
    }

    func checkCancellation() throws { try Task.checkCancellation() }
}
