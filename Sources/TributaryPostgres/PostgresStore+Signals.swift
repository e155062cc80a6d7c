import PostgresNIO
import TributaryCore
import TributaryStore

extension PostgresStore: QueueSignals {
    /// The `LISTEN`/`NOTIFY` channel of queue signals (per database: processes on other databases of
    /// the same server do not hear them).
    static let signalChannel = "tributary_queue"

    /// Queues `signal` in the transaction of `db`: PostgreSQL delivers it when (and only if) the
    /// transaction commits, so a listener that hears it finds the change.
    func notify(_ db: PostgresConnection, _ signal: QueueSignal) async throws {
        try await db.query("SELECT pg_notify(\(Self.signalChannel), \(signal.rawValue))", logger: logger)
    }

    /// How often the listening connection is checked with a query, and how long the query may take:
    /// a connection dropped without a reset (a NAT, a failover) would otherwise stay silent forever.
    static let listenCheck = (every: Duration.seconds(30), within: Duration.seconds(10))

    /// Listens on a connection of its own, outside the pool (it never takes one of the
    /// `database.max_connections` the process's calls share), named `tributary-queue-signals` in
    /// `pg_stat_activity`.
    public func watchSignals(onListening: @escaping @Sendable () -> Void, _ onSignal: @escaping @Sendable (QueueSignal) -> Void) async throws {
        var configuration = try url.connectionConfiguration()
        configuration.options.additionalStartupParameters = [("application_name", "tributary-queue-signals")]
        let connection = try await PostgresConnection.connect(configuration: configuration, id: 0, logger: logger)
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await connection.listen(on: Self.signalChannel) { notifications in
                        onListening()
                        for try await notification in notifications {
                            if let signal = QueueSignal(rawValue: notification.payload) { onSignal(signal) }
                        }
                    }
                }
                group.addTask { try await self.checkListening(connection) }
                // Whichever ends first (cancellation, a lost connection, a check that failed) ends both.
                defer { group.cancelAll() }
                try await group.next()
            }
        } catch {
            try? await connection.close()
            throw error
        }
        try? await connection.close()
    }

    /// Every ``listenCheck`` period, a `SELECT 1` on the listening connection; one that does not
    /// answer in time closes the connection (ending the listening too) and throws.
    private func checkListening(_ connection: PostgresConnection) async throws {
        while true {
            try await Task.sleep(for: Self.listenCheck.every)
            let answered = try await withThrowingTaskGroup(of: Bool.self) { group in
                group.addTask {
                    try await connection.query("SELECT 1", logger: self.logger)
                    return true
                }
                group.addTask {
                    try await Task.sleep(for: Self.listenCheck.within)
                    return false
                }
                defer { group.cancelAll() }
                let first = try await group.next() ?? false
                // A query stuck on a dead connection ends when the connection is closed.
                if !first { try? await connection.close() }
                return first
            }
            guard answered else {
                throw TributaryError(.storeUnavailable, "The queue signal connection did not answer within \(Self.listenCheck.within).")
            }
        }
    }
}
