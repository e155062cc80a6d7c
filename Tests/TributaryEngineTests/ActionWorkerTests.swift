import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing
import TributaryCore
import TributaryEngine
import TributaryStore
import TributaryTestSupport

/// The async action worker as a service: a graceful shutdown puts an unfinished action back in the
/// queue at once (no lease wait, no expiry counted), and several workers on one store run each
/// execution once — on SQLite and PostgreSQL.
@Suite("Async action worker")
struct ActionWorkerTests {
    static let config = """
        environments:
          dev: { secret_key: dev-key-0000000000000001 }
        integrations:
          shop:
            actions:
              wait: {}
              count: {}
        """

    /// How often each execution ran, and whether the `wait` action may finish.
    final class Seen: Sendable {
        let runs = Mutex<[String: Int]>([:])
        let released = Mutex(false)
    }

    func executor(_ store: any Store, _ seen: Seen, logger: Logger) throws -> ActionExecutor {
        let wait = ClosureActionFunction(name: "wait") { nango, _ in
            seen.runs.withLock { $0[nango.idempotencyKey, default: 0] += 1 }
            while !seen.released.withLock({ $0 }) {
                try await Task.sleep(for: .milliseconds(5))
                try nango.checkCancellation()
            }
            return "released"
        }
        let count = ClosureActionFunction(name: "count") { nango, _ in
            seen.runs.withLock { $0[nango.idempotencyKey, default: 0] += 1 }
            try await Task.sleep(for: .milliseconds(5))
            return .number(JSONNumber(nango.attempt))
        }
        let config = try ConfigLoader.parse(yaml: Self.config, file: "actions.yaml", environment: [:])
        return ActionExecutor(store: store, config: config, functions: try SyncFunctionRegistry([], actions: [wait, count]), providers: nil, logger: logger)
    }

    var logger: Logger {
        var logger = Logger(label: "action-worker")
        logger.logLevel = .critical
        return logger
    }

    let connection = ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "c1")

    func start(_ name: String) -> ActionRunStart {
        ActionRunStart(connection: connection, actionName: name, input: Array("null".utf8), isAsync: true, leaseSeconds: 60)
    }

    @Test(arguments: StoreKind.available) func aGracefulShutdownPutsAnUnfinishedActionBackAtOnce(_ kind: StoreKind) async throws {
        let f = try await TestStore(kind)
        _ = try await f.store.ensureConnection(connection)
        let seen = Seen()
        let worker = ActionWorker(executor: try executor(f.store, seen, logger: logger), poll: .milliseconds(20), drain: .milliseconds(100), logger: logger)
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: [worker], logger: logger))
        let queued = try await f.store.queueAction(start("wait"))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await eventually("the action started") { seen.runs.withLock { $0[queued.id] } == 1 }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        let run = try #require(try await f.store.actionRun(queued.id, environment: "dev"))
        #expect(run.status == .queued && run.expiries == 0 && run.attempts == 1, "back in the queue, claimable now, no expiry")
        #expect(try await f.store.actionLogs(queued.id, limit: 5).contains { $0.message.contains("shutdown") })
        // The next worker runs it (attempt 2, same key) without waiting for the 60 s lease.
        seen.released.withLock { $0 = true }
        let next = ActionWorker(executor: try executor(f.store, seen, logger: logger), poll: .milliseconds(20), logger: logger)
        let nextGroup = ServiceGroup(configuration: ServiceGroupConfiguration(services: [next], logger: logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await nextGroup.run() }
            try await eventually("the action ended") { try await f.store.actionRun(queued.id, environment: "dev")?.status == .succeeded }
            await nextGroup.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        #expect(seen.runs.withLock { $0[queued.id] } == 2)
        #expect(try await f.store.actionRun(queued.id, environment: "dev")?.attempts == 2)
    }

    @Test(arguments: StoreKind.available) func workersOnOneStoreRunEachExecutionOnce(_ kind: StoreKind) async throws {
        let f = try await TestStore(kind)
        _ = try await f.store.ensureConnection(connection)
        let seen = Seen()
        var ids: [String] = []
        for _ in 0..<30 { ids.append(try await f.store.queueAction(start("count")).id) }
        let workers = try (0..<3).map { _ in
            ActionWorker(executor: try executor(f.store, seen, logger: logger), maxConcurrent: 4, poll: .milliseconds(10), logger: logger)
        }
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: workers, logger: logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await eventually("every action ended", seconds: 30) {
                try await f.store.actionRuns(environment: "dev", connection: nil, limit: 100).allSatisfy { $0.status == .succeeded }
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        #expect(seen.runs.withLock { $0 } == Dictionary(uniqueKeysWithValues: ids.map { ($0, 1) }), "each ran exactly once")
        let runs = try await f.store.actionRuns(environment: "dev", connection: nil, limit: 100)
        #expect(runs.allSatisfy { $0.attempts == 1 && $0.output == Array("1".utf8) })
    }
}
