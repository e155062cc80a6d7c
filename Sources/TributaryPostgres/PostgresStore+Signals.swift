import PostgresNIO
import TributaryCore
import TributaryStore

extension PostgresStore: QueueSignals {
    /// The `LISTEN`/`NOTIFY` channel of queue signals (per database: processes on other databases of
    /// the same server do not hear them).
    static let signalChannel = "tributary_queue"

    public func signal(_ signal: QueueSignal) async {
        do {
            try await read { db in
                try await db.query("SELECT pg_notify(\(Self.signalChannel), \(signal.rawValue))", logger: self.logger)
            }
        } catch {
            logger.debug("queue signal not sent; other processes find the change at their next poll", metadata: ["error": "\(error)"])
        }
    }

    /// Listens on a connection of its own, outside the pool, so it never takes one of the
    /// `database.max_connections` the process's calls share.
    public func watchSignals(_ onSignal: @escaping @Sendable (QueueSignal) -> Void) async throws {
        let connection = try await PostgresConnection.connect(configuration: try url.connectionConfiguration(), id: 0, logger: logger)
        do {
            try await connection.listen(on: Self.signalChannel) { notifications in
                for try await notification in notifications {
                    if let signal = QueueSignal(rawValue: notification.payload) { onSignal(signal) }
                }
            }
        } catch {
            try? await connection.close()
            throw error
        }
        try? await connection.close()
    }
}
