import Synchronization
import TributaryCore

/// One OAuth refresh under way for a connection, awaited by every caller that needs its result.
///
/// The refresh itself runs in a task of its own, on purpose: once a token endpoint has answered, the
/// rotated refresh token must be saved even if the run that asked is stopped. The *waiting* is
/// cancellable: a caller whose run is paused, reset, deleted or shut down stops waiting at once and
/// the refresh finishes without it. Completion and waiting meet under one lock, so no caller can
/// register after the result was handed out and wait forever.
final class RefreshFlight: Sendable {
    private struct State {
        var result: Result<JSONObject, any Error>? = nil
        var waiters: [UInt64: CheckedContinuation<JSONObject, any Error>] = [:]
        var nextWaiter: UInt64 = 0
    }
    private let state = Mutex(State())

    /// Hands `result` to every caller waiting and to every later one.
    func finish(_ result: Result<JSONObject, any Error>) {
        let waiters = state.withLock { state in
            state.result = result
            defer { state.waiters = [:] }
            return state.waiters
        }
        for waiter in waiters.values { waiter.resume(with: result) }
    }

    /// The refresh's result; throws `CancellationError` as soon as the calling task is cancelled.
    func value() async throws -> JSONObject {
        let id = state.withLock { state in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<JSONObject, any Error>) in
                let now: Result<JSONObject, any Error>? = state.withLock { state in
                    if let result = state.result { return result }
                    if Task.isCancelled { return .failure(CancellationError()) }
                    state.waiters[id] = continuation
                    return nil
                }
                if let now { continuation.resume(with: now) }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume(throwing: CancellationError())
        }
    }
}
