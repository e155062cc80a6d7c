import Synchronization

/// Where one store call stands between asking for a pooled connection and running on it: its task
/// may be stopped (cancelled) only while it waits for the connection, never once it has it — a
/// statement cut off in the middle could leave the connection in an open transaction. Stopping and
/// connecting decide under one lock, so exactly one of them wins.
final class ConnectionGate: Sendable {
    private struct State {
        var connected = false
        var stopped = false
        var work: Task<Void, Never>?
    }

    private let state = Mutex(State())

    /// The call's task, for ``stop()`` to cancel: cancelled at once if the call was stopped already.
    func hold(_ work: Task<Void, Never>) {
        let stopNow = state.withLock { state in
            if state.stopped { return true }
            if !state.connected { state.work = work }
            return false
        }
        if stopNow { work.cancel() }
    }

    /// Called with the connection, before anything runs on it: whether the call goes on (false once
    /// it was stopped).
    func connect() -> Bool {
        state.withLock { state in
            guard !state.stopped else { return false }
            state.connected = true
            state.work = nil
            return true
        }
    }

    /// Stops the call if it has no connection yet (cancels its task, ending its wait); does nothing
    /// once it has one.
    func stop() {
        let work = state.withLock { state -> Task<Void, Never>? in
            guard !state.connected, !state.stopped else { return nil }
            state.stopped = true
            defer { state.work = nil }
            return state.work
        }
        // Cancelled outside the lock: a cancellation handler may run synchronously.
        work?.cancel()
    }

    /// Whether the call was stopped before it had a connection.
    var stoppedWaiting: Bool { state.withLock { $0.stopped } }
}
