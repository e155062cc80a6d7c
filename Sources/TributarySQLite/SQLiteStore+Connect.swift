import Foundation
import GRDB
import TributaryCore
import TributaryStore

extension SQLiteStore {
    static let connectSessionsTable = """
        CREATE TABLE connect_sessions (
            token_hash TEXT PRIMARY KEY,
            environment TEXT NOT NULL,
            end_user TEXT,
            tags TEXT,
            allowed_integrations TEXT,
            config_defaults TEXT NOT NULL,
            reconnect_provider_config_key TEXT,
            reconnect_connection_id TEXT,
            created_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL,
            used_at INTEGER,
            oauth_state_hash TEXT UNIQUE,
            oauth_browser_hash TEXT,
            oauth_provider_config_key TEXT,
            oauth_verifier BLOB,
            oauth_started_at INTEGER
        );
        CREATE INDEX connect_sessions_expiry ON connect_sessions(expires_at);
        ALTER TABLE connections ADD COLUMN refresh_refused TEXT;
        CREATE TABLE connection_event_runs (
            id TEXT PRIMARY KEY,
            environment TEXT NOT NULL,
            provider_config_key TEXT NOT NULL,
            connection_id TEXT NOT NULL,
            event TEXT NOT NULL,
            function TEXT NOT NULL,
            failure TEXT,
            logs TEXT NOT NULL,
            started_at INTEGER NOT NULL,
            finished_at INTEGER NOT NULL
        );
        CREATE INDEX connection_event_runs_by_environment ON connection_event_runs(environment, finished_at);
        CREATE INDEX connection_event_runs_by_connection ON connection_event_runs(environment, provider_config_key, connection_id, finished_at);
        """

    public func createConnectSession(_ session: ConnectSession) async throws {
        try await pool.write { db in
            let now = self.clock()
            try db.execute(
                sql: "DELETE FROM connect_sessions WHERE expires_at < ?",
                arguments: [now.microseconds - ConnectSessionRule.keepExpiredSeconds * 1_000_000])
            let row = ConnectSessionColumns(session)
            try db.execute(
                sql: """
                    INSERT INTO connect_sessions(token_hash, environment, end_user, tags, allowed_integrations, config_defaults,
                        reconnect_provider_config_key, reconnect_connection_id, created_at, expires_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    session.tokenHash, session.environment, row.endUser, row.tags, row.allowedIntegrations, row.configDefaults,
                    session.reconnect?.providerConfigKey, session.reconnect?.connectionId, session.createdAt.microseconds, session.expiresAt.microseconds,
                ])
        }
    }

    public func connectSession(tokenHash: String) async throws -> ConnectSession? {
        try await pool.read { db in try self.fetchConnectSession(db, "token_hash = ?", tokenHash) }
    }

    public func connectSession(oauthStateHash: String) async throws -> ConnectSession? {
        try await pool.read { db in try self.fetchConnectSession(db, "oauth_state_hash = ?", oauthStateHash) }
    }

    public func claimConnectOAuth(stateHash: String, browserHash: String) async throws -> ConnectSession? {
        try await pool.write { db in
            guard let session = try self.fetchConnectSession(db, "oauth_state_hash = ?", stateHash), session.oauth?.browserHash == browserHash else {
                return nil
            }
            try db.execute(
                sql: """
                    UPDATE connect_sessions SET oauth_state_hash = NULL, oauth_browser_hash = NULL, oauth_verifier = NULL, oauth_provider_config_key = NULL,
                        oauth_started_at = NULL
                    WHERE token_hash = ?
                    """,
                arguments: [session.tokenHash])
            return session
        }
    }

    @discardableResult
    public func deleteConnectSession(tokenHash: String, environment: String) async throws -> Bool {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM connect_sessions WHERE token_hash = ? AND environment = ?", arguments: [tokenHash, environment])
            return db.changesCount > 0
        }
    }

    public func beginConnectOAuth(tokenHash: String, _ oauth: PendingOAuth) async throws -> Bool {
        try await pool.write { db in
            let session = try self.fetchConnectSession(db, "token_hash = ?", tokenHash)
            guard ConnectSessionRule.verdict(session, now: self.clock()) == .usable else { return false }
            try db.execute(
                sql: """
                    UPDATE connect_sessions SET oauth_state_hash = ?, oauth_browser_hash = ?, oauth_provider_config_key = ?, oauth_verifier = ?,
                        oauth_started_at = ?
                    WHERE token_hash = ?
                    """,
                arguments: [
                    oauth.stateHash, oauth.browserHash, oauth.providerConfigKey, Data(oauth.sealedVerifier), oauth.startedAt.microseconds, tokenHash,
                ])
            return true
        }
    }

    public func completeConnectSession(tokenHash: String, _ completion: ConnectCompletion) async throws -> (ConnectionRecord, created: Bool) {
        try await pool.write { db in
            let now = self.clock()
            let session = try self.fetchConnectSession(db, "token_hash = ?", tokenHash)
            if let error = ConnectSessionRule.error(for: ConnectSessionRule.verdict(session, now: now)) { throw error }
            try db.execute(
                sql: """
                    UPDATE connect_sessions SET used_at = ?, oauth_state_hash = NULL, oauth_browser_hash = NULL, oauth_verifier = NULL,
                        oauth_provider_config_key = NULL, oauth_started_at = NULL
                    WHERE token_hash = ?
                    """,
                arguments: [now.microseconds, tokenHash])
            let connection = completion.connection
            let result: (ConnectionRecord, created: Bool)
            if completion.credentialsOnly {
                let pk = try self.requireConnectionPK(db, connection.ref)
                try db.execute(
                    sql: "UPDATE connections SET credentials_type = ?, credentials = ?, updated_at = ? WHERE id = ?",
                    arguments: [connection.credentialsType, connection.sealedCredentials.map { Data($0) }, now.microseconds, pk])
                try self.patch(db, pk, ConnectionPatch(endUser: connection.endUser, tags: connection.tags), now: now)
                result = (try self.fetchConnections(db, where: "id = ?", [pk]).first!, false)
            } else {
                result = try self.importConnection(db, connection, baseVariantsOf: completion.baseVariantsOf, now: now)
            }
            try self.insertConnectionWebhooks(db, completion.webhooks, for: connection.ref, now: now)
            return result
        }
    }

    @discardableResult
    public func reportRefusedRefresh(of connection: ConnectionRef, fingerprint: String, webhooks: [OutboxMessage]) async throws -> Bool {
        try await pool.write { db in
            guard
                let row = try Row.fetchOne(
                    db,
                    sql: "SELECT id, credentials, refresh_refused FROM connections WHERE environment = ? AND provider_config_key = ? AND connection_id = ?",
                    arguments: [connection.environment, connection.providerConfigKey, connection.connectionId])
            else { return false }
            // Not about credentials replaced meanwhile (a reconnect), and once per version.
            let current = CredentialCipher.fingerprint((row["credentials"] as Data?).map { Array($0) } ?? [])
            guard !webhooks.isEmpty, current == fingerprint, (row["refresh_refused"] as String?) != fingerprint else { return false }
            try db.execute(sql: "UPDATE connections SET refresh_refused = ? WHERE id = ?", arguments: [fingerprint, row["id"] as Int64])
            try self.insertConnectionWebhooks(db, webhooks, for: connection, now: self.clock())
            return true
        }
    }

    /// Webhooks about a connection, not a run (no run id, sync or variant).
    private func insertConnectionWebhooks(_ db: Database, _ messages: [OutboxMessage], for connection: ConnectionRef, now: Timestamp) throws {
        for message in messages {
            try db.execute(
                sql: """
                    INSERT INTO webhook_deliveries(idempotency_key, environment, url, body, status, created_at, next_attempt_at, run_id,
                        provider_config_key, connection_id, sync_name, variant, model, success)
                    VALUES (?, ?, ?, ?, 'pending', ?, ?, NULL, ?, ?, '', '', ?, ?)
                    """,
                arguments: [
                    UUID().uuidString.lowercased(), connection.environment, message.url, Data(message.body), now.microseconds, now.microseconds,
                    connection.providerConfigKey, connection.connectionId, message.model, message.success,
                ])
        }
    }

    public func recordConnectionEventRun(_ run: ConnectionEventRun) async throws {
        try await pool.write { db in
            try db.execute(
                sql: """
                    INSERT INTO connection_event_runs(id, environment, provider_config_key, connection_id, event, function, failure, logs, started_at, finished_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    run.id, run.connection.environment, run.connection.providerConfigKey, run.connection.connectionId, run.event.rawValue, run.function,
                    run.failure, run.logsText, run.startedAt.microseconds, run.finishedAt.microseconds,
                ])
        }
    }

    public func connectionEventRuns(environment: String, providerConfigKey: String?, connectionId: String?, limit: Int) async throws -> [ConnectionEventRun] {
        try await pool.read { db in
            var conditions = ["environment = ?"]
            var arguments: [any DatabaseValueConvertible] = [environment]
            if let providerConfigKey {
                conditions.append("provider_config_key = ?")
                arguments.append(providerConfigKey)
            }
            if let connectionId {
                conditions.append("connection_id = ?")
                arguments.append(connectionId)
            }
            arguments.append(limit)
            return try Row.fetchAll(
                db,
                sql: "SELECT * FROM connection_event_runs WHERE \(conditions.joined(separator: " AND ")) ORDER BY finished_at DESC, id LIMIT ?",
                arguments: StatementArguments(arguments)
            ).compactMap { row in
                guard let event = ConnectionEvent(rawValue: row["event"]) else { return nil }
                return ConnectionEventRun(
                    id: row["id"], connection: ConnectionRef(environment: row["environment"], providerConfigKey: row["provider_config_key"], connectionId: row["connection_id"]),
                    event: event, function: row["function"], failure: row["failure"], logs: ConnectionEventRun.logs(from: row["logs"]),
                    startedAt: Timestamp(microseconds: row["started_at"]), finishedAt: Timestamp(microseconds: row["finished_at"]))
            }
        }
    }

    private func fetchConnectSession(_ db: Database, _ condition: String, _ value: String) throws -> ConnectSession? {
        guard let row = try Row.fetchOne(db, sql: "SELECT * FROM connect_sessions WHERE \(condition)", arguments: [value]) else { return nil }
        let environment: String = row["environment"]
        var reconnect: ConnectionRef?
        if let key: String = row["reconnect_provider_config_key"], let id: String = row["reconnect_connection_id"] {
            reconnect = ConnectionRef(environment: environment, providerConfigKey: key, connectionId: id)
        }
        var oauth: PendingOAuth?
        if let state: String = row["oauth_state_hash"], let browser: String = row["oauth_browser_hash"], let key: String = row["oauth_provider_config_key"],
            let verifier: Data = row["oauth_verifier"], let started: Int64 = row["oauth_started_at"]
        {
            oauth = PendingOAuth(
                stateHash: state, browserHash: browser, providerConfigKey: key, sealedVerifier: Array(verifier), startedAt: Timestamp(microseconds: started))
        }
        return try ConnectSessionColumns.session(
            tokenHash: row["token_hash"], environment: environment, endUser: row["end_user"], tags: row["tags"],
            allowedIntegrations: row["allowed_integrations"], configDefaults: row["config_defaults"], reconnect: reconnect,
            createdAt: row["created_at"], expiresAt: row["expires_at"], usedAt: row["used_at"], oauth: oauth)
    }
}
