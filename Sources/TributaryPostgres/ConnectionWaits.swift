import Synchronization

/// The store calls waiting for a pooled connection, each with its deadline — watched by one loop
/// (``PostgresStore/run()``) instead of a timer per call: a call registers itself (a dictionary
/// insert under a lock), and leaves once connected or done. A call still waiting past its deadline
/// is cancelled and marked timed out.
final class ConnectionWaits: Sendable {
    /// One waiting call.
    final class Wait: Sendable {
        let deadline: ContinuousClock.Instant
        private let timedOutFlag = Mutex(false)
        private let cancel: @Sendable () -> Void

        init(deadline: ContinuousClock.Instant, cancel: @escaping @Sendable () -> Void) {
            self.deadline = deadline
            self.cancel = cancel
        }

        /// Whether the watch gave up on this call.
        var timedOut: Bool { timedOutFlag.withLock { $0 } }

        func expire() {
            timedOutFlag.withLock { $0 = true }
            cancel()
        }
    }

    private struct State {
        var next: UInt64 = 0
        var waits: [UInt64: Wait] = [:]
    }

    private let state = Mutex(State())

    /// Registers `wait`; the key to ``remove(_:)`` it with.
    func add(_ wait: Wait) -> UInt64 {
        state.withLock { state in
            state.next &+= 1
            state.waits[state.next] = wait
            return state.next
        }
    }

    func remove(_ key: UInt64) {
        _ = state.withLock { $0.waits.removeValue(forKey: key) }
    }

    /// Expires (and removes) every wait whose deadline is at or before `now`; how many.
    @discardableResult
    func expire(now: ContinuousClock.Instant) -> Int {
        let due = state.withLock { state in
            let keys = state.waits.filter { $0.value.deadline <= now }.map(\.key)
            return keys.compactMap { state.waits.removeValue(forKey: $0) }
        }
        // Cancelled outside the lock: a cancellation handler may run synchronously.
        for wait in due { wait.expire() }
        return due.count
    }

    /// How many calls wait now.
    var count: Int { state.withLock { $0.waits.count } }
}
