import Foundation
import Synchronization
import Testing
import TributaryCore
import TributarySQLite
import TributaryStore
import TributaryTestSupport

@Suite("Webhook outbox and provider webhook tasks in the store (SQLite and PostgreSQL)")
struct WebhookOutboxTests {
    let plan = SyncWebhookPlan(urls: ["http://a.test/h", "http://b.test/h"], sendOnZeroChanges: false, sendOnFailure: true, models: ["Order", "Line"])

    func body(_ delivery: WebhookDelivery) throws -> JSONObject {
        try #require(try JSONParser.parse(delivery.body).objectValue)
    }

    @Test(arguments: StoreKind.available) func aSucceedingRunQueuesOneWebhookPerChangedModelAndReceiverInItsTransaction(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        let started = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: false))
        _ = try await f.store.saveRecords([order("1"), order("2")], model: "Order", for: started.lease)
        let run = try await f.store.completeRun(started.lease, RunCompletion(outcome: .succeeded, models: ["Order", "Line"], webhooks: plan))
        #expect(run.results == ["Order": ModelResult(added: 2), "Line": ModelResult()], "every declared model appears")
        let deliveries = try await f.store.deliveries(DeliveryQuery(environment: "dev")).reversed()
        // Line had no changes: no webhook for it; Order goes to both receivers.
        #expect(deliveries.map(\.url) == ["http://a.test/h", "http://b.test/h"])
        #expect(Set(deliveries.map(\.idempotencyKey)).count == 2)
        for delivery in deliveries {
            #expect(delivery.status == .pending && delivery.attempts == 0 && delivery.runId == run.id && delivery.model == "Order")
            let json = try body(delivery)
            #expect(json["from"] == "nango" && json["type"] == "sync" && json["success"] == true)
            #expect(json["connectionId"] == "customer-1" && json["providerConfigKey"] == "shop" && json["syncName"] == "orders")
            #expect(json["syncVariant"] == "base" && json["model"] == "Order" && json["syncType"] == "INITIAL")
            #expect(json["responseResults"] == ["added": 2, "deleted": 0, "updated": 0])
            #expect(json["modifiedAfter"] == .string(run.startedAt.iso8601) && json["queryTimeStamp"] == .string(run.startedAt.iso8601))
            #expect(json["checkpoint"] == .null, "no checkpoint was saved")
            // Keys are sorted, in JavaScript's form, so the signed bytes are stable.
            #expect(delivery.body == JavaScriptJSON.bytes(.object(json)))
        }
        // The next run is INCREMENTAL; with zero changes nothing is sent unless asked for.
        let second = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: false))
        _ = try await f.store.completeRun(second.lease, RunCompletion(outcome: .succeeded, models: ["Order"], webhooks: plan))
        #expect(try await f.store.deliveries(DeliveryQuery(environment: "dev")).count == 2)
        var always = plan
        always.sendOnZeroChanges = true
        always.urls = ["http://a.test/h"]
        let third = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: false))
        _ = try await f.store.completeRun(third.lease, RunCompletion(outcome: .succeeded, webhooks: always))
        let latest = try await f.store.deliveries(DeliveryQuery(environment: "dev", limit: 2))
        #expect(latest.map(\.model) == ["Line", "Order"])
        #expect(try latest.allSatisfy { try body($0)["syncType"] == "INCREMENTAL" && body($0)["responseResults"] == ["added": 0, "deleted": 0, "updated": 0] })
    }

    @Test(arguments: StoreKind.available) func failedRunsSendOneFailureWebhookAndCancelledRunsNone(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        let started = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: false))
        _ = try await f.store.completeRun(started.lease, RunCompletion(outcome: .failed(message: "provider said 500"), webhooks: plan))
        let failures = try await f.store.deliveries(DeliveryQuery(environment: "dev"))
        #expect(failures.count == 2 && failures.allSatisfy { !$0.success && $0.model == "Order,Line" })
        let json = try body(failures[0])
        #expect(json["success"] == false && json["error"] == ["type": "script_error", "description": "provider said 500"])
        #expect(json["startedAt"]?.stringValue != nil && json["failedAt"]?.stringValue != nil && json["responseResults"] == nil)

        let cancelled = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: false))
        _ = try await f.store.completeRun(cancelled.lease, RunCompletion(outcome: .cancelled(reason: "paused"), webhooks: plan))
        var quiet = plan
        quiet.sendOnFailure = false
        let failedQuietly = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: false))
        _ = try await f.store.completeRun(failedQuietly.lease, RunCompletion(outcome: .failed(message: "x"), webhooks: quiet))
        #expect(try await f.store.deliveries(DeliveryQuery(environment: "dev")).count == 2)
    }

    /// Like `GET /sync/status`, a webhook carries the variant's checkpoint as the run left it, without
    /// the integration's credential query parameters a saved link may hold, in JavaScript's key order.
    @Test(arguments: StoreKind.available) func webhooksCarryTheCheckpointTheRunLeft(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        var plan = plan
        plan.linkCredentials = ["api_key"]
        let failing = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: false))
        let saved: Checkpoint = ["next": "https://api.test/o?page=2&api_key=SECRET", "2": .number(JSONNumber(1.5)), "a": true, "10": "x"]
        try await f.store.saveCheckpoint(try saved.validated(), for: failing.lease)
        _ = try await f.store.completeRun(failing.lease, RunCompletion(outcome: .failed(message: "boom"), webhooks: plan))
        let failure = try #require(try await f.store.deliveries(DeliveryQuery(environment: "dev")).first)
        let text = String(decoding: failure.body, as: UTF8.self)
        #expect(text.contains(#""checkpoint":{"2":1.5,"10":"x","a":true,"next":"https://api.test/o?page=2"}"#), "\(text)")
        #expect(!text.contains("SECRET"))

        // A success that keeps the checkpoint sends it; one that clears it sends null.
        let keeping = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: false))
        _ = try await f.store.saveRecords([order("1")], model: "Order", for: keeping.lease)
        try await f.store.saveCheckpoint(["page": 3], for: keeping.lease)
        _ = try await f.store.completeRun(keeping.lease, RunCompletion(outcome: .succeeded, models: ["Order"], webhooks: plan))
        #expect(try body(try #require(try await f.store.deliveries(DeliveryQuery(environment: "dev")).first))["checkpoint"] == ["page": 3])
        let clearing = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: false))
        _ = try await f.store.saveRecords([order("2")], model: "Order", for: clearing.lease)
        _ = try await f.store.completeRun(clearing.lease, RunCompletion(outcome: .succeeded, models: ["Order"], clearCheckpoint: true, webhooks: plan))
        #expect(try body(try #require(try await f.store.deliveries(DeliveryQuery(environment: "dev")).first))["checkpoint"] == .null)
    }

    @Test(arguments: StoreKind.available) func aRunThatCannotBeRecordedQueuesNoWebhook(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        let started = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: false))
        try await f.store.deleteVariant(baseVariant)
        await #expect(throws: (any Error).self) {
            try await f.store.completeRun(started.lease, RunCompletion(outcome: .succeeded, models: ["Order"], webhooks: plan))
        }
        #expect(try await f.store.deliveries(DeliveryQuery(environment: "dev")).isEmpty)
    }

    @Test(arguments: StoreKind.available) func claimsTakeTheOldestPendingDeliveryOfEachReceiverOnly(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        for _ in 0..<3 {
            let started = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: false))
            _ = try await f.store.completeRun(started.lease, RunCompletion(outcome: .failed(message: "x"), webhooks: plan))
        }
        let all = try await f.store.deliveries(DeliveryQuery(environment: "dev")).reversed().map(\.self)
        let now = Timestamp.now()
        let first = try await f.store.claimDeliveries(now: now, limit: 10, leaseSeconds: 30)
        #expect(first.map(\.id) == [all[0].id, all[1].id], "one head per receiver")
        // Claimed heads are locked: a second claimer gets nothing, and never the next one of the same receiver.
        #expect(try await f.store.claimDeliveries(now: now, limit: 10, leaseSeconds: 30).isEmpty)
        // a.test's head fails and waits; b.test's is delivered and its next one becomes claimable.
        let later = Timestamp(microseconds: now.microseconds + 60_000_000)
        try await f.store.recordDeliveryAttempt(first[0].id, .retry(error: "connection refused", statusCode: nil, nextAttemptAt: later))
        try await f.store.recordDeliveryAttempt(first[1].id, .delivered(statusCode: 204))
        let second = try await f.store.claimDeliveries(now: now, limit: 10, leaseSeconds: 30)
        #expect(second.map(\.id) == [all[3].id], "a.test waits behind its failing head: order is kept")
        let retried = try #require(try await f.store.delivery(first[0].id, environment: "dev"))
        #expect(retried.attempts == 1 && retried.lastError == "connection refused" && retried.status == .pending && retried.nextAttemptAt == later)
        // Due again after the wait (and b.test's next one comes up once its predecessor is delivered).
        try await f.store.recordDeliveryAttempt(all[3].id, .delivered(statusCode: 200))
        let third = try await f.store.claimDeliveries(now: later, limit: 10, leaseSeconds: 30)
        #expect(Set(third.map(\.id)) == [all[0].id, all[5].id])
        // Given up: the receiver's queue moves on; a retry through the API makes it pending and due again.
        try await f.store.recordDeliveryAttempt(all[0].id, .gaveUp(error: "refused with 404", statusCode: 404))
        #expect(try await f.store.claimDeliveries(now: later, limit: 10, leaseSeconds: 30).map(\.id) == [all[2].id])
        #expect(try await f.store.retryDelivery(all[0].id, environment: "prod", now: later) == nil, "other environments cannot see it")
        let again = try #require(try await f.store.retryDelivery(all[0].id, environment: "dev", now: later))
        #expect(again.status == .pending && again.attempts == 2 && again.lastStatusCode == 404)
        #expect(try await f.store.deliveries(DeliveryQuery(environment: "dev", status: .failed)).isEmpty)
    }

    @Test(arguments: StoreKind.available) func providerWebhookRunsBesideTheVariantsOwnRunAndFinishTheirTask(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        try await f.store.ensureVariant(baseVariant)
        try await f.store.ensureVariant(euVariant)
        let tasks = try await f.store.enqueueProviderWebhook(
            for: [baseVariant, VariantRef(connection: connection, syncName: "ghost")], type: "order.updated", payload: Array(#"{"a":1}"#.utf8))
        #expect(tasks.map(\.variant) == [baseVariant], "unknown variants are skipped")
        // The variant's own run is active; the webhook execution still starts, and does not block the variant.
        let own = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: true))
        let claimed = try #require(try await f.store.claimProviderWebhook(leaseSeconds: 60, maxAttempts: 3))
        #expect(claimed.task.type == "order.updated" && claimed.task.payload == Array(#"{"a":1}"#.utf8) && claimed.started.kind == .webhook)
        #expect(try await f.store.activeRun(of: baseVariant)?.id == own.runId, "the webhook run is not the variant's active run")
        #expect(try await f.store.claimProviderWebhook(leaseSeconds: 60, maxAttempts: 3) == nil, "claimed once")
        _ = try await f.store.saveRecords([order("w1")], model: "Order", for: claimed.started.lease)
        let done = try await f.store.completeRun(claimed.started.lease, RunCompletion(outcome: .succeeded, models: ["Order"], webhooks: plan))
        #expect(done.results["Order"] == ModelResult(added: 1))
        #expect(done.kind == .webhook && done.status == .succeeded)
        let state = try #require(try await f.store.variantState(baseVariant))
        #expect(state.lastSyncDate == nil && state.deletionGeneration == own.deletionGeneration, "a webhook run changes no variant state")
        let sent = try await f.store.deliveries(DeliveryQuery(environment: "dev"))
        #expect(try sent.allSatisfy { try body($0)["syncType"] == "WEBHOOK" && body($0)["syncVariant"] == "base" })
        #expect(try await f.store.runs(of: baseVariant, limit: 5, includingWebhooks: false).map(\.id) == [own.runId])
        #expect(try await f.store.runs(of: baseVariant, limit: 5).count == 2)
    }

    @Test(arguments: StoreKind.available) func aTaskWhoseWorkerDiedIsClaimedAgainAndGivenUpAfterMaxAttempts(_ kind: StoreKind) async throws {
        let clock = TestClock()
        let f = try await StoreFixture(kind, clock: { clock.now })
        let store = f.store
        try await store.ensureVariant(baseVariant)
        _ = try await store.enqueueProviderWebhook(for: [baseVariant], type: nil, payload: Array("{}".utf8))
        let first = try #require(try await store.claimProviderWebhook(leaseSeconds: 10, maxAttempts: 2))
        #expect(try await store.claimProviderWebhook(leaseSeconds: 10, maxAttempts: 2) == nil, "its lease is live")
        clock.advance(seconds: 11)
        let second = try #require(try await store.claimProviderWebhook(leaseSeconds: 10, maxAttempts: 2))
        #expect(second.task.id == first.task.id && second.task.attempts == 2)
        #expect(try await store.run(first.started.runId)?.status == .expired)
        // A cancelled execution (shutdown) leaves the task open at once.
        _ = try await store.completeRun(second.started.lease, RunCompletion(outcome: .cancelled(reason: "shutdown")))
        #expect(try await store.claimProviderWebhook(leaseSeconds: 10, maxAttempts: 2) == nil, "third claim: given up")
        let runs = try await store.runs(of: baseVariant, limit: 10)
        #expect(runs.first?.status == .failed && runs.first?.error?.contains("Given up") == true)
        #expect(try await store.expireRuns(RunExpiry.Policy()).isEmpty, "no sync retry is queued for webhook runs")
        #expect(try await store.activeRun(of: baseVariant) == nil)
    }
}

/// A settable clock for the store.
final class TestClock: Sendable {
    private let current = Mutex(Timestamp(microseconds: 1_800_000_000_000_000))
    var now: Timestamp { current.withLock { $0 } }
    func advance(seconds: Double) { current.withLock { $0 = Timestamp(microseconds: $0.microseconds + Int64(seconds * 1_000_000)) } }
}
