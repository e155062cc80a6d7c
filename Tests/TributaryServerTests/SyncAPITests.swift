import Foundation
import Testing
import TributaryCore
import TributaryServer
import TributaryStore
import TributaryTestSupport

let shopConnection = ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "c1")
func variant(_ sync: String, _ name: String = "base") -> VariantRef { VariantRef(connection: shopConnection, syncName: sync, variant: name) }

@Suite("API: variants, trigger, pause/start, status, frequency")
struct SyncAPITests {
    @Test func createAndDeleteVariants() async throws {
        let f = try await ServerFixture()
        try await f.withRouter { api in
            try await api.connect("c1")
            let target: JSONValue = ["provider_config_key": "shop", "connection_id": "c1"]
            let created = try await api.send(.post, "/sync/items/variant/store-eu", body: target)
            #expect(created.status == .ok)
            #expect(created.json["name"] == "items")
            #expect(created.json["variant"] == "store-eu")
            #expect(created.json["id"]?.stringValue?.count == 36)
            for name in ["base", "BASE", "Base"] {
                let reserved = try await api.send(.post, "/sync/items/variant/\(name)", body: target)
                #expect(reserved.status == .badRequest)
                #expect(reserved.errorCode == "invalid_variant")
            }
            #expect(try await api.send(.post, "/sync/items/variant/has%20space", body: target).errorCode == "invalid_uri_params")
            let duplicate = try await api.send(.post, "/sync/items/variant/store-eu", body: target)
            #expect(duplicate.status == .conflict)
            #expect(duplicate.errorCode == "sync_variant_already_exists")
            // The cap (3 in this configuration) counts base.
            #expect(try await api.send(.post, "/sync/items/variant/store-us", body: target).status == .ok)
            let capped = try await api.send(.post, "/sync/items/variant/store-asia", body: target)
            #expect(capped.status == .badRequest)
            #expect(capped.errorCode == "resource_capped")
            #expect(try await api.send(.post, "/sync/slow/variant/store-asia", body: target).status == .ok, "the cap is per sync")
            #expect(try await api.send(.post, "/sync/nope/variant/v", body: target).errorCode == "unknown_sync")
            #expect(try await api.send(.post, "/sync/items/variant/v", body: ["provider_config_key": "shop", "connection_id": "zz"]).errorCode == "unknown_connection")
            #expect(try await api.send(.post, "/sync/items/variant/v", body: ["provider_config_key": "shop"]).errorCode == "invalid_body")
            #expect(try await api.send(.post, "/sync/items/variant/v?x=1", body: target).errorCode == "invalid_query_params")

            // Records of the variant go with it; base keeps its own.
            _ = try await api.send(.post, "/sync/trigger", body: ["provider_config_key": "shop", "connection_id": "c1", "syncs": ["items", "items::store-eu"]])
            _ = try await f.waitForRuns(variant("items"))
            _ = try await f.waitForRuns(variant("items", "store-eu"))
            let deleted = try await api.send(.delete, "/sync/items/variant/store-eu", body: target)
            #expect(deleted.json == ["success": true])
            #expect(try await f.store.variantState(variant("items", "store-eu")) == nil)
            #expect(try await f.store.recordCounts(of: variant("items", "store-eu")) == [:])
            #expect(try await f.store.recordCounts(of: variant("items")) == ["Item": 3])
            #expect(try await api.send(.delete, "/sync/items/variant/store-eu", body: target).status == .notFound)
            #expect(try await api.send(.delete, "/sync/items/variant/base", body: target).errorCode == "invalid_variant")
        }
    }

    @Test func triggerAcceptsEverySyncsFormAndRunsEachVariant() async throws {
        let f = try await ServerFixture()
        try await f.withRouter { api in
            try await api.connect("c1")
            for name in ["v1", "v2"] {
                _ = try await api.send(.post, "/sync/items/variant/\(name)", body: ["provider_config_key": "shop", "connection_id": "c1"])
            }
            try await f.store.setMetadata(["v1.count": 5, "v2.count": 1], of: [shopConnection])
            let response = try await api.send(
                .post, "/sync/trigger", body: ["provider_config_key": "shop", "connection_id": "c1", "syncs": ["items", "items::v1", ["name": "items", "variant": "v2"]]])
            #expect(response.json == ["success": true])
            for (name, count) in [("base", 3), ("v1", 5), ("v2", 1)] {
                let run = try await f.waitForRuns(variant("items", name))
                #expect(run.status == .succeeded)
                #expect(try await f.store.recordCounts(of: variant("items", name)) == ["Item": count])
            }
            // Headers work too, and an empty list means every variant of the connection.
            let byHeaders = try await api.send(.post, "/sync/trigger", body: ["syncs": []], headers: ["Provider-Config-Key": "shop", "Connection-Id": "c1"])
            #expect(byHeaders.status == .ok)
            f.gate.release()
            _ = try await f.waitForRuns(variant("slow"))
            _ = try await f.waitForRuns(variant("items", "v2"), count: 2)
        }
    }

    @Test func badTriggersChangeNothing() async throws {
        let f = try await ServerFixture()
        try await f.withRouter { api in
            try await api.connect("c1")
            let cases: [(JSONValue, String)] = [
                (["provider_config_key": "shop", "connection_id": "c1", "syncs": ["nope"]], "unknown_sync"),
                (["provider_config_key": "shop", "connection_id": "c1", "syncs": ["items::missing"]], "unknown_sync_variant"),
                (["provider_config_key": "shop", "connection_id": "zz", "syncs": ["items"]], "unknown_connection"),
                (["connection_id": "c1", "syncs": ["items"]], "missing_provider_config_key"),
                (["provider_config_key": "shop", "connection_id": "c1", "syncs": [1]], "invalid_body"),
                (["provider_config_key": "shop", "connection_id": "c1", "syncs": "items"], "invalid_body"),
                (["provider_config_key": "shop", "connection_id": "c1", "syncs": ["items"], "opts": ["emptyCache": true]], "invalid_body"),
                (["provider_config_key": "shop", "connection_id": "c1", "syncs": ["items"], "opts": ["reset": true], "sync_mode": "incremental"], "invalid_body"),
                (["provider_config_key": "shop", "connection_id": "c1", "syncs": ["items"], "opts": ["bogus": true]], "invalid_body"),
                (["provider_config_key": "shop", "connection_id": "c1", "syncs": ["items"], "sync_mode": "sometimes"], "invalid_body"),
            ]
            for (body, code) in cases {
                let response = try await api.send(.post, "/sync/trigger", body: body)
                #expect(response.errorCode == code, "\(body)")
                #expect(response.status.code >= 400 && response.status.code < 500)
            }
            #expect(try await f.store.runs(of: variant("items"), limit: 5).isEmpty)
        }
    }

    @Test func triggeringARunningVariantAnswers409AndResetRestartsIt() async throws {
        let f = try await ServerFixture()
        try await f.withRouter { api in
            try await api.connect("c1")
            let body: JSONValue = ["provider_config_key": "shop", "connection_id": "c1", "syncs": ["slow"]]
            #expect(try await api.send(.post, "/sync/trigger", body: body).status == .ok)
            try await eventually("the slow run to start") { f.gate.entries >= 1 }
            let again = try await api.send(.post, "/sync/trigger", body: body)
            #expect(again.status == .conflict)
            #expect(again.errorCode == "sync_running")
            #expect(again.json["error"]?["message"]?.stringValue?.contains("already running") == true)
            let status = try await api.send(.get, "/sync/status?syncs=slow&provider_config_key=shop&connection_id=c1")
            #expect(status.json["syncs"]?[0]?["status"] == "RUNNING")
            // A batch with one running variant starts none of the others.
            let batch = try await api.send(
                .post, "/sync/trigger", body: ["provider_config_key": "shop", "connection_id": "c1", "syncs": ["items", "slow"]])
            #expect(batch.status == .conflict)
            #expect(try await f.store.runs(of: variant("items"), limit: 5).isEmpty, "all or nothing")

            // Reset: the running run is cancelled and a new one starts.
            let running = try #require(try await f.store.activeRun(of: variant("slow")))
            let lease = RunLease(runId: running.id, token: Int64(running.attempts))
            try await f.store.saveCheckpoint(["page": 9], for: lease)
            var reset = body
            if case .object(var object) = reset { object["opts"] = ["reset": true]; reset = .object(object) }
            #expect(try await api.send(.post, "/sync/trigger", body: reset).status == .ok)
            try await eventually("the restarted run to start") { f.gate.entries >= 2 }
            #expect(try await f.store.variantState(variant("slow"))?.checkpoint == nil, "reset clears the checkpoint")
            f.gate.release()
            let finished = try await f.waitForRuns(variant("slow"), count: 2)
            #expect(finished.status == .succeeded)
            let runs = try await f.store.runs(of: variant("slow"), limit: 5)
            #expect(runs.map(\.status) == [.succeeded, .cancelled])
            #expect(runs[1].error == "Cancelled: the variant was reset.")
            // The reset run's lease is gone: a late write of it is refused and changes nothing.
            let late = await #expect(throws: TributaryError.self) { try await f.store.saveCheckpoint(["page": 10], for: lease) }
            #expect(late?.code == .runNotRunning)
            #expect(try await f.store.variantState(variant("slow"))?.checkpoint == nil)
        }
    }

    @Test func resetWithEmptyCacheEmptiesOnlyThatVariant() async throws {
        let f = try await ServerFixture()
        try await f.withRouter { api in
            try await api.connect("c1")
            _ = try await api.send(.post, "/sync/items/variant/eu", body: ["provider_config_key": "shop", "connection_id": "c1"])
            _ = try await api.send(.post, "/sync/trigger", body: ["provider_config_key": "shop", "connection_id": "c1", "syncs": ["items", "items::eu"]])
            let first = try await f.waitForRuns(variant("items", "eu"))
            _ = try await f.waitForRuns(variant("items"))
            try await f.store.setMetadata(["eu.count": 1], of: [shopConnection])
            _ = try await api.send(
                .post, "/sync/trigger",
                body: ["provider_config_key": "shop", "connection_id": "c1", "syncs": ["items::eu"], "opts": ["reset": true, "emptyCache": true]])
            let second = try await f.waitForRuns(variant("items", "eu"), count: 2)
            #expect(second.id != first.id)
            #expect(second.kind == .initial, "reset cleared lastSyncDate")
            #expect(second.results["Item"] == ModelResult(added: 1), "the cache was emptied, so the record is new again")
            #expect(try await f.store.recordCounts(of: variant("items", "eu")) == ["Item": 1])
            #expect(try await f.store.recordCounts(of: variant("items")) == ["Item": 3], "base untouched")
        }
    }

    @Test func pauseStartAndStatus() async throws {
        let f = try await ServerFixture()
        try await f.withRouter { api in
            try await api.connect("c1")
            try await api.send(.post, "/connections", body: ["provider_config_key": "keyed", "connection_id": "k1", "credentials": ["type": "API_KEY", "api_key": "k"]])
            _ = try await api.send(.post, "/sync/items/variant/eu", body: ["provider_config_key": "shop", "connection_id": "c1"])
            _ = try await api.send(.post, "/sync/trigger", body: ["provider_config_key": "shop", "connection_id": "c1", "syncs": ["items::eu"]])
            _ = try await f.waitForRuns(variant("items", "eu"))
            let status = try await api.send(.get, "/sync/status?syncs=items,items::eu&provider_config_key=shop&connection_id=c1")
            let entries = try #require(status.json["syncs"]?.arrayValue)
            #expect(entries.count == 2)
            let base = try #require(entries.first { $0["variant"] == "base" })
            let eu = try #require(entries.first { $0["variant"] == "eu" })
            #expect(base["latestResult"] == .null)
            #expect(base["recordCount"] == ["Item": 0])
            #expect(eu["status"] == "SUCCESS")
            #expect(eu["type"] == "INITIAL")
            #expect(eu["latestResult"] == ["Item": ["added": 3, "updated": 0, "deleted": 0]])
            #expect(eu["latestExecutionStatus"] == "SUCCESS")
            #expect(eu["recordCount"] == ["Item": 3])
            #expect(eu["frequency"] == "every hour")
            #expect(eu["finishedAt"]?.stringValue != nil)
            #expect(eu["connection_id"] == "c1")
            #expect(eu["checkpoint"] == .null)

            #expect(try await api.send(.post, "/sync/pause", body: ["provider_config_key": "shop", "connection_id": "c1", "syncs": ["items::eu"]]).status == .ok)
            var all = try await api.send(.get, "/sync/status?syncs=*&provider_config_key=shop&connection_id=c1")
            #expect(all.json["syncs"]?.arrayValue?.count == 3)
            #expect(all.json["syncs"]?.arrayValue?.first { $0["variant"] == "eu" }?["status"] == "PAUSED")
            #expect(try await api.send(.post, "/sync/start", body: ["provider_config_key": "shop", "connection_id": "c1", "syncs": ["items::eu"]]).status == .ok)
            all = try await api.send(.get, "/sync/status?syncs=*&provider_config_key=shop&connection_id=c1")
            #expect(all.json["syncs"]?.arrayValue?.first { $0["variant"] == "eu" }?["status"] == "SUCCESS")
            // auto_start: false → new variants start paused.
            _ = try await api.send(.post, "/sync/contacts/variant/v1", body: ["provider_config_key": "keyed", "connection_id": "k1"])
            let keyed = try await api.send(.get, "/sync/status?syncs=contacts::v1&provider_config_key=keyed&connection_id=k1")
            #expect(keyed.json["syncs"]?[0]?["status"] == "PAUSED")
            // …and so does the base variant an import creates, as in Nango; importing again leaves a started one running.
            let importedBase = try await api.send(.get, "/sync/status?syncs=contacts&provider_config_key=keyed&connection_id=k1")
            #expect(importedBase.json["syncs"]?[0]?["status"] == "PAUSED", "\(importedBase.json)")
            #expect(try await api.send(.post, "/sync/start", body: ["provider_config_key": "keyed", "connection_id": "k1", "syncs": ["contacts"]]).status == .ok)
            _ = try await api.send(
                .post, "/connections", body: ["provider_config_key": "keyed", "connection_id": "k1", "credentials": ["type": "API_KEY", "apiKey": "k2"]])
            let again = try await api.send(.get, "/sync/status?syncs=contacts&provider_config_key=keyed&connection_id=k1")
            #expect(again.json["syncs"]?[0]?["status"] != "PAUSED", "\(again.json)")

            #expect(try await api.send(.get, "/sync/status?provider_config_key=shop").errorCode == "invalid_query_params")
            #expect(try await api.send(.get, "/sync/status?syncs=*&provider_config_key=shop&connection_id=zz").errorCode == "unknown_connection")
            #expect(try await api.send(.post, "/sync/pause", body: ["provider_config_key": "shop", "connection_id": "c1"]).errorCode == "invalid_body")
        }
    }

    @Test func pausingCancelsARunningRun() async throws {
        let f = try await ServerFixture()
        try await f.withRouter { api in
            try await api.connect("c1")
            _ = try await api.send(.post, "/sync/trigger", body: ["provider_config_key": "shop", "connection_id": "c1", "syncs": ["slow"]])
            try await eventually("the slow run to start") { f.gate.entries >= 1 }
            #expect(try await api.send(.post, "/sync/pause", body: ["provider_config_key": "shop", "connection_id": "c1", "syncs": ["slow"]]).status == .ok)
            let run = try await f.waitForRuns(variant("slow"))
            #expect(run.status == .cancelled)
        }
    }

    @Test func frequencyOverridesPerVariant() async throws {
        let f = try await ServerFixture()
        try await f.withRouter { api in
            try await api.connect("c1")
            _ = try await api.send(.post, "/sync/items/variant/eu", body: ["provider_config_key": "shop", "connection_id": "c1"])
            func update(_ frequency: JSONValue, variant: String = "eu") async throws -> APIResponse {
                try await api.send(
                    .put, "/sync/update-connection-frequency",
                    body: ["sync_name": "items", "sync_variant": .string(variant), "provider_config_key": "shop", "connection_id": "c1", "frequency": frequency])
            }
            #expect(try await update("every 5 minutes").json == ["frequency": "every 5 minutes"], "as written, as Nango answers")
            #expect(try await f.store.variantState(variant("items", "eu"))?.frequencyOverride == "every 5 minutes")
            #expect(try await f.store.variantState(variant("items"))?.frequencyOverride == nil, "only that variant")
            let status = try await api.send(.get, "/sync/status?syncs=items::eu&provider_config_key=shop&connection_id=c1")
            #expect(status.json["syncs"]?[0]?["frequency"] == "every 5 minutes")
            #expect(try await update(.null).json == ["frequency": "every hour"], "the configured frequency, after a reset to it")
            #expect(try await f.store.variantState(variant("items", "eu"))?.frequencyOverride == nil)
            #expect(try await update("every 10 seconds").errorCode == "sync_interval_too_short")
            #expect(try await update("sometimes").errorCode == "invalid_body")
            #expect(try await update(5).errorCode == "invalid_body")
            #expect(try await update("1h", variant: "nope").errorCode == "unknown_sync_variant")
        }
    }
}

@Suite("API: schedules")
struct ScheduleAPITests {
    @Test func statusShowsTheNextRunAndFrequencyChangesReplanIt() async throws {
        let f = try await ServerFixture()
        try await f.withRouter { api in
            try await api.connect("c1")
            let path = "/sync/status?syncs=items&provider_config_key=shop&connection_id=c1"
            let created = try await api.send(.get, path)
            let firstNext = try #require(created.json["syncs"]?[0]?["nextScheduledSyncAt"]?.stringValue)
            let state = try #require(try await f.store.variantState(variant("items")))
            #expect(Timestamp(iso8601: firstNext) == state.createdAt, "a new variant is due at once")

            _ = try await api.send(
                .put, "/sync/update-connection-frequency",
                body: ["sync_name": "items", "provider_config_key": "shop", "connection_id": "c1", "frequency": "every day"])
            let replanned = try await api.send(.get, path)
            let next = try #require(replanned.json["syncs"]?[0]?["nextScheduledSyncAt"]?.stringValue.flatMap(Timestamp.init(iso8601:)))
            #expect((next.microseconds - state.createdAt.microseconds) % 86_400_000_000 == 0, "on the daily grid of the variant")
            #expect(next > Timestamp(microseconds: Timestamp.now().microseconds - 1_000_000))

            // A cron schedule with a zone, as one string: the next run is its next 02:00 in Paris.
            let cron = try await api.send(
                .put, "/sync/update-connection-frequency",
                body: ["sync_name": "items", "provider_config_key": "shop", "connection_id": "c1", "frequency": "cron 0 2 * * * Europe/Paris"])
            #expect(cron.status == .ok)
            #expect(cron.json["frequency"] == "cron 0 2 * * * Europe/Paris")
            let cronStatus = try await api.send(.get, path)
            #expect(cronStatus.json["syncs"]?[0]?["frequency"] == "cron 0 2 * * * Europe/Paris")
            let cronNext = try #require(cronStatus.json["syncs"]?[0]?["nextScheduledSyncAt"]?.stringValue.flatMap(Timestamp.init(iso8601:)))
            let paris = try #require(TimeZone(identifier: "Europe/Paris"))
            let wall = Calendar(identifier: .gregorian).dateComponents(in: paris, from: Date(timeIntervalSince1970: cronNext.secondsSince1970))
            #expect(wall.hour == 2 && wall.minute == 0 && wall.second == 0, "\(cronNext)")
            #expect(cronNext > Timestamp.now() && cronNext.microseconds < Timestamp.now().microseconds + 86_400_000_000 + 3_600_000_000)
            let badCron = try await api.send(
                .put, "/sync/update-connection-frequency",
                body: ["sync_name": "items", "provider_config_key": "shop", "connection_id": "c1", "frequency": "cron 0 25 * * *"])
            #expect(badCron.status == .badRequest)
            #expect(badCron.json["error"]?["message"]?.stringValue?.contains("hour") == true)

            _ = try await api.send(.post, "/sync/pause", body: ["provider_config_key": "shop", "connection_id": "c1", "syncs": ["items"]])
            let paused = try await api.send(.get, path)
            #expect(paused.json["syncs"]?[0]?["nextScheduledSyncAt"] == .null)
            #expect(paused.json["syncs"]?[0]?["status"] == "PAUSED")
        }
    }
}

@Suite("API: run history")
struct RunHistoryAPITests {
    @Test func runsAndTheirLogsPerVariant() async throws {
        let f = try await ServerFixture()
        try await f.withRouter { api in
            try await api.connect("c1")
            _ = try await api.send(.post, "/sync/items/variant/eu", body: ["provider_config_key": "shop", "connection_id": "c1"])
            for expected in 1...2 {
                _ = try await api.send(.post, "/sync/trigger", body: ["provider_config_key": "shop", "connection_id": "c1", "syncs": ["items::eu"]])
                _ = try await f.waitForRuns(variant("items", "eu"), count: expected)
            }
            let list = try await api.send(.get, "/sync/runs?provider_config_key=shop&connection_id=c1&sync=items&variant=eu")
            let runs = try #require(list.json["runs"]?.arrayValue)
            #expect(runs.count == 2)
            #expect(runs[0]["type"] == "INCREMENTAL")
            #expect(runs[1]["type"] == "INITIAL")
            #expect(runs[1]["results"] == ["Item": ["added": 3, "updated": 0, "deleted": 0]])
            #expect(runs.allSatisfy { $0["status"] == "succeeded" && $0["variant"] == "eu" })
            let baseRuns = try await api.send(.get, "/sync/runs?provider_config_key=shop&connection_id=c1&sync=items")
            #expect(baseRuns.json["runs"]?.arrayValue?.isEmpty == true, "runs are per variant")

            // A run's log lines, written while it holds its lease.
            let logged = try await f.store.startRun(VariantRef(connection: ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "c1"), syncName: "items", variant: "eu"), RunStart(tracksDeletes: false))
            try await f.store.appendLog(logged.lease, level: .warn, message: "page 2 was slow")
            _ = try await f.store.completeRun(logged.lease, RunCompletion(outcome: .succeeded))
            let id = logged.runId
            let one = try await api.send(.get, "/sync/runs/\(id)")
            #expect(one.json["id"]?.int64Value == id)
            #expect(one.json["logs"]?.arrayValue?.contains { $0["message"] == "page 2 was slow" && $0["level"] == "warn" } == true)
            #expect(try await api.send(.get, "/sync/runs/\(id)", key: prodKey).status == .notFound, "another environment's run")
            #expect(try await api.send(.get, "/sync/runs/999999").errorCode == "unknown_run")
            #expect(try await api.send(.get, "/sync/runs/abc").errorCode == "unknown_run")
            #expect(try await api.send(.get, "/sync/runs?provider_config_key=shop&connection_id=c1&sync=items&variant=nope").errorCode == "unknown_sync_variant")
            #expect(try await api.send(.get, "/sync/runs?provider_config_key=shop&connection_id=c1").errorCode == "invalid_query_params")
            #expect(try await api.send(.get, "/sync/runs?provider_config_key=shop&connection_id=c1&sync=items&limit=0").errorCode == "invalid_query_params")
        }
    }
}
