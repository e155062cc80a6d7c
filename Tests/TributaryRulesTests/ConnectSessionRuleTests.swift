import Testing
import TributaryCore
import TributaryStore

@Suite("Connect sessions (ConnectSessionRule)")
struct ConnectSessionRuleTests {
    func session(expires: Int64 = 1_000, used: Int64? = nil, oauthStarted: Int64? = nil, environment: String = "dev") -> ConnectSession {
        ConnectSession(
            tokenHash: "h", environment: environment, endUser: nil, tags: nil, allowedIntegrations: ["a"], integrationsConfigDefaults: [:],
            reconnect: nil, createdAt: Timestamp(microseconds: 0), expiresAt: Timestamp(microseconds: expires), usedAt: used.map(Timestamp.init(microseconds:)),
            oauth: oauthStarted.map { PendingOAuth(stateHash: "s", browserHash: "b", providerConfigKey: "a", sealedVerifier: [1], startedAt: Timestamp(microseconds: $0)) })
    }

    @Test func aSessionIsUsableUntilItExpiresOrMakesItsConnection() {
        #expect(ConnectSessionRule.verdict(session(), now: Timestamp(microseconds: 999)) == .usable)
        #expect(ConnectSessionRule.verdict(session(), now: Timestamp(microseconds: 1_000)) == .expired, "expiry is exclusive")
        #expect(ConnectSessionRule.verdict(session(used: 5), now: Timestamp(microseconds: 10)) == .used, "spent wins over time left")
        #expect(ConnectSessionRule.verdict(nil, now: Timestamp(microseconds: 0)) == .unknown)
        #expect(ConnectSessionRule.verdict(session(), environment: "prod", now: Timestamp(microseconds: 0)) == .unknown, "bound to its environment")
        #expect(ConnectSessionRule.error(for: .usable) == nil)
        #expect(ConnectSessionRule.error(for: .used)?.code == .connectSessionUsed)
        #expect(ConnectSessionRule.error(for: .expired)?.code == .connectSessionExpired)
    }

    @Test func anOAuthCallbackIsAcceptedForFifteenMinutesAfterTheRedirect() {
        let minute: Int64 = 60_000_000
        #expect(!ConnectSessionRule.acceptsCallback(session(expires: 100 * minute), now: Timestamp(microseconds: 1)), "no authorization under way")
        let started = session(expires: 100 * minute, oauthStarted: 10 * minute)
        #expect(ConnectSessionRule.acceptsCallback(started, now: Timestamp(microseconds: 25 * minute)))
        #expect(!ConnectSessionRule.acceptsCallback(started, now: Timestamp(microseconds: 25 * minute + 1)))
    }

    @Test func aSessionAllowsWhatItNamesAndAReconnectOnlyItsConnectionsIntegration() {
        var open = session()
        open.allowedIntegrations = nil
        #expect(open.allows("anything"))
        #expect(session().allows("a") && !session().allows("b"))
        var reconnect = session()
        reconnect.allowedIntegrations = nil
        reconnect.reconnect = ConnectionRef(environment: "dev", providerConfigKey: "b", connectionId: "c")
        #expect(reconnect.allows("b") && !reconnect.allows("a"))
        var defaults = session()
        defaults.integrationsConfigDefaults = ["a": ["connection_config": ["region": "eu"]], "b": "junk"]
        #expect(defaults.connectionConfig(for: "a") == ["region": "eu"] && defaults.connectionConfig(for: "b") == [:])
    }
}
