import Foundation
import Testing
import TributaryCore
import TributaryServer
import TributaryStore

/// The main flow over real HTTP on a loopback port.
@Suite("API over loopback")
struct LiveAPITests {
    @Test func connectionToVariantsToRecords() async throws {
        let f = try await ServerFixture()
        try await f.withLiveServer { api in
            let created = try await api.connect("acme")
            #expect(created.status == .created)
            let status = try await api.send(.get, "/sync/status?syncs=*&provider_config_key=shop&connection_id=acme")
            #expect(status.json["syncs"]?.arrayValue?.compactMap { $0["variant"]?.stringValue } == ["base", "base"], "base variant of each sync")

            let stores = ["store-eu", "store-us"]
            for store in stores {
                let response = try await api.send(.post, "/sync/items/variant/\(store)", body: ["provider_config_key": "shop", "connection_id": "acme"])
                #expect(response.status == .ok)
            }
            _ = try await api.send(
                .post, "/connections/metadata",
                body: ["connection_id": "acme", "provider_config_key": "shop", "metadata": ["store-eu.count": 7, "store-eu.label": "eu", "store-us.count": 4, "store-us.label": "us"]])
            _ = try await api.send(
                .post, "/sync/trigger", body: ["provider_config_key": "shop", "connection_id": "acme", "syncs": ["items", "items::store-eu", ["name": "items", "variant": "store-us"]]])
            let acme = ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "acme")
            for name in ["base", "store-eu", "store-us"] {
                #expect(try await f.waitForRuns(VariantRef(connection: acme, syncName: "items", variant: name)).status == .succeeded)
            }
            let base = try await api.allRecords(connection: "acme", model: "Item", pageSize: 2)
            let eu = try await api.allRecords(connection: "acme", model: "Item", variant: "store-eu", pageSize: 3)
            let us = try await api.allRecords(connection: "acme", model: "Item", variant: "store-us", pageSize: 3)
            #expect(base.count == 3)
            #expect(eu.count == 7)
            #expect(us.count == 4)
            #expect(eu.allSatisfy { $0["label"] == "eu" && $0["id"]?.stringValue?.hasPrefix("store-eu-") == true })
            #expect(us.allSatisfy { $0["label"] == "us" })
            let final = try await api.send(.get, "/sync/status?syncs=items::store-eu&provider_config_key=shop&connection_id=acme")
            #expect(final.json["syncs"]?[0]?["recordCount"] == ["Item": 7])
        }
    }
}
