import Synchronization

/// Stops one executing run's function from outside — a cancel from this process, or a shutdown —
/// without cancelling the task that records its outcome: the executor still finishes (or re-queues)
/// the run after its function stopped. (Cancelling the executor's own task — the process is going
/// down hard — stops everything; the run's lease then runs out and another worker resumes it.)
public final class RunStop: Sendable {
    private struct State {
        var task: Task<Void, any Error>?
        var stopped = false
    }
    private let state = Mutex(State())

    public init() {}

    /// Cancels the function (now, or as soon as it starts).
    public func stop() {
        let task = state.withLock { state -> Task<Void, any Error>? in
            state.stopped = true
            return state.task
        }
        task?.cancel()
    }

    /// Whether ``stop()`` was called.
    public var isStopped: Bool { state.withLock { $0.stopped } }

    /// The task running the function; cancelled at once if the run was stopped already.
    func attach(_ task: Task<Void, any Error>) {
        let cancelNow = state.withLock { state -> Bool in
            state.task = task
            return state.stopped
        }
        if cancelNow { task.cancel() }
    }
}
