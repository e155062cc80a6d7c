import Foundation
import Logging
import Testing
import TributaryCore
import TributaryEngine
import TributaryStore
import TributaryTestSupport

/// The on-event runner's own rules: the time limit holds for a function that ignores cancellation,
/// validate-connection stops at its first refusal, and every run is recorded.
@Suite("On-event functions (ConnectionEventRunner)")
struct ConnectionEventRunnerTests {
    let yaml = """
        environments:
          dev: { secret_key: dev-key-0123456789abcdef }
        integrations:
          shop:
            syncs: {}
            on_events:
              validate-connection: [refuse, never-reached]
              post-connection-creation: [stuck, missing, fine]
        """

    @Test func aFunctionThatIgnoresCancellationIsGivenUpAtItsTimeLimitAndTheRestStillRun() async throws {
        let f = try await TestStore(.sqlite)
        let config = try ConfigLoader.parse(yaml: yaml, file: "e.yaml", environment: [:])
        // Waits on a continuation nobody resumes: cancellation does not reach it.
        let stuck = ClosureConnectionEventFunction(name: "stuck") { _ in
            await withCheckedContinuation { (_: CheckedContinuation<Void, Never>) in }
        }
        let fine = ClosureConnectionEventFunction(name: "fine") { nango in await nango.log("fine ran") }
        let refuse = ClosureConnectionEventFunction(name: "refuse") { _ in throw ConnectionEventError("not this one") }
        let neverReached = ClosureConnectionEventFunction(name: "never-reached") { _ in Issue.record("validation goes on after a refusal") }
        var logger = Logger(label: "events")
        logger.logLevel = .critical
        let runner = ConnectionEventRunner(
            config: config, functions: try SyncFunctionRegistry([], events: [stuck, fine, refuse, neverReached]), store: f.store, providers: nil, logger: logger,
            timeLimit: .milliseconds(300))
        let connection = ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "c-1")

        let started = ContinuousClock.now
        let failure = await runner.run(.postConnectionCreation, connection: connection)
        #expect(ContinuousClock.now - started < .seconds(5), "not held by the stuck function")
        #expect(failure == "It did not finish within its time limit (0.3 seconds).")
        let refused = await runner.run(.validateConnection, connection: connection, candidate: .init(credentials: [:], metadata: [:]))
        #expect(refused == "not this one")

        let runs = try await f.store.connectionEventRuns(environment: "dev", providerConfigKey: "shop", connectionId: "c-1", limit: 10)
        #expect(runs.map(\.function).sorted() == ["fine", "missing", "refuse", "stuck"])
        #expect(runs.first { $0.function == "missing" }?.failure == "The on-event function 'missing' is not registered in this binary.")
        #expect(runs.first { $0.function == "fine" }?.succeeded == true && runs.first { $0.function == "fine" }?.logs.map(\.message) == ["fine ran"])
    }
}
