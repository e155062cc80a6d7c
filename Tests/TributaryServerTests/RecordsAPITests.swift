import Foundation
import Testing
import TributaryCore
import TributaryServer
import TributaryStore

@Suite("API: GET /records")
struct RecordsAPITests {
    let headers = ["Connection-Id": "c1", "Provider-Config-Key": "shop"]

    func prepared(_ f: ServerFixture, _ api: APIClient) async throws {
        try await api.connect("c1")
        _ = try await api.send(.post, "/sync/items/variant/eu", body: ["provider_config_key": "shop", "connection_id": "c1"])
        try await f.store.setMetadata(["base.count": 5, "eu.count": 2, "eu.label": "europe"], of: [shopConnection])
        _ = try await api.send(.post, "/sync/trigger", body: ["provider_config_key": "shop", "connection_id": "c1", "syncs": ["items", "items::eu"]])
        _ = try await f.waitForRuns(variant("items"))
        _ = try await f.waitForRuns(variant("items", "eu"))
    }

    /// `PATCH /records/prune` as Nango's API takes it: payloads up to the cursor go, ids and
    /// `_nango_metadata` stay with `pruned_at` set.
    @Test func pruningDropsPayloadsUpToTheCursor() async throws {
        let f = try await ServerFixture()
        try await f.withRouter { api in
            try await prepared(f, api)
            let page = try await api.send(.get, "/records?model=Item&limit=2", headers: headers)
            let second = try #require(page.json["records"]?[1]?["_nango_metadata"]?["cursor"]?.stringValue)
            #expect(page.json["records"]?[0]?["_nango_metadata"]?["pruned_at"] == .null)
            let pruned = try await api.send(.patch, "/records/prune", body: ["model": "Item", "until_cursor": .string(second)], headers: headers)
            #expect(pruned.status == .ok && pruned.json == ["count": 2, "has_more": false], "\(pruned.json)")
            let records = try await api.allRecords(connection: "c1", model: "Item", pageSize: 10)
            #expect(records.count == 5)
            let prunedOnes = records.filter { $0["_nango_metadata"]?["pruned_at"]?.stringValue != nil }
            #expect(prunedOnes.count == 2)
            #expect(prunedOnes.allSatisfy { $0.keys.sorted() == ["_nango_metadata", "id"] }, "only the id and the metadata: \(prunedOnes)")
            let limited = try await api.send(.patch, "/records/prune", body: ["model": "Item", "until_cursor": .string(second), "limit": 0], headers: headers)
            #expect(limited.errorCode == "invalid_body")
            #expect(try await api.send(.patch, "/records/prune", body: ["model": "Item", "until_cursor": "nope"], headers: headers).errorCode == "invalid_cursor")
            #expect(try await api.send(.patch, "/records/prune", body: ["model": "Item", "until_cursor": .string(second)]).errorCode == "missing_connection_id")
            #expect(try await api.send(.patch, "/records/prune", body: ["model": "Nope", "until_cursor": .string(second)], headers: headers).status.code == 400)
        }
    }

    @Test func pagesWithCursorsPerVariant() async throws {
        let f = try await ServerFixture()
        try await f.withRouter { api in
            try await prepared(f, api)
            let base = try await api.allRecords(connection: "c1", model: "Item", pageSize: 2)
            #expect(base.compactMap { $0["id"]?.stringValue }.sorted() == (0..<5).map { "base-\($0)" })
            let eu = try await api.allRecords(connection: "c1", model: "Item", variant: "eu", pageSize: 1)
            #expect(eu.compactMap { $0["id"]?.stringValue }.sorted() == ["eu-0", "eu-1"])
            #expect(eu.allSatisfy { $0["label"] == "europe" }, "the function read metadata namespaced by its variant")
            let metadata = try #require(eu.first?["_nango_metadata"]?.objectValue)
            #expect(metadata["last_action"] == "ADDED")
            #expect(metadata["deleted_at"] == .null)
            #expect(metadata["cursor"]?.stringValue != nil)
            // Resuming from the last record's cursor after new changes returns only the changes.
            let lastCursor = try #require(base.last?["_nango_metadata"]?["cursor"]?.stringValue)
            try await f.store.setMetadata(["base.count": 4, "base.label": "changed"], of: [shopConnection])
            _ = try await api.send(.post, "/sync/trigger", body: ["provider_config_key": "shop", "connection_id": "c1", "syncs": ["items"]])
            _ = try await f.waitForRuns(variant("items"), count: 2)
            let tail = try await api.send(
                .get, "/records?model=Item&cursor=\(lastCursor.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)", headers: headers)
            let changes = try #require(tail.json["records"]?.arrayValue)
            #expect(changes.count == 5)
            #expect(changes.filter { $0["_nango_metadata"]?["last_action"] == "UPDATED" }.count == 4)
            #expect(changes.filter { $0["_nango_metadata"]?["last_action"] == "DELETED" }.map { $0["id"] } == ["base-4"])
            #expect(tail.json["next_cursor"] == .null)
        }
    }

    @Test func filtersAndIds() async throws {
        let f = try await ServerFixture()
        try await f.withRouter { api in
            try await prepared(f, api)
            try await f.store.setMetadata(["base.count": 3], of: [shopConnection])
            _ = try await api.send(.post, "/sync/trigger", body: ["provider_config_key": "shop", "connection_id": "c1", "syncs": ["items"]])
            _ = try await f.waitForRuns(variant("items"), count: 2)
            func ids(_ query: String) async throws -> [String] {
                let response = try await api.send(.get, "/records?model=Item&\(query)", headers: headers)
                #expect(response.status == .ok, "\(query): \(response.json)")
                return (response.json["records"]?.arrayValue ?? []).compactMap { $0["id"]?.stringValue }.sorted()
            }
            #expect(try await ids("filter=deleted") == ["base-3", "base-4"])
            #expect(try await ids("filter=ADDED,deleted") == ["base-0", "base-1", "base-2", "base-3", "base-4"])
            #expect(try await ids("filter=updated").isEmpty)
            #expect(try await ids("ids=base-1&ids=base-3") == ["base-1", "base-3"])
            #expect(try await ids("ids[]=base-2") == ["base-2"])
            #expect(try await ids("modified_after=2999-01-01T00:00:00Z").isEmpty)
            #expect(try await ids("delta=2000-01-01T00:00:00Z&limit=2").count == 2)
            #expect(try await ids("variant=eu") == ["eu-0", "eu-1"])
            #expect(try await ids("variant=nobody").isEmpty)
        }
    }

    @Test func badRecordQueriesAreClear4xx() async throws {
        let f = try await ServerFixture()
        try await f.withRouter { api in
            try await api.connect("c1")
            let cases: [(String, [String: String], String)] = [
                ("/records?model=Item", ["Provider-Config-Key": "shop"], "missing_connection_id"),
                ("/records?model=Item", ["Connection-Id": "c1"], "missing_provider_config_key"),
                ("/records", headers, "invalid_query_params"),
                ("/records?model=Invoice", headers, "unknown_model"),
                ("/records?model=Item&cursor=garbage", headers, "invalid_cursor"),
                ("/records?model=Item&limit=0", headers, "invalid_query_params"),
                ("/records?model=Item&limit=10001", headers, "invalid_query_params"),
                ("/records?model=Item&limit=ten", headers, "invalid_query_params"),
                ("/records?model=Item&filter=removed", headers, "invalid_query_params"),
                ("/records?model=Item&modified_after=yesterday", headers, "invalid_query_params"),
                ("/records?model=Item&color=blue", headers, "invalid_query_params"),
                ("/records?model=Item&variant=no%20spaces", headers, "invalid_query_params"),
                ("/records?model=Item&ids=" + (0...100).map { "i\($0)" }.joined(separator: "&ids="), headers, "invalid_query_params"),
                ("/records?model=Item", ["Connection-Id": "nobody", "Provider-Config-Key": "shop"], "unknown_connection"),
                ("/records?model=Item", ["Connection-Id": "c1", "Provider-Config-Key": "nope"], "unknown_provider_config"),
            ]
            for (uri, headers, code) in cases {
                let response = try await api.send(.get, uri, headers: headers)
                #expect(response.errorCode == code, "\(uri) \(headers): \(response.json)")
                #expect(response.status.code >= 400 && response.status.code < 500)
            }
            let otherEnvironment = try await api.send(.get, "/records?model=Item", key: prodKey, headers: headers)
            #expect(otherEnvironment.status == .notFound, "another environment's connection is invisible")
        }
    }
}
