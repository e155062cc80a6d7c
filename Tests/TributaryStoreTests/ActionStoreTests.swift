import Foundation
import Testing
import TributaryCore
import TributaryStore
import TributaryTestSupport

/// Action executions in the store: synchronous ones recorded, async ones as durable tasks with
/// leases, retries, expiry and their `async_action` webhook — on SQLite and PostgreSQL.
@Suite("Action executions in the store (SQLite and PostgreSQL)")
struct ActionStoreTests {
    let plan = ActionWebhookPlan(urls: ["http://a.test/h"])

    func start(_ isAsync: Bool, maxRetries: Int = 0) -> ActionRunStart {
        ActionRunStart(connection: connection, actionName: "create-note", input: Array(#"{"text":"hi"}"#.utf8), isAsync: isAsync, maxRetries: maxRetries, leaseSeconds: 10)
    }

    @Test(arguments: StoreKind.available) func aSynchronousExecutionIsRecordedAndFencedByItsLease(_ kind: StoreKind) async throws {
        let clock = TestClock()
        let f = try await StoreFixture(kind, clock: { clock.now })
        await #expect(throws: TributaryError.self, "no such connection") { try await f.store.startAction(start(false)) }
        _ = try await f.store.ensureConnection(connection)
        let (run, lease) = try await f.store.startAction(start(false))
        #expect(run.status == .running && run.attempts == 1 && !run.isAsync && lease.token == 1)
        try await f.store.appendActionLog(lease, level: .info, message: "calling the shop")
        try await f.store.changeMetadata(["a": 1], merge: true, for: lease)
        #expect(try await f.store.metadata(of: connection) == ["a": 1])
        let done = try await f.store.completeAction(lease, .succeeded(output: Array(#"{"ok":true}"#.utf8)), keepOutput: false, retryDelaySeconds: 1, webhook: plan)
        #expect(done.status == .succeeded && done.outputBytes == 11 && done.output == nil && done.finishedAt != nil)
        // Ended: its lease writes nothing more; a synchronous execution sends no webhook.
        await #expect(throws: TributaryError.self) { try await f.store.appendActionLog(lease, level: .info, message: "late") }
        await #expect(throws: TributaryError.self) { try await f.store.changeMetadata(["b": 2], merge: true, for: lease) }
        #expect(try await f.store.metadata(of: connection) == ["a": 1])
        #expect(try await f.store.deliveries(DeliveryQuery(environment: "dev")).isEmpty)
        #expect(try await f.store.actionLogs(run.id, limit: 10).map(\.message) == ["calling the shop"])
        #expect(try await f.store.actionRun(run.id, environment: "prod") == nil, "scoped to its environment")
        #expect(try await f.store.actionRuns(environment: "dev", connection: connection, limit: 10).map(\.id) == [run.id])

        // A synchronous execution whose process died (no heartbeat) is failed by the next claim, not run again.
        let (orphan, _) = try await f.store.startAction(start(false))
        clock.advance(seconds: 11)
        #expect(try await f.store.claimAction(worker: "w", maxExpiries: 3, webhook: { _, _ in plan }) == nil)
        let failed = try #require(try await f.store.actionRun(orphan.id, environment: "dev"))
        #expect(failed.status == .failed && failed.failure?.code == "action_script_failure")
    }

    @Test(arguments: StoreKind.available) func anAsyncExecutionIsRetriedWithBackoffAndSendsItsWebhookWhenItEnds(_ kind: StoreKind) async throws {
        let clock = TestClock()
        let f = try await StoreFixture(kind, clock: { clock.now })
        _ = try await f.store.ensureConnection(connection)
        let queued = try await f.store.queueAction(start(true, maxRetries: 1))
        #expect(queued.status == .queued && queued.attempts == 0 && queued.statusURL == "/action/\(queued.id)")
        let first = try #require(try await f.store.claimAction(worker: "w1", maxExpiries: 3, webhook: { _, _ in plan }))
        #expect(first.run.id == queued.id && first.lease.token == 1 && first.input == Array(#"{"text":"hi"}"#.utf8) && first.run.worker == "w1")
        #expect(try await f.store.claimAction(worker: "w2", maxExpiries: 3, webhook: { _, _ in plan }) == nil, "held")
        let failure = ActionFailure(status: 424, code: "script_http_error", message: "The shop answered 503.")
        let retried = try await f.store.completeAction(first.lease, .failed(failure, retryable: true), keepOutput: true, retryDelaySeconds: 5, webhook: plan)
        #expect(retried.status == .queued && retried.retryableFailures == 1)
        #expect(retried.nextAttemptAt == Timestamp(microseconds: clock.now.microseconds + 5_000_000))
        #expect(try await f.store.deliveries(DeliveryQuery(environment: "dev")).isEmpty, "no webhook before it ends")
        #expect(try await f.store.claimAction(worker: "w1", maxExpiries: 3, webhook: { _, _ in plan }) == nil, "not due yet")
        clock.advance(seconds: 5)
        let second = try #require(try await f.store.claimAction(worker: "w2", maxExpiries: 3, webhook: { _, _ in plan }))
        #expect(second.run.id == queued.id && second.lease.token == 2)
        // A retryable failure with no retry left ends it.
        let ended = try await f.store.completeAction(second.lease, .failed(failure, retryable: true), keepOutput: true, retryDelaySeconds: 5, webhook: plan)
        #expect(ended.status == .failed && ended.failure == failure && ended.retryableFailures == 2)
        let delivery = try #require(try await f.store.deliveries(DeliveryQuery(environment: "dev")).first)
        #expect(String(decoding: delivery.body, as: UTF8.self)
            == #"{"connectionId":"customer-1","from":"nango","payload":{"id":"\#(queued.id)","statusUrl":"/action/\#(queued.id)"},"providerConfigKey":"shop","type":"async_action"}"#)
        #expect(!delivery.success && delivery.runId == nil)

        // Success keeps the output for GET /action/{id}.
        let other = try await f.store.queueAction(start(true))
        let claim = try #require(try await f.store.claimAction(worker: "w1", maxExpiries: 3, webhook: { _, _ in plan }))
        #expect(claim.run.id == other.id)
        _ = try await f.store.completeAction(claim.lease, .succeeded(output: Array("[1,2]".utf8)), keepOutput: true, retryDelaySeconds: 5, webhook: plan)
        let read = try #require(try await f.store.actionRun(other.id, environment: "dev"))
        #expect(read.status == .succeeded && read.output == Array("[1,2]".utf8) && read.outputBytes == 5)
        #expect(try await f.store.deliveries(DeliveryQuery(environment: "dev")).count == 2)
    }

    @Test(arguments: StoreKind.available) func anExecutionWhoseWorkerDiedRunsAgainUnderTheSameIdUntilItsExpiriesRunOut(_ kind: StoreKind) async throws {
        let clock = TestClock()
        let f = try await StoreFixture(kind, clock: { clock.now })
        _ = try await f.store.ensureConnection(connection)
        let queued = try await f.store.queueAction(start(true))
        let first = try #require(try await f.store.claimAction(worker: "w1", maxExpiries: 2, webhook: { _, _ in plan }))
        clock.advance(seconds: 5)
        #expect(try await f.store.renewActionLease(first.lease) == .held)
        clock.advance(seconds: 9)
        #expect(try await f.store.claimAction(worker: "w2", maxExpiries: 2, webhook: { _, _ in plan }) == nil, "renewed: still held")
        clock.advance(seconds: 2)
        let second = try #require(try await f.store.claimAction(worker: "w2", maxExpiries: 2, webhook: { _, _ in plan }))
        #expect(second.run.id == queued.id && second.lease.token == 2 && second.run.expiries == 1)
        // The first attempt, back from a stall, can write nothing.
        #expect(try await f.store.renewActionLease(first.lease) != .held)
        await #expect(throws: TributaryError.self) {
            try await f.store.completeAction(first.lease, .succeeded(output: Array("1".utf8)), keepOutput: true, retryDelaySeconds: 1, webhook: plan)
        }
        #expect(try await f.store.actionLogs(queued.id, limit: 10).map(\.level) == [.warn])
        // The second dies too: with maxExpiries 2 it is failed and the app told.
        clock.advance(seconds: 11)
        #expect(try await f.store.claimAction(worker: "w3", maxExpiries: 2, webhook: { _, _ in plan }) == nil)
        let failed = try #require(try await f.store.actionRun(queued.id, environment: "dev"))
        #expect(failed.status == .failed && failed.expiries == 2 && failed.failure?.payload == ["reason": "lease_expired"])
        #expect(try await f.store.deliveries(DeliveryQuery(environment: "dev")).count == 1)
    }

    @Test(arguments: StoreKind.available) func aStoppingWorkerPutsItsExecutionBackWithoutCountingAnExpiry(_ kind: StoreKind) async throws {
        let clock = TestClock()
        let f = try await StoreFixture(kind, clock: { clock.now })
        _ = try await f.store.ensureConnection(connection)
        let queued = try await f.store.queueAction(start(true))
        let first = try #require(try await f.store.claimAction(worker: "w1", maxExpiries: 3, webhook: { _, _ in plan }))
        try await f.store.releaseAction(first.lease, reason: "shutdown")
        await #expect(throws: TributaryError.self, "released: its lease is gone") { try await f.store.releaseAction(first.lease, reason: "again") }
        let next = try #require(try await f.store.claimAction(worker: "w2", maxExpiries: 3, webhook: { _, _ in plan }), "claimable at once")
        #expect(next.run.id == queued.id && next.lease.token == 2 && next.run.expiries == 0)
        await #expect(throws: TributaryError.self) { try await f.store.changeMetadata(["x": 1], merge: true, for: first.lease) }
        #expect(try await f.store.actionLogs(queued.id, limit: 5).map(\.message) == ["shutdown"])
    }

    @Test(arguments: StoreKind.available) func executionsGoWithTheirConnectionAndWithTheHistory(_ kind: StoreKind) async throws {
        let clock = TestClock()
        let f = try await StoreFixture(kind, clock: { clock.now })
        _ = try await f.store.ensureConnection(connection)
        let (old, lease) = try await f.store.startAction(start(false))
        try await f.store.appendActionLog(lease, level: .info, message: "x")
        _ = try await f.store.completeAction(lease, .succeeded(output: Array("1".utf8)), keepOutput: false, retryDelaySeconds: 1, webhook: nil)
        let open = try await f.store.queueAction(start(true))
        let claimed = try #require(try await f.store.claimAction(worker: "w", maxExpiries: 3, webhook: { _, _ in nil }))
        try await f.store.appendActionLog(claimed.lease, level: .info, message: "working")
        clock.advance(seconds: 86_400 * 40)
        let cutoffs = HistoryCutoffs(runs: clock.now, deliveries: clock.now, webhookTasks: clock.now)
        while try await f.store.pruneHistory(cutoffs, limit: 1) > 0 {}
        #expect(try await f.store.actionRun(old.id, environment: "dev") == nil)
        #expect(try await f.store.actionLogs(old.id, limit: 5).isEmpty)
        #expect(try await f.store.actionRun(open.id, environment: "dev") != nil, "an open execution stays")
        _ = try await f.store.deleteConnection(connection)
        #expect(try await f.store.actionRun(open.id, environment: "dev") == nil)
        #expect(try await f.store.actionLogs(open.id, limit: 5).isEmpty, "its rows went with the connection (the log table is read directly)")
    }
}
