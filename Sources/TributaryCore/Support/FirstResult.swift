import Synchronization

/// The first of several results to arrive for one waiting caller, handed to it once; later ones are
/// dropped. It lets a caller stop waiting for work that is still under way (a timer or a
/// cancellation answers first) while the work, in a task the race owns, runs to its own end.
public final class FirstResult<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var early: Result<T, any Error>?
        var finished = false
        var cleanup: [@Sendable () -> Void] = []
    }
    private let state = Mutex(State())

    public init() {}

    /// Waits for the first result (one that arrived before the wait began included).
    public func value() async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let early = state.withLock { state -> Result<T, any Error>? in
                if let early = state.early { return early }
                state.continuation = continuation
                return nil
            }
            if let early { continuation.resume(with: early) }
        }
    }

    /// Hands `result` to the caller unless a result came first; runs the cleanups of the first one.
    public func finish(_ result: Result<T, any Error>) {
        let (continuation, cleanup) = state.withLock { state -> (CheckedContinuation<T, any Error>?, [@Sendable () -> Void]) in
            guard !state.finished else { return (nil, []) }
            state.finished = true
            if state.continuation == nil { state.early = result }
            defer { state.continuation = nil; state.cleanup = [] }
            return (state.continuation, state.cleanup)
        }
        continuation?.resume(with: result)
        for step in cleanup { step() }
    }

    /// Runs `cleanup` when the first result arrives (at once if it has).
    public func onFinish(_ cleanup: @escaping @Sendable () -> Void) {
        let already = state.withLock { state in
            if state.finished { return true }
            state.cleanup.append(cleanup)
            return false
        }
        if already { cleanup() }
    }
}
