import Foundation
import Hummingbird
import TributaryCore
import TributaryStore

extension API {
    /// What the variant endpoints address: `{name}` and `{variant}` from the path (never `base`),
    /// `provider_config_key` and `connection_id` from the body, resolved to an existing connection.
    private func variantTarget(_ request: Request, _ context: APIRequestContext, baseMessage: String) async throws
        -> (integration: IntegrationConfig, ref: VariantRef)
    {
        let environment = try context.requireEnvironment()
        let body = try await BodyReader.read(request, maxBytes: maxBody, allowed: ["provider_config_key", "connection_id"])
        let name = try context.parameters.requireName("name", what: "sync name")
        let variant = try context.parameters.requireName("variant", what: "variant name")
        _ = try QueryReader(request, allowed: [])
        guard !Variant.isBase(variant) else { throw APIError(.badRequest, "invalid_variant", baseMessage) }
        let integration = try integration(try body.string("provider_config_key"), in: environment)
        let connection = try await existingConnection(
            ConnectionRef(environment: environment.name, providerConfigKey: integration.providerConfigKey, connectionId: try body.string("connection_id")))
        return (integration, VariantRef(connection: connection.ref, syncName: name, variant: variant))
    }

    /// `POST /sync/{name}/variant/{variant}` → `{id, name, variant}`
    func createVariant(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let (integration, ref) = try await variantTarget(request, context, baseMessage: "Variant name \"base\" is protected.")
        let state = try await createVariant(ref, of: integration)
        return JSONResponse.make(["id": .string(state.id), "name": .string(ref.syncName), "variant": .string(ref.variant)])
    }

    /// Creates a variant of an existing connection (the API's and the dashboard's one rule): `base` is
    /// reserved, the sync must exist, the per-sync cap holds, and a sync with `auto_start: false`
    /// starts it paused.
    func createVariant(_ ref: VariantRef, of integration: IntegrationConfig) async throws -> VariantState {
        guard !Variant.isBase(ref.variant) else { throw APIError(.badRequest, "invalid_variant", "Variant name \"base\" is protected.") }
        let sync = try sync(ref.syncName, of: integration)
        return try await runs.createVariant(ref, maximumPerSync: config.server.maxVariantsPerSync, paused: !sync.autoStart)
    }

    /// `DELETE /sync/{name}/variant/{variant}`: stops its run, removes its schedule, checkpoint and records.
    func deleteVariant(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let (_, ref) = try await variantTarget(request, context, baseMessage: "Cannot delete protected variant \"base\".")
        try await removeVariant(ref)
        return JSONResponse.success
    }

    /// Deletes a variant (never `base`) in one transaction: its active runs end there (their late
    /// writes are refused), its schedule, checkpoint and runs go, and its records become invisible at
    /// once (purged in chunks afterwards).
    func removeVariant(_ ref: VariantRef) async throws {
        guard !Variant.isBase(ref.variant) else { throw APIError(.badRequest, "invalid_variant", "Cannot delete protected variant \"base\".") }
        do {
            try await runs.deleteVariant(ref)
        } catch let error as TributaryError where error.code == .unknownVariant {
            throw APIError(.notFound, "not_found", "Sync '\(ref.syncName)' has no variant '\(ref.variant)' on connection '\(ref.connection.connectionId)'.")
        }
    }

    /// `POST /sync/trigger`: runs the selected variants now. A running variant answers 409, unless
    /// `opts.reset` is set: then its run is cancelled, `lastSyncDate` and the checkpoint cleared
    /// (with `opts.emptyCache` also its records), and it starts again.
    func trigger(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let environment = try context.requireEnvironment()
        _ = try QueryReader(request, allowed: [])
        let body = try await BodyReader.read(
            request, maxBytes: maxBody, allowed: ["syncs", "provider_config_key", "connection_id", "opts", "sync_mode", "full_resync"])
        var reset = false
        var emptyCache = false
        let opts = try body.optionalObject("opts")
        if let opts {
            guard body.object["sync_mode"] == nil, body.object["full_resync"] == nil else {
                throw APIError.invalidBody("Cannot use opts with deprecated sync_mode/full_resync parameters.")
            }
            for key in opts.keys where key != "reset" && key != "emptyCache" {
                throw APIError.invalidBody("Unknown field 'opts.\(key)'; allowed: reset, emptyCache.")
            }
            reset = try body.optionalBool("reset", in: opts) ?? false
            emptyCache = try body.optionalBool("emptyCache", in: opts) ?? false
            if emptyCache, !reset { throw APIError.invalidBody("opts.emptyCache must be used with opts.reset = true.") }
        } else if let mode = body.object["sync_mode"] {
            switch mode.stringValue {
            case "incremental": break
            case "full_refresh": reset = true
            case "full_refresh_and_clear_cache":
                reset = true
                emptyCache = true
            default: throw APIError.invalidBody("sync_mode must be incremental, full_refresh or full_refresh_and_clear_cache.")
            }
        } else if try body.optionalBool("full_resync") == true {
            reset = true
        }
        let selections = try SyncSelection.list(body, required: false)
        let integration = try integration(try providerConfigKey(body, request), in: environment)
        let connections = try await targetConnections(try connectionId(body, request), integration: integration, environment: environment)
        let targets = try await resolve(selections, integration: integration, connections: connections)
        try await trigger(targets.map { $0.0.ref }, reset: reset, emptyCache: emptyCache)
        return JSONResponse.success
    }

    /// Runs the variants now — all of them or none: one running variant answers 409 and starts nothing.
    /// With `reset`, one transaction ends each one's active runs, clears its `lastSyncDate`,
    /// checkpoint and deletion window (with `emptyCache` also its records) and queues its run — so no
    /// run claimed in between can undo the reset, and the answer is exactly what happened.
    func trigger(_ variants: [VariantRef], reset: Bool, emptyCache: Bool) async throws {
        if reset {
            try await runs.reset(variants, emptyCache: emptyCache)
        } else {
            try await runs.trigger(variants)
        }
    }

    /// `POST /sync/pause` and `POST /sync/start`. Pausing also cancels a running run.
    func setPaused(_ request: Request, _ context: APIRequestContext, paused: Bool) async throws -> Response {
        let environment = try context.requireEnvironment()
        _ = try QueryReader(request, allowed: [])
        let body = try await BodyReader.read(request, maxBytes: maxBody, allowed: ["syncs", "provider_config_key", "connection_id"])
        let selections = try SyncSelection.list(body, required: true)
        let integration = try integration(try body.string("provider_config_key"), in: environment)
        let connections = try await targetConnections(try body.optionalString("connection_id"), integration: integration, environment: environment)
        let targets = try await resolve(selections, integration: integration, connections: connections)
        try await setPaused(paused, targets.map { $0.0.ref })
        return JSONResponse.success
    }

    /// Pauses (ending their queued or running runs) or resumes the variants' schedules, all or none, in one transaction.
    func setPaused(_ paused: Bool, _ variants: [VariantRef]) async throws {
        try await runs.setPaused(paused, variants)
    }

    /// `GET /sync/status?syncs=a,b::v|*&provider_config_key=&connection_id=`
    func status(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let environment = try context.requireEnvironment()
        let query = try QueryReader(request, allowed: ["syncs", "provider_config_key", "connection_id"])
        let syncsParameter = try query.required("syncs")
        let integration = try integration(try query.required("provider_config_key"), in: environment)
        let selections = syncsParameter == "*" ? [] : try syncsParameter.split(separator: ",").map { try SyncSelection($0) }
        let connections = try await targetConnections(try query.optional("connection_id"), integration: integration, environment: environment)
        let targets = try await resolve(selections, integration: integration, connections: connections)
        var items: [JSONValue] = []
        for (state, sync) in targets {
            let latest = try await store.runs(of: state.ref, limit: 1, includingWebhooks: false).first
            let counts = try await store.recordCounts(of: state.ref)
            items.append(statusJSON(state, sync: sync, latest: latest, counts: counts, linkCredentials: integration.auth.credentialQueryNames))
        }
        return JSONResponse.make(["syncs": .array(items)])
    }

    /// - Parameter linkCredentials: the integration's credential query parameters, removed from links in the checkpoint.
    func statusJSON(_ state: VariantState, sync: SyncConfig, latest: RunRecord?, counts: [String: Int], linkCredentials: Set<String>) -> JSONValue {
        let running = latest?.status.isActive ?? false
        let execution = latest.map { Self.executionStatus($0.status) } ?? "SUCCESS"
        let status = running ? "RUNNING" : state.paused ? "PAUSED" : execution
        var recordCount = JSONObject()
        for model in sync.models { recordCount[model] = .number(JSONNumber(counts[model] ?? 0)) }
        let latestResult: JSONValue = latest.flatMap { $0.status.isActive ? nil : .object(ModelResult.json($0.results)) } ?? .null
        return [
            "id": .string(state.id),
            "connection_id": .string(state.ref.connection.connectionId),
            "name": .string(state.ref.syncName),
            "variant": .string(state.ref.variant),
            "status": .string(status),
            "type": .string(latest?.kind == .incremental ? "INCREMENTAL" : "INITIAL"),
            "finishedAt": latest.flatMap { $0.status.isActive ? nil : $0.finishedAt }.map { .string($0.iso8601) } ?? .null,
            "nextScheduledSyncAt": state.paused ? .null : state.nextRunAt.map { .string($0.iso8601) } ?? .null,
            "frequency": .string(state.frequency(configured: sync.frequency).text),
            "latestResult": latestResult,
            "latestExecutionStatus": latest == nil ? .null : .string(execution),
            "recordCount": .object(recordCount),
            "checkpoint": state.checkpoint.map { .object($0.redactingLinkCredentials(linkCredentials).values) } ?? .null,
        ]
    }

    /// Nango's word for how a run stands: `RUNNING`, `SUCCESS`, `ERROR` or `STOPPED`.
    static func executionStatus(_ status: RunStatus) -> String {
        switch status {
        case .queued, .running: "RUNNING"
        case .failed, .expired: "ERROR"
        case .cancelled: "STOPPED"
        case .succeeded: "SUCCESS"
        }
    }

    /// `PUT /sync/update-connection-frequency` → `{frequency}`; `null` restores the configured frequency.
    func updateFrequency(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let environment = try context.requireEnvironment()
        _ = try QueryReader(request, allowed: [])
        let body = try await BodyReader.read(
            request, maxBytes: maxBody, allowed: ["sync_name", "sync_variant", "provider_config_key", "connection_id", "frequency"])
        let integration = try integration(try body.string("provider_config_key"), in: environment)
        let sync = try sync(try body.string("sync_name"), of: integration)
        let variant = try body.optionalString("sync_variant") ?? Variant.base
        var frequency: Frequency? = nil
        var written: String? = nil
        switch body.object["frequency"] {
        case .null?: frequency = nil
        case .string(let text)?:
            written = text
            do {
                frequency = try Frequency(text)
            } catch {
                let tooShort = Frequency.parseSeconds(text).map { $0 < Frequency.minimumSeconds } ?? false
                throw APIError(.badRequest, tooShort ? "sync_interval_too_short" : "invalid_body", error.message)
            }
        default: throw APIError.invalidBody("Field 'frequency' is required: a frequency such as \"every hour\", or null to restore the default.")
        }
        let connection = try await existingConnection(
            ConnectionRef(environment: environment.name, providerConfigKey: integration.providerConfigKey, connectionId: try body.string("connection_id")))
        let ref = VariantRef(connection: connection.ref, syncName: sync.name, variant: variant)
        try await existingVariant(ref)
        try await store.setFrequency(frequency?.text, for: ref)
        let effective = frequency ?? sync.frequency
        // The next run moves to the new schedule's first slot from now (a running variant re-plans when its run ends).
        if let state = try await store.variantState(ref), try await !runs.isActive(ref) {
            let offset = sync.schedule.offsetMicroseconds(forVariant: state.id)
            try await store.setNextRun(effective.slot(atOrAfter: Timestamp.now(), origin: state.createdAt, offsetMicroseconds: offset), for: ref)
        }
        // As Nango does: the frequency as written (the configured one's text after a reset to the default).
        return JSONResponse.make(["frequency": .string(written ?? effective.text)])
    }
}
