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

    /// Listens on a connection of its own, outside the pool (it never takes one of the
    /// `database.max_connections` the process's calls share), named `tributary-queue-signals` in
    /// `pg_stat_activity`. Every `listenCheck.every` a `SELECT 1` must answer within
    /// `listenCheck.within` (30 s and 10 s): a connection dropped without a reset (a NAT, a
    /// failover) would otherwise stay silent for good.
    public func watchSignals(onListening: @escaping @Sendable () -> Void, _ onSignal: @escaping @Sendable (QueueSignal) -> Void) async throws {
        var configuration = try url.connectionConfiguration()
        configuration.options.additionalStartupParameters = [("application_name", "tributary-queue-signals")]
        let connection = try await PostgresConnection.connect(configuration: configuration, id: 0, logger: logger)
        // The check's own error, when it closed the connection: the listening then fails too, with a
        // vaguer one ("connection closed").
        let checkFailure = LockedValue<(any Error)?>(nil)
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
                group.addTask {
                    do {
                        try await self.checkListening(connection)
                    } catch {
                        if !(error is CancellationError) { checkFailure.withLock { $0 = error } }
                        throw error
                    }
                }
                // Whichever ends first (cancellation, a lost connection, a check that failed) ends both.
                defer { group.cancelAll() }
                try await group.next()
            }
        } catch {
            try? await connection.close()
            throw checkFailure.withLock { $0 } ?? error
        }
        try? await connection.close()
    }

    /// Every ``listenCheck`` period, a `SELECT 1` on the listening connection. One that does not
    /// answer in time, or is cut short by cancellation, closes the connection first: postgres-nio's
    /// query does not end on cancellation, and a query stuck on a dead connection would otherwise
    /// hold up the shutdown until TCP gives up.
    private func checkListening(_ connection: PostgresConnection) async throws {
        let (every, within) = listenCheck
        while true {
            try await Task.sleep(for: every)
            let answered = try await withThrowingTaskGroup(of: Bool.self) { group in
                group.addTask {
                    try await connection.query("SELECT 1", logger: self.logger)
                    return true
                }
                group.addTask {
                    try await Task.sleep(for: within)
                    return false
                }
                defer { group.cancelAll() }
                do {
                    let first = try await group.next() ?? false
                    if !first { try? await connection.close() }
                    return first
                } catch {
                    try? await connection.close()
                    throw error
                }
            }
            guard answered else {
                throw TributaryError(.storeUnavailable, "The queue signal connection did not answer within \(within).")
            }
        }
    }
}
