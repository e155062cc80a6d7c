import Foundation
import PostgresNIO
import TributaryCore
import TributaryStore

extension PostgresStore {
    public func createConnectSession(_ session: ConnectSession) async throws {
        let row = ConnectSessionColumns(session)
        let cutoff = clock().microseconds - ConnectSessionRule.keepExpiredSeconds * 1_000_000
        try await transaction { db in
            try await db.query("DELETE FROM connect_sessions WHERE expires_at < \(cutoff)", logger: self.logger)
            try await db.query(
                """
                INSERT INTO connect_sessions(token_hash, environment, end_user, tags, allowed_integrations, config_defaults,
                    reconnect_provider_config_key, reconnect_connection_id, created_at, expires_at)
                VALUES (\(session.tokenHash), \(session.environment), \(row.endUser), \(row.tags), \(row.allowedIntegrations), \(row.configDefaults),
                    \(session.reconnect?.providerConfigKey), \(session.reconnect?.connectionId), \(session.createdAt.microseconds),
                    \(session.expiresAt.microseconds))
                """, logger: self.logger)
        }
    }

    public func connectSession(tokenHash: String) async throws -> ConnectSession? {
        try await read { db in try await self.fetchConnectSession(db, "token_hash", tokenHash, lock: false) }
    }

    public func connectSession(oauthStateHash: String) async throws -> ConnectSession? {
        try await read { db in try await self.fetchConnectSession(db, "oauth_state_hash", oauthStateHash, lock: false) }
    }

    public func claimConnectOAuth(stateHash: String, browserHash: String) async throws -> ConnectSession? {
        try await transaction { db in
            guard let session = try await self.fetchConnectSession(db, "oauth_state_hash", stateHash, lock: true), session.oauth?.browserHash == browserHash
            else { return nil }
            try await db.query(
                """
                UPDATE connect_sessions SET oauth_state_hash = NULL, oauth_browser_hash = NULL, oauth_verifier = NULL, oauth_provider_config_key = NULL,
                    oauth_started_at = NULL
                WHERE token_hash = \(session.tokenHash)
                """, logger: self.logger)
            return session
        }
    }

    @discardableResult
    public func deleteConnectSession(tokenHash: String, environment: String) async throws -> Bool {
        try await transaction { db in
            try await db.count(
                "DELETE FROM connect_sessions WHERE token_hash = \(tokenHash) AND environment = \(environment) RETURNING token_hash", self.logger) > 0
        }
    }

    public func beginConnectOAuth(tokenHash: String, _ oauth: PendingOAuth) async throws -> Bool {
        let now = clock()
        return try await transaction { db in
            let session = try await self.fetchConnectSession(db, "token_hash", tokenHash, lock: true)
            guard ConnectSessionRule.verdict(session, now: now) == .usable else { return false }
            try await db.query(
                """
                UPDATE connect_sessions SET oauth_state_hash = \(oauth.stateHash), oauth_browser_hash = \(oauth.browserHash),
                    oauth_provider_config_key = \(oauth.providerConfigKey),
                    oauth_verifier = \(Data(oauth.sealedVerifier)), oauth_started_at = \(oauth.startedAt.microseconds)
                WHERE token_hash = \(tokenHash)
                """, logger: self.logger)
            return true
        }
    }

    public func completeConnectSession(tokenHash: String, _ completion: ConnectCompletion) async throws -> (ConnectionRecord, created: Bool) {
        let now = clock()
        return try await transaction { db in
            // Locked, so two completions of one session (a double submit, a replayed callback) cannot both pass.
            let session = try await self.fetchConnectSession(db, "token_hash", tokenHash, lock: true)
            if let error = ConnectSessionRule.error(for: ConnectSessionRule.verdict(session, now: now)) { throw error }
            try await db.query(
                """
                UPDATE connect_sessions SET used_at = \(now.microseconds), oauth_state_hash = NULL, oauth_browser_hash = NULL, oauth_verifier = NULL,
                    oauth_provider_config_key = NULL, oauth_started_at = NULL
                WHERE token_hash = \(tokenHash)
                """, logger: self.logger)
            let connection = completion.connection
            let result: (ConnectionRecord, created: Bool)
            if completion.credentialsOnly {
                let pk = try await self.requireConnectionPK(db, connection.ref)
                let sealed = connection.sealedCredentials.map { Data($0) }
                try await db.query(
                    """
                    UPDATE connections SET credentials_type = \(connection.credentialsType), credentials = \(sealed), updated_at = \(now.microseconds)
                    WHERE id = \(pk)
                    """, logger: self.logger)
                try await self.patch(db, pk, ConnectionPatch(endUser: connection.endUser, tags: connection.tags), now: now)
                result = (try await self.fetchConnections(db, "id = $1", binds: [pk]).first!, false)
            } else {
                result = try await self.importConnection(db, connection, baseVariantsOf: completion.baseVariantsOf, now: now)
            }
            try await self.insertConnectionWebhooks(db, completion.webhooks, for: connection.ref, now: now)
            return result
        }
    }

    @discardableResult
    public func reportRefusedRefresh(of connection: ConnectionRef, fingerprint: String, webhooks: [OutboxMessage]) async throws -> Bool {
        let now = clock()
        return try await transaction { db in
            // The row lock makes two processes refused at once agree on who tells the app.
            guard
                let row = try await db.one(
                    """
                    SELECT id, credentials, refresh_refused FROM connections
                    WHERE environment = \(connection.environment) AND provider_config_key = \(connection.providerConfigKey)
                        AND connection_id = \(connection.connectionId)
                    FOR UPDATE
                    """, self.logger)
            else { return false }
            // Not about credentials replaced meanwhile (a reconnect), and once per version.
            let current = CredentialCipher.fingerprint(try row.optionalBytes("credentials") ?? [])
            guard !webhooks.isEmpty, current == fingerprint, try row.optionalString("refresh_refused") != fingerprint else { return false }
            try await db.query("UPDATE connections SET refresh_refused = \(fingerprint) WHERE id = \(try row.int64("id"))", logger: self.logger)
            try await self.insertConnectionWebhooks(db, webhooks, for: connection, now: now)
            return true
        }
    }

    /// Webhooks about a connection, not a run (no run id, sync or variant).
    private func insertConnectionWebhooks(_ db: PostgresConnection, _ messages: [OutboxMessage], for connection: ConnectionRef, now: Timestamp) async throws {
        for message in messages {
            try await db.query(
                """
                INSERT INTO webhook_deliveries(idempotency_key, environment, url, body, status, created_at, next_attempt_at, run_id,
                    provider_config_key, connection_id, sync_name, variant, model, success)
                VALUES (\(UUID().uuidString.lowercased()), \(connection.environment), \(message.url), \(Data(message.body)), 'pending',
                    \(now.microseconds), \(now.microseconds), NULL, \(connection.providerConfigKey), \(connection.connectionId), '', '',
                    \(message.model), \(message.success))
                """, logger: logger)
        }
    }

    public func recordConnectionEventRun(_ run: ConnectionEventRun) async throws {
        try await transaction { db in
            try await db.query(
                """
                INSERT INTO connection_event_runs(id, environment, provider_config_key, connection_id, event, function, failure, logs, started_at, finished_at)
                VALUES (\(run.id), \(run.connection.environment), \(run.connection.providerConfigKey), \(run.connection.connectionId), \(run.event.rawValue),
                    \(run.function), \(run.failure), \(run.logsText), \(run.startedAt.microseconds), \(run.finishedAt.microseconds))
                """, logger: self.logger)
        }
    }

    public func connectionEventRuns(environment: String, providerConfigKey: String?, connectionId: String?, limit: Int) async throws -> [ConnectionEventRun] {
        try await read { db in
            let rows = try await db.all(
                """
                SELECT * FROM connection_event_runs
                WHERE environment = \(environment) AND (\(providerConfigKey)::text IS NULL OR provider_config_key = \(providerConfigKey))
                    AND (\(connectionId)::text IS NULL OR connection_id = \(connectionId))
                ORDER BY finished_at DESC, id LIMIT \(limit)
                """, self.logger)
            return try rows.compactMap { row in
                guard let event = ConnectionEvent(rawValue: try row.string("event")) else { return nil }
                return ConnectionEventRun(
                    id: try row.string("id"),
                    connection: ConnectionRef(
                        environment: try row.string("environment"), providerConfigKey: try row.string("provider_config_key"), connectionId: try row.string("connection_id")),
                    event: event, function: try row.string("function"), failure: try row.optionalString("failure"),
                    logs: ConnectionEventRun.logs(from: try row.string("logs")), startedAt: Timestamp(microseconds: try row.int64("started_at")),
                    finishedAt: Timestamp(microseconds: try row.int64("finished_at")))
            }
        }
    }

    /// `column` is one of two fixed names (`token_hash`, `oauth_state_hash`).
    private func fetchConnectSession(_ db: PostgresConnection, _ column: String, _ value: String, lock: Bool) async throws -> ConnectSession? {
        var binds = PostgresBindings(capacity: 1)
        binds.append(value)
        let query = PostgresQuery(unsafeSQL: "SELECT * FROM connect_sessions WHERE \(column) = $1\(lock ? " FOR UPDATE" : "")", binds: binds)
        guard let row = try await db.one(query, logger) else { return nil }
        let environment = try row.string("environment")
        var reconnect: ConnectionRef?
        if let key = try row.optionalString("reconnect_provider_config_key"), let id = try row.optionalString("reconnect_connection_id") {
            reconnect = ConnectionRef(environment: environment, providerConfigKey: key, connectionId: id)
        }
        var oauth: PendingOAuth?
        if let state = try row.optionalString("oauth_state_hash"), let browser = try row.optionalString("oauth_browser_hash"),
            let key = try row.optionalString("oauth_provider_config_key"), let verifier = try row.optionalBytes("oauth_verifier"),
            let started = try row.optionalInt64("oauth_started_at")
        {
            oauth = PendingOAuth(
                stateHash: state, browserHash: browser, providerConfigKey: key, sealedVerifier: verifier, startedAt: Timestamp(microseconds: started))
        }
        return try ConnectSessionColumns.session(
            tokenHash: try row.string("token_hash"), environment: environment, endUser: try row.optionalString("end_user"),
            tags: try row.optionalString("tags"), allowedIntegrations: try row.optionalString("allowed_integrations"),
            configDefaults: try row.string("config_defaults"), reconnect: reconnect, createdAt: try row.int64("created_at"),
            expiresAt: try row.int64("expires_at"), usedAt: try row.optionalInt64("used_at"), oauth: oauth)
    }
}
