import Foundation
import Testing
import TributaryCore
import TributaryStore
import TributaryTestSupport

/// Connect sessions in the store: looked up by hashes only, spent once in the transaction that saves
/// the connection and queues its webhooks — on SQLite and PostgreSQL.
@Suite("Connect sessions in the store (SQLite and PostgreSQL)")
struct ConnectSessionStoreTests {
    func session(_ hash: String, now: Timestamp, reconnect: ConnectionRef? = nil) -> ConnectSession {
        ConnectSession(
            tokenHash: hash, environment: "dev", endUser: ["id": "u-1", "organization": ["id": "o-1"]], tags: ["end_user_id": "u-1"],
            allowedIntegrations: ["shop"], integrationsConfigDefaults: ["shop": ["connection_config": ["region": "eu"]]], reconnect: reconnect,
            createdAt: now, expiresAt: Timestamp(microseconds: now.microseconds + 1_800_000_000))
    }

    func completion(_ ref: ConnectionRef, credentialsOnly: Bool = false, sealed: [UInt8] = [1, 2, 3]) -> ConnectCompletion {
        var connection = ConnectionImport(
            ref: ref, metadata: [:], connectionConfig: ["region": "eu"], credentialsType: "API_KEY", sealedCredentials: sealed, endUser: ["id": "u-1"],
            tags: ["end_user_id": "u-1"])
        connection.pausedSyncs = ["notes"]
        return ConnectCompletion(
            connection: connection, baseVariantsOf: ["orders", "notes"], credentialsOnly: credentialsOnly,
            webhooks: [OutboxMessage(url: "http://app.test/hooks", body: Array(#"{"type":"auth"}"#.utf8), model: "", success: true)])
    }

    @Test(arguments: StoreKind.available) func aSessionIsSpentOnceWithItsConnectionAndWebhookInOneTransaction(_ kind: StoreKind) async throws {
        let clock = TestClock()
        let f = try await StoreFixture(kind, clock: { clock.now })
        try await f.store.createConnectSession(session("token-hash-1", now: clock.now))
        let stored = try #require(try await f.store.connectSession(tokenHash: "token-hash-1"))
        #expect(stored.endUser?["organization"]?["id"] == "o-1" && stored.allowedIntegrations == ["shop"] && stored.usedAt == nil)
        #expect(stored.connectionConfig(for: "shop") == ["region": "eu"])
        #expect(try await f.store.connectSession(tokenHash: "other") == nil)

        // An OAuth authorization under way is found by its state's hash, with its sealed verifier.
        let oauth = PendingOAuth(stateHash: "state-hash-1", browserHash: "browser-1", providerConfigKey: "shop", sealedVerifier: [9, 9], startedAt: clock.now)
        #expect(try await f.store.beginConnectOAuth(tokenHash: "token-hash-1", oauth))
        #expect(try await f.store.connectSession(tokenHash: "token-hash-1")?.oauth == oauth)
        #expect(try await f.store.connectSession(oauthStateHash: "state-hash-1")?.tokenHash == "token-hash-1")
        // Another browser claims nothing; the starting one claims it once (a replay finds nothing).
        #expect(try await f.store.claimConnectOAuth(stateHash: "state-hash-1", browserHash: "browser-2") == nil)
        #expect(try await f.store.claimConnectOAuth(stateHash: "state-hash-1", browserHash: "browser-1")?.oauth == oauth)
        #expect(try await f.store.claimConnectOAuth(stateHash: "state-hash-1", browserHash: "browser-1") == nil)
        #expect(try await f.store.connectSession(tokenHash: "token-hash-1")?.oauth == nil, "the session stays, without the authorization")

        // Completing it saves the connection, its base variants (one paused) and the webhook.
        let ref = ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "new-1")
        let (record, created) = try await f.store.completeConnectSession(tokenHash: "token-hash-1", completion(ref))
        #expect(created && record.connectionConfig == ["region": "eu"] && record.endUser == ["id": "u-1"] && record.sealedCredentials == [1, 2, 3])
        let variants = try await f.store.variants(of: ref)
        #expect(variants.map(\.ref.syncName).sorted() == ["notes", "orders"])
        #expect(variants.first { $0.ref.syncName == "notes" }?.paused == true && variants.first { $0.ref.syncName == "orders" }?.paused == false)
        let deliveries = try await f.store.deliveries(DeliveryQuery(environment: "dev"))
        #expect(deliveries.count == 1 && deliveries[0].connectionId == "new-1" && deliveries[0].runId == nil && deliveries[0].status == .pending)
        let spent = try #require(try await f.store.connectSession(tokenHash: "token-hash-1"))
        #expect(spent.usedAt != nil && spent.oauth == nil, "spent")

        // A second completion (a double submit, a replayed callback) changes nothing.
        let again = ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "new-2")
        await #expect(throws: TributaryError(.connectSessionUsed, "This Connect session was already used to connect an account: ask the app for a new link.")) {
            try await f.store.completeConnectSession(tokenHash: "token-hash-1", completion(again))
        }
        #expect(try await f.store.connection(again) == nil)
        #expect(try await f.store.deliveries(DeliveryQuery(environment: "dev")).count == 1)
        #expect(try await !f.store.beginConnectOAuth(tokenHash: "token-hash-1", oauth), "a spent session starts nothing")
    }

    @Test(arguments: StoreKind.available) func expiredSessionsConnectNothingAndAreRemovedADayLater(_ kind: StoreKind) async throws {
        let clock = TestClock()
        let f = try await StoreFixture(kind, clock: { clock.now })
        try await f.store.createConnectSession(session("old", now: clock.now))
        clock.advance(seconds: 1800)
        let ref = ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "late")
        await #expect(throws: TributaryError.self) { try await f.store.completeConnectSession(tokenHash: "old", completion(ref)) }
        #expect(try await f.store.connection(ref) == nil)
        #expect(try await f.store.deliveries(DeliveryQuery(environment: "dev")).isEmpty)
        let oauth = PendingOAuth(stateHash: "s", browserHash: "b", providerConfigKey: "shop", sealedVerifier: [1], startedAt: clock.now)
        #expect(try await !f.store.beginConnectOAuth(tokenHash: "old", oauth))
        #expect(try await f.store.connectSession(tokenHash: "old") != nil, "kept a while, so a late visitor is told it expired")
        clock.advance(seconds: 24 * 3600 + 1)
        try await f.store.createConnectSession(session("new", now: clock.now))
        #expect(try await f.store.connectSession(tokenHash: "old") == nil)
        #expect(try await f.store.deleteConnectSession(tokenHash: "new", environment: "prod") == false, "bound to its environment")
        #expect(try await f.store.deleteConnectSession(tokenHash: "new", environment: "dev"))
        #expect(try await f.store.connectSession(tokenHash: "new") == nil)
    }

    @Test(arguments: StoreKind.available) func aReconnectReplacesOnlyTheCredentials(_ kind: StoreKind) async throws {
        let clock = TestClock()
        let f = try await StoreFixture(kind, clock: { clock.now })
        let ref = ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "existing")
        _ = try await f.store.importConnection(
            ConnectionImport(ref: ref, metadata: ["kept": true], connectionConfig: ["c": 1], credentialsType: "API_KEY", sealedCredentials: [7]), baseVariantsOf: ["orders"])
        try await f.store.createConnectSession(session("re", now: clock.now, reconnect: ref))
        #expect(try await f.store.connectSession(tokenHash: "re")?.reconnect == ref)
        let (record, created) = try await f.store.completeConnectSession(tokenHash: "re", completion(ref, credentialsOnly: true, sealed: [8, 8]))
        #expect(!created && record.sealedCredentials == [8, 8] && record.metadata == ["kept": true] && record.connectionConfig == ["c": 1])
        #expect(record.endUser == ["id": "u-1"], "the end user the reconnect gives")
        #expect(try await f.store.variants(of: ref).map(\.ref.syncName) == ["orders"], "no variants added")

        // A reconnect of a connection deleted meanwhile fails whole: the session stays usable.
        try await f.store.createConnectSession(session("re-2", now: clock.now, reconnect: ref))
        try await f.store.deleteConnection(ref)
        await #expect(throws: TributaryError.self) { try await f.store.completeConnectSession(tokenHash: "re-2", completion(ref, credentialsOnly: true)) }
        #expect(try await f.store.connectSession(tokenHash: "re-2")?.usedAt == nil)
        #expect(try await f.store.deliveries(DeliveryQuery(environment: "dev")).count == 1, "only the first reconnect's webhook")
    }

    @Test(arguments: StoreKind.available) func onEventRunsOutliveTheirConnectionUntilRetention(_ kind: StoreKind) async throws {
        let clock = TestClock()
        let f = try await StoreFixture(kind, clock: { clock.now })
        let ref = ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "gone")
        _ = try await f.store.ensureConnection(ref)
        func run(_ id: String, _ event: ConnectionEvent, failure: String? = nil, at: Int64) -> ConnectionEventRun {
            ConnectionEventRun(
                id: id, connection: ref, event: event, function: "fn-\(id)", failure: failure,
                logs: [.init(at: Timestamp(microseconds: at), level: .warn, message: "line of \(id) \u{1F600}")], startedAt: Timestamp(microseconds: at - 5),
                finishedAt: Timestamp(microseconds: at))
        }
        let now = clock.now.microseconds
        try await f.store.recordConnectionEventRun(run("a", .validateConnection, failure: "no", at: now - 100))
        try await f.store.recordConnectionEventRun(run("b", .postConnectionCreation, at: now - 50))
        try await f.store.deleteConnection(ref)
        try await f.store.recordConnectionEventRun(run("c", .preConnectionDeletion, at: now))
        let all = try await f.store.connectionEventRuns(environment: "dev", providerConfigKey: nil, connectionId: nil, limit: 10)
        #expect(all.map(\.id) == ["c", "b", "a"] && all[2].failure == "no" && all[0].succeeded)
        #expect(all[1].logs == [.init(at: Timestamp(microseconds: now - 50), level: .warn, message: "line of b \u{1F600}")])
        #expect(try await f.store.connectionEventRuns(environment: "dev", providerConfigKey: "shop", connectionId: "gone", limit: 2).map(\.id) == ["c", "b"])
        #expect(try await f.store.connectionEventRuns(environment: "dev", providerConfigKey: "other", connectionId: nil, limit: 10).isEmpty)
        #expect(try await f.store.connectionEventRuns(environment: "prod", providerConfigKey: nil, connectionId: nil, limit: 10).isEmpty)
        // The history cleanup removes them by the runs' cutoff.
        _ = try await f.store.pruneHistory(
            HistoryCutoffs(runs: Timestamp(microseconds: now - 10), deliveries: clock.now, webhookTasks: clock.now), limit: 100)
        #expect(try await f.store.connectionEventRuns(environment: "dev", providerConfigKey: nil, connectionId: nil, limit: 10).map(\.id) == ["c"])
    }

    @Test(arguments: StoreKind.available) func aRefusedRefreshIsReportedOncePerVersionOfTheCredentials(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        let ref = ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "c-1")
        let hook = [OutboxMessage(url: "http://app.test/hooks", body: Array(#"{"type":"auth"}"#.utf8), model: "", success: false)]
        let v1 = CredentialCipher.fingerprint([1, 1]), v2 = CredentialCipher.fingerprint([2, 2])
        #expect(try await !f.store.reportRefusedRefresh(of: ref, fingerprint: v1, webhooks: hook), "no such connection")
        _ = try await f.store.ensureConnection(ref)
        try await f.store.updateCredentials([1, 1], type: "OAUTH2", of: ref)
        #expect(try await !f.store.reportRefusedRefresh(of: ref, fingerprint: v1, webhooks: []), "nothing to send: nothing marked")
        #expect(try await f.store.reportRefusedRefresh(of: ref, fingerprint: v1, webhooks: hook))
        #expect(try await !f.store.reportRefusedRefresh(of: ref, fingerprint: v1, webhooks: hook))
        #expect(try await f.store.deliveries(DeliveryQuery(environment: "dev")).count == 1)
        // Replaced meanwhile (a reconnect): a late report about the old credentials says nothing.
        try await f.store.updateCredentials([2, 2], type: "OAUTH2", of: ref)
        #expect(try await !f.store.reportRefusedRefresh(of: ref, fingerprint: CredentialCipher.fingerprint([9]), webhooks: hook))
        // The new credentials, refused in turn: told again.
        #expect(try await f.store.reportRefusedRefresh(of: ref, fingerprint: v2, webhooks: hook))
        #expect(try await f.store.deliveries(DeliveryQuery(environment: "dev")).map(\.success) == [false, false])
    }
}
