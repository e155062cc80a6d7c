import Foundation
import HTTPTypes
import Testing
import TributaryTestSupport
import TributaryCore
import TributaryStore

/// The requests Nango's Node SDK (`@nangohq/node`, `packages/node-client/lib/index.ts`) sends for
/// each call, replayed as the SDK writes them — paths, query strings (axios: booleans as
/// `true`/`false`, `URLSearchParams.append` for lists), the headers it always adds
/// (`Nango-Is-Sync`, `Nango-Is-Script`, `Nango-Is-Dry-Run`, `User-Agent`) — and checked against
/// the fields and types of Nango's answers. There is no npm registry on the build machines, so the
/// SDK itself does not run here; these are its requests, read from its source.
@Suite("Nango Node SDK requests, replayed")
struct NangoSDKCompatibilityTests {
    /// What `enrichHeaders` adds to every SDK request.
    static let sdkHeaders = [
        "Nango-Is-Sync": "false", "Nango-Is-Script": "false", "Nango-Is-Dry-Run": "false", "User-Agent": "nango-node-client/0.71.4 (linux/x64; node.js/20)",
    ]

    @Test func connectionCallsSendWhatTheSDKSendsAndReadWhatItReads() async throws {
        let f = try await ServerFixture()
        try await f.withRouter { api in
            // importConnection(): POST /connections with Nango's current credential shape.
            let imported = try await api.send(
                .post, "/connections",
                body: [
                    "provider_config_key": "keyed", "connection_id": "sdk-1", "credentials": ["type": "API_KEY", "apiKey": "sk_sdk"],
                    "metadata": ["plan": "pro"], "end_user": ["id": "u-1", "email": "u@example.com"], "tags": ["team": "core"],
                ], headers: Self.sdkHeaders)
            #expect(imported.status == .created, "\(imported.json)")
            // getConnection / getToken / getRawTokenResponse / getMetadata: all the same request.
            let path = "/connections/sdk-1?provider_config_key=keyed&force_refresh=false&refresh_token=false&refresh_github_app_jwt_token=false"
            let connection = try await api.send(.get, path, headers: Self.sdkHeaders)
            #expect(connection.status == .ok, "\(connection.json)")
            for field in ["id", "connection_id", "provider_config_key", "provider", "errors", "end_user", "tags", "metadata", "connection_config",
                          "created_at", "updated_at", "credentials"] {
                #expect(connection.json[field] != nil, "getConnection reads \(field)")
            }
            #expect(connection.json["id"]?.int64Value != nil, "id is a number")
            #expect(connection.json["credentials"]?["apiKey"] == "sk_sdk", "getToken returns credentials for API_KEY")
            #expect(connection.json["metadata"] == ["plan": "pro"], "getMetadata returns .metadata")
            #expect(connection.json["end_user"]?["email"] == "u@example.com")
            // listConnections(): searchParams.append for each given filter, tags as tags[key].
            let listed = try await api.send(
                .get, "/connections?connectionId=sdk-1&search=sdk&endUserId=u-1&tags%5Bteam%5D=core&limit=100&page=0", headers: Self.sdkHeaders)
            #expect(listed.status == .ok, "\(listed.json)")
            let entry = try #require(listed.json["connections"]?[0])
            for field in ["id", "connection_id", "provider_config_key", "provider", "errors", "end_user", "tags", "metadata", "created"] {
                #expect(entry[field] != nil, "listConnections reads \(field)")
            }
            // patchConnection(): provider_config_key concatenated into the URL, JSON body.
            let patched = try await api.send(.patch, "/connections/sdk-1?provider_config_key=keyed", body: ["tags": ["team": "edge"]], headers: Self.sdkHeaders)
            #expect(patched.json == ["success": true])
            // getIntegration(key, {include: ['webhook']}): searchParams.set, so the last include wins.
            let integration = try await api.send(.get, "/integrations/keyed?include=webhook", headers: Self.sdkHeaders)
            #expect(integration.status == .ok)
            #expect(integration.json["data"]?["logo"]?.stringValue != nil && integration.json["data"]?["webhook_url"]?.stringValue != nil)
            // updateConnectionFrequency(): the frequency comes back as written.
            let frequency = try await api.send(
                .put, "/sync/update-connection-frequency",
                body: ["sync_name": "contacts", "provider_config_key": "keyed", "connection_id": "sdk-1", "frequency": "every 2 hours"], headers: Self.sdkHeaders)
            #expect(frequency.json == ["frequency": "every 2 hours"])
            // deleteConnection()
            #expect(try await api.send(.delete, "/connections/sdk-1?provider_config_key=keyed", headers: Self.sdkHeaders).json == ["success": true])
        }
    }

    @Test func syncRecordAndMetadataCallsSendWhatTheSDKSends() async throws {
        let f = try await ServerFixture()
        try await f.withRouter { api in
            _ = try await api.connect("sdk-2")
            let target: JSONObject = ["provider_config_key": "shop", "connection_id": "sdk-2"]
            // createSyncVariant / deleteSyncVariant: POST/DELETE /sync/{name}/variant/{variant} with the connection in the body.
            let variant = try await api.send(.post, "/sync/items/variant/eu", body: .object(target), headers: Self.sdkHeaders)
            #expect(variant.status == .ok && variant.json["variant"] == "eu" && variant.json["id"]?.stringValue != nil)
            // setMetadata / updateMetadata
            var metadata = target
            metadata["metadata"] = ["base.count": 2, "eu.count": 1]
            #expect(try await api.send(.post, "/connections/metadata", body: .object(metadata), headers: Self.sdkHeaders).status == .created)
            metadata["metadata"] = ["note": "x"]
            #expect(try await api.send(.patch, "/connections/metadata", body: .object(metadata), headers: Self.sdkHeaders).status == .ok)
            // triggerSync(key, syncs, connectionId): syncs as names and {name, variant}.
            var trigger = target
            trigger["syncs"] = ["items", ["name": "items", "variant": "eu"]]
            #expect(try await api.send(.post, "/sync/trigger", body: .object(trigger), headers: Self.sdkHeaders).json == ["success": true])
            _ = try await f.waitForRuns(VariantRef(connection: ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "sdk-2"), syncName: "items"))
            // syncStatus(key, syncs, connectionId): syncs joined with commas, variants as name::variant.
            let status = try await api.send(.get, "/sync/status?provider_config_key=shop&syncs=items,items::eu&connection_id=sdk-2", headers: Self.sdkHeaders)
            #expect(status.status == .ok)
            let first = try #require(status.json["syncs"]?[0])
            for field in ["id", "name", "variant", "status", "type", "finishedAt", "nextScheduledSyncAt", "frequency", "latestResult", "recordCount", "checkpoint"] {
                #expect(first[field] != nil, "syncStatus reads \(field)")
            }
            // pauseSync / startSync
            var pause = target
            pause["syncs"] = ["items::eu"]
            #expect(try await api.send(.post, "/sync/pause", body: .object(pause), headers: Self.sdkHeaders).json == ["success": true])
            #expect(try await api.send(.post, "/sync/start", body: .object(pause), headers: Self.sdkHeaders).json == ["success": true])
            // listRecords: the connection in headers, the rest in the query.
            var headers = Self.sdkHeaders
            headers["Connection-Id"] = "sdk-2"
            headers["Provider-Config-Key"] = "shop"
            let records = try await api.send(.get, "/records?model=Item&limit=1&filter=added,updated", headers: headers)
            #expect(records.status == .ok, "\(records.json)")
            let record = try #require(records.json["records"]?[0])
            for field in ["first_seen_at", "last_modified_at", "last_action", "deleted_at", "pruned_at", "cursor"] {
                #expect(record["_nango_metadata"]?[field] != nil, "listRecords reads _nango_metadata.\(field)")
            }
            #expect(records.json["next_cursor"]?.stringValue != nil)
            #expect(try await api.send(.delete, "/sync/items/variant/eu", body: .object(target), headers: Self.sdkHeaders).json == ["success": true])
        }
    }

    @Test func discoveryCallsDescribeTheDeployment() async throws {
        let f = try await ServerFixture()
        try await f.withRouter { api in
            // getScriptsConfig(): always ?format=nango.
            let scripts = try await api.send(.get, "/scripts/config?format=nango", headers: Self.sdkHeaders)
            #expect(scripts.status == .ok, "\(scripts.json)")
            let shop = try #require(scripts.json.arrayValue?.first { $0["providerConfigKey"] == "shop" })
            let items = try #require(shop["syncs"]?.arrayValue?.first { $0["name"] == "items" })
            #expect(items["type"] == "sync" && items["runs"] == "every hour" && items["track_deletes"] == true && items["returns"] == ["Item"])
            #expect(items["models"]?[0]?["name"] == "Item")
            #expect(items["models"]?[0]?["fields"] == [["name": "id", "value": "string"], ["name": "n", "value": "number", "optional": true]],
                    "the fields the Swift function declares")
            #expect(shop["syncs"]?.arrayValue?.first { $0["name"] == "slow" }?["models"]?[0]?["fields"] == [], "a function that declares none")
            #expect(shop["actions"]?.arrayValue?.map { $0["name"] } == ["greet"] && shop["actions"]?[0]?["type"] == "action" && shop["on-events"] == [])
            #expect(try await api.send(.get, "/scripts/config?format=openai").errorCode == "invalid_query_params")
            // The integration's functions, paged.
            let functions = try await api.send(.get, "/integrations/shop/functions?limit=1&page=1")
            #expect(functions.json["data"]?.arrayValue?.map { $0["name"] } == ["slow"])
            #expect(functions.json["pagination"] == ["total": 3, "page": 1, "limit": 1])
            #expect(try await api.send(.get, "/integrations/shop/functions?type=action").json["data"]?.arrayValue?.map { $0["name"] } == ["greet"])
            // listProviders() / getProvider()
            let providers = try await api.send(.get, "/providers", headers: Self.sdkHeaders)
            let names = providers.json["data"]?.arrayValue?.compactMap { $0["name"]?.stringValue } ?? []
            #expect(names.contains("api-key") && names.contains("oauth2"), "the generic schemes: \(names)")
            for entry in providers.json["data"]?.arrayValue ?? [] {
                for field in ["name", "display_name", "auth_mode", "docs"] { #expect(entry[field]?.stringValue != nil, "\(field) of \(entry)") }
            }
            #expect(try await api.send(.get, "/providers/basic").json["data"]?["auth_mode"] == "BASIC")
            #expect(try await api.send(.get, "/providers?search=oauth").json["data"]?.arrayValue?.count == 2)
            #expect(try await api.send(.get, "/providers/nope").status == .notFound)
            // getEnvironmentVariables(): a bare array of {name, value}.
            #expect(try await api.send(.get, "/environment-variables", key: prodKey).json == [["name": "SHOP_REGION", "value": "eu"], ["name": "FEATURE_X", "value": "on"]])
            #expect(try await api.send(.get, "/environment-variables").json == [])
        }
    }

    @Test func actionCallsSendWhatTheSDKSends() async throws {
        let f = try await ServerFixture()
        try await f.withRouter { api in
            try await api.connect("acme")
            // triggerAction(key, connectionId, name, input): POST /action/trigger with the two headers and {action_name, input}.
            let headers = Self.sdkHeaders.merging(["Connection-Id": "acme", "Provider-Config-Key": "shop"]) { a, _ in a }
            let sync = try await api.send(.post, "/action/trigger", body: ["action_name": "greet", "input": ["name": "sdk"]], headers: headers)
            #expect(sync.status == .ok && sync.json == ["hello": "sdk"], "the output itself, unwrapped")
            // triggerActionAsync(...): the same with X-Async: 'true' → {id, statusUrl}.
            let queued = try await api.send(
                .post, "/action/trigger", body: ["action_name": "greet", "input": ["name": "later"]], headers: headers.merging(["X-Async": "true"]) { a, _ in a })
            #expect(queued.status == .accepted)
            let statusUrl = try #require(queued.json["statusUrl"]?.stringValue)
            #expect(statusUrl == "/action/\(try #require(queued.json["id"]?.stringValue))")
            // getAsyncActionResult({statusUrl}): GET on the statusUrl as given.
            try await eventually("the async action ended") { try await api.send(.get, statusUrl, headers: Self.sdkHeaders).status == .ok }
            #expect(try await api.send(.get, statusUrl, headers: Self.sdkHeaders).json == ["hello": "later"])
            // An ActionError reaches the SDK as Nango's error with its payload.
            let failed = try await api.send(.post, "/action/trigger", body: ["action_name": "greet"], headers: headers)
            #expect(failed.status == .internalServerError && failed.errorCode == "action_script_runtime_error" && failed.json["error"]?["payload"] == ["missing": "name"])
        }
    }

    @Test func connectSessionCallsSendWhatTheSDKSends() async throws {
        let f = try await ServerFixture()
        try await f.withRouter { api in
            // createConnectSession(props): POST /connect/sessions with the props as the body.
            let created = try await api.send(
                .post, "/connect/sessions",
                body: [
                    "end_user": ["id": "u-1", "email": "u@example.com", "display_name": "U"], "organization": ["id": "org-1", "display_name": "Org"],
                    "allowed_integrations": ["keyed"], "integrations_config_defaults": ["keyed": ["connection_config": ["subdomain": "acme"]]],
                ], headers: Self.sdkHeaders)
            #expect(created.status == .created, "\(created.json)")
            let token = try #require(created.json["data"]?["token"]?.stringValue)
            #expect(token.hasPrefix("nango_connect_session_") && created.json["data"]?["expires_at"]?.stringValue != nil)
            #expect(created.json["data"]?["connect_link"]?.stringValue == "https://sync.example.test/connect?session_token=\(token)")
            // The frontend reads the session with the token itself.
            let session = try await api.send(.get, "/connect/session", key: token)
            #expect(session.json["data"]?["organization"] == ["id": "org-1", "display_name": "Org"])
            #expect(session.json["data"]?["integrations_config_defaults"]?["keyed"]?["connection_config"]?["subdomain"] == "acme")
            // createReconnectSession({connection_id, integration_id}).
            _ = try await api.send(
                .post, "/connections", body: ["provider_config_key": "keyed", "connection_id": "c-1", "credentials": ["type": "API_KEY", "apiKey": "k"]])
            let reconnect = try await api.send(
                .post, "/connect/sessions/reconnect", body: ["connection_id": "c-1", "integration_id": "keyed"], headers: Self.sdkHeaders)
            #expect(reconnect.status == .created && reconnect.json["data"]?["token"]?.stringValue != token)
            let reconnectToken = try #require(reconnect.json["data"]?["token"]?.stringValue)
            #expect(try await api.send(.get, "/connect/session", key: reconnectToken).json["data"]?["isReconnecting"] == true)
            #expect(try await api.send(.delete, "/connect/session", key: reconnectToken).status == .noContent)
            #expect(try await api.send(.get, "/connect/session", key: reconnectToken).status == .unauthorized)
        }
    }
}
