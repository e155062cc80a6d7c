import Testing
import TributaryCore
import TributaryStore
import TributaryTestSupport

/// Nango's end users and tags on both stores: stored at import (kept when a re-import leaves them
/// out), replaced by a patch, matched by every filter together, and paged in id order.
@Suite("Connections: end users, tags, filters and pages (SQLite and PostgreSQL)")
struct ConnectionStoreTests {
    @Test(arguments: StoreKind.available) func endUsersAndTagsAreStoredFilteredPatchedAndPaged(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        for index in 1...4 {
            _ = try await f.store.importConnection(
                ConnectionImport(
                    ref: ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "c\(index)"), metadata: [:], connectionConfig: [:],
                    credentialsType: "NONE", sealedCredentials: nil,
                    endUser: ["id": .string("u\(index % 2)"), "organization": ["id": .string("o\(index)")]],
                    tags: ["plan": .string(index < 3 ? "pro" : "free"), "k-1.x": "v"]),
                baseVariantsOf: [])
        }
        func ids(_ fields: [ConnectionFilter.FieldMatch], limit: Int? = nil, offset: Int = 0) async throws -> [String] {
            var filter = ConnectionFilter(environment: "dev")
            filter.fields = fields
            filter.limit = limit
            filter.offset = offset
            return try await f.store.connections(filter).map(\.ref.connectionId)
        }
        #expect(try await ids([.init(.endUser, path: "id", value: "u1")]) == ["c1", "c3"])
        #expect(try await ids([.init(.endUser, path: "organization.id", value: "o4")]) == ["c4"])
        #expect(try await ids([.init(.tags, key: "plan", value: "pro"), .init(.endUser, path: "id", value: "u0")]) == ["c2"])
        #expect(try await ids([.init(.tags, key: "k-1.x", value: "v")]) == ["c1", "c2", "c3", "c4"], "keys with '-' and '.' address one key")
        #expect(try await ids([.init(.tags, key: "plan", value: "none")]) == [])
        #expect(try await ids([], limit: 3) == ["c1", "c2", "c3"])
        #expect(try await ids([], limit: 3, offset: 3) == ["c4"])

        let ref = ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "c1")
        // A re-import without end user and tags keeps them.
        _ = try await f.store.importConnection(
            ConnectionImport(ref: ref, metadata: ["m": 1], connectionConfig: [:], credentialsType: "NONE", sealedCredentials: nil), baseVariantsOf: [])
        let kept = try #require(try await f.store.connection(ref))
        #expect(kept.endUser?["id"] == "u1" && kept.tags["plan"] == "pro" && kept.metadata["m"] == 1)
        let patched = try await f.store.patchConnection(ref, ConnectionPatch(tags: ["plan": "free"]))
        #expect(patched.tags == ["plan": "free"] && patched.endUser?["id"] == "u1", "a patch replaces what it sets, nothing else")
        #expect(try await ids([.init(.tags, key: "plan", value: "free")]) == ["c1", "c3", "c4"])
        // auto_start: false — the base variant an import creates starts paused; one that exists keeps its state.
        let fresh = ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "fresh")
        var paused = ConnectionImport(ref: fresh, metadata: [:], connectionConfig: [:], credentialsType: "NONE", sealedCredentials: nil)
        paused.pausedSyncs = ["orders"]
        _ = try await f.store.importConnection(paused, baseVariantsOf: ["orders", "invoices"])
        #expect(try await f.store.variantState(VariantRef(connection: fresh, syncName: "orders", variant: "base"))?.paused == true)
        #expect(try await f.store.variantState(VariantRef(connection: fresh, syncName: "invoices", variant: "base"))?.paused == false)
        try await f.store.setPaused(false, for: VariantRef(connection: fresh, syncName: "orders", variant: "base"))
        _ = try await f.store.importConnection(paused, baseVariantsOf: ["orders", "invoices"])
        #expect(try await f.store.variantState(VariantRef(connection: fresh, syncName: "orders", variant: "base"))?.paused == false, "started stays started")
        await #expect(throws: TributaryError.self) {
            _ = try await f.store.patchConnection(ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "nope"), ConnectionPatch(tags: [:]))
        }
    }
}
