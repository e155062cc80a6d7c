import Synchronization

/// Cuts one waiter's sleep short: ``signal()`` ends the current ``wait(upTo:)``, or the next one at
/// once if nobody waits (one pending signal is kept; several signals before a wait count as one).
///
/// For a loop that sleeps between passes (the ``Scheduler``) and must notice work that appeared in
/// this process meanwhile, without polling faster. One waiter at a time.
final class Wakeup: Sendable {
    private struct State {
        var pending = false
        var waiter: CheckedContinuation<Bool, Never>?
    }

    private let state = Mutex(State())

    init() {}

    /// Ends the current wait, or the next one if nobody waits now.
    func signal() {
        let waiter = state.withLock { state -> CheckedContinuation<Bool, Never>? in
            guard let waiter = state.waiter else {
                state.pending = true
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume(returning: true)
    }

    /// Waits until ``signal()`` (or a signal already pending), `timeout`, or cancellation — whichever
    /// comes first.
    /// - Returns: whether a signal ended the wait.
    @discardableResult
    func wait(upTo timeout: Duration) async -> Bool {
        if takePending() { return true }
        guard timeout > .zero else { return false }
        return await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            group.addTask { await self.signalled() }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }

    /// Whether a wait is under way (for tests).
    var isWaiting: Bool { state.withLock { $0.waiter != nil } }

    private func takePending() -> Bool {
        state.withLock { state in
            defer { state.pending = false }
            return state.pending
        }
    }

    /// Returns on a signal (true), or on cancellation (false); a signal that comes after the
    /// cancellation stays pending for the next wait.
    private func signalled() async -> Bool {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                var displaced: CheckedContinuation<Bool, Never>?
                // Decided under the lock `onCancel` takes: a cancellation either came before (and is
                // seen here) or finds the waiter stored.
                let answer: Bool? = state.withLock { state in
                    if state.pending {
                        state.pending = false
                        return true
                    }
                    if Task.isCancelled { return false }
                    // One waiter at a time: one that was already waiting (a misuse) is let go
                    // rather than left hanging.
                    displaced = state.waiter
                    state.waiter = continuation
                    return nil
                }
                displaced?.resume(returning: false)
                if let answer { continuation.resume(returning: answer) }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Bool, Never>? in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume(returning: false)
        }
    }
}
