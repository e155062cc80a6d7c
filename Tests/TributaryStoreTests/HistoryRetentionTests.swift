import Foundation
import Testing
import TributaryCore
import TributaryStore
import TributaryTestSupport

/// Finished history past its retention is removed in batches; what is still in use never is.
@Suite("History retention (SQLite and PostgreSQL)")
struct HistoryRetentionTests {
    let plan = SyncWebhookPlan(urls: ["http://a.test/h"], sendOnZeroChanges: true, sendOnFailure: true, models: ["Order"])

    /// Everything that ended before `now + 1 h` counts as past its retention.
    func allPast() -> HistoryCutoffs {
        let future = Timestamp(microseconds: Timestamp.now().microseconds + 3_600_000_000)
        return HistoryCutoffs(runs: future, deliveries: future, webhookTasks: future)
    }

    func prune(_ store: any Store, _ cutoffs: HistoryCutoffs, limit: Int = 2) async throws -> Int {
        var total = 0
        while true {
            let removed = try await store.pruneHistory(cutoffs, limit: limit)
            total += removed
            if removed == 0 { return total }
        }
    }

    @Test(arguments: StoreKind.available) func finishedHistoryGoesWhatIsInUseStays(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        // Four finished runs of base (each with a log line and a delivery), the last one its latest.
        var finished: [RunRecord] = []
        for _ in 0..<4 {
            let started = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: false))
            try await f.store.appendLog(started.lease, level: .info, message: "page 1")
            _ = try await f.store.saveRecords([order("1")], model: "Order", for: started.lease)
            finished.append(try await f.store.completeRun(started.lease, RunCompletion(outcome: .succeeded, models: ["Order"], webhooks: plan)))
        }
        // Two deliveries are done (one delivered, one given up); the rest stay pending.
        let deliveries = try await f.store.deliveries(DeliveryQuery(environment: "dev")).sorted { $0.id < $1.id }
        #expect(deliveries.count == 4)
        try await f.store.recordDeliveryAttempt(deliveries[0].id, .delivered(statusCode: 200))
        try await f.store.recordDeliveryAttempt(deliveries[1].id, .gaveUp(error: "refused", statusCode: 410))
        // A running run of another variant, and a provider webhook task handled and one still open.
        let running = try await f.store.startRun(euVariant, RunStart(tracksDeletes: false))
        _ = try await f.store.enqueueProviderWebhook(for: [baseVariant], type: "a", payload: Array("{}".utf8))
        let handled = try #require(try await f.store.claimProviderWebhook(leaseSeconds: 60, maxAttempts: 3))
        _ = try await f.store.completeRun(handled.started.lease, RunCompletion(outcome: .succeeded, models: ["Order"]))
        _ = try await f.store.enqueueProviderWebhook(for: [baseVariant], type: "b", payload: Array("{}".utf8))

        // A cutoff in the past removes nothing.
        let past = Timestamp(microseconds: finished[0].startedAt.microseconds - 1)
        #expect(try await f.store.pruneHistory(HistoryCutoffs(runs: past, deliveries: past, webhookTasks: past), limit: 100) == 0)

        // Past every cutoff, in batches of two: runs 1 and 2 (their deliveries are done), the finished
        // webhook execution, the two done deliveries and the handled task go. Runs 3 and 4 stay while
        // their deliveries are pending; run 4 is also the latest.
        var logLines = 0
        for run in [finished[0].id, finished[1].id, handled.started.runId] { logLines += try await f.store.logs(ofRun: run, limit: 100).count }
        let removed = try await prune(f.store, allPast())
        #expect(removed == logLines + 3 + 2 + 1, "log lines first, then their runs")
        let left = try await f.store.runs(of: baseVariant, limit: 100).map(\.id)
        #expect(left == [finished[3].id, finished[2].id], "runs with pending deliveries stay")
        #expect(try await f.store.run(handled.started.runId) == nil)
        #expect(try await f.store.logs(ofRun: finished[0].id, limit: 10).isEmpty, "logs go with their run")
        #expect(try await f.store.logs(ofRun: finished[2].id, limit: 10).map(\.message) == ["page 1"])
        #expect(try await f.store.run(running.runId)?.status == .running)
        #expect(try await f.store.deliveries(DeliveryQuery(environment: "dev")).map(\.status) == [.pending, .pending])
        let open = try await f.store.claimProviderWebhook(leaseSeconds: 60, maxAttempts: 3)
        #expect(open?.task.type == "b", "the open task is still there")

        // Once their deliveries are done, the older one goes; the latest run stays for good.
        for delivery in try await f.store.deliveries(DeliveryQuery(environment: "dev")) {
            try await f.store.recordDeliveryAttempt(delivery.id, .delivered(statusCode: 200))
        }
        #expect(try await prune(f.store, allPast()) == 1 + 1 + 2, "run 3's log line, run 3, two deliveries")
        #expect(try await f.store.runs(of: baseVariant, limit: 100).map(\.id) == [open?.started.runId, finished[3].id], "the running webhook execution stays too")
        #expect(try await f.store.variantState(baseVariant)?.lastSyncDate == finished[3].startedAt, "the variant is untouched")
    }

    /// A run with many log lines never makes one big transaction: its lines go `limit` at a time first.
    @Test(arguments: StoreKind.available) func aRunsLogLinesGoInBatchesBeforeTheRun(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        let chatty = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: false))
        for line in 0..<7 { try await f.store.appendLog(chatty.lease, level: .info, message: "line \(line)") }
        let old = try await f.store.completeRun(chatty.lease, RunCompletion(outcome: .succeeded))
        let latest = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: false))
        _ = try await f.store.completeRun(latest.lease, RunCompletion(outcome: .succeeded))
        var rounds: [Int] = []
        while true {
            let removed = try await f.store.pruneHistory(allPast(), limit: 3)
            if removed == 0 { break }
            rounds.append(removed)
        }
        #expect(rounds == [3, 3, 1, 1], "7 log lines in batches of 3, then the run")
        #expect(try await f.store.run(old.id) == nil)
        #expect(try await f.store.run(latest.runId) != nil)
    }

    @Test func cutoffsFollowTheRetentionDays() {
        let now = Timestamp(microseconds: 100 * 86_400_000_000)
        let cutoffs = HistoryCutoffs(RetentionConfig(runsDays: 30, webhookDeliveriesDays: 7, webhookTasksDays: 0), now: now)
        #expect(cutoffs.runs.microseconds == 70 * 86_400_000_000)
        #expect(cutoffs.deliveries.microseconds == 93 * 86_400_000_000)
        #expect(cutoffs.webhookTasks.microseconds == 99 * 86_400_000_000, "never less than a day")
    }
}
