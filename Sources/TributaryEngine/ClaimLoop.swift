import ServiceLifecycle
import Synchronization

/// The loop of a worker that claims queued items from the store and runs them (``ActionWorker``,
/// ``ProviderWebhookWorker``). Woken by ``wake()`` or every `poll`, it claims items while fewer than
/// `maxConcurrent` run in this process, and runs each in a child task; an item that finishes frees
/// its slot and looks for the next.
///
/// At a graceful shutdown it claims nothing more — a claim under way is cancelled, so a database
/// that does not answer holds the shutdown only as long as its call ignores the cancellation —
/// gives the running items `drain` to finish, then ends them as the worker asks (``AfterDrain``)
/// and returns once they have.
final class ClaimLoop: Sendable {
    /// How the items still running when the drain time is over are ended.
    enum AfterDrain: Sendable {
        /// Their tasks are cancelled.
        case cancel
        /// `stop` is called (the items end themselves; their tasks are not cancelled).
        case call(_ stop: @Sendable () -> Void)
    }

    private let maxConcurrent: Int
    private let poll: Duration
    private let drain: Duration
    private let wakeups: AsyncStream<Void>
    private let wakeContinuation: AsyncStream<Void>.Continuation
    private let slots = Mutex((used: 0, accepting: true))

    /// - Parameters:
    ///   - maxConcurrent: the most items running at once in this process (at least one).
    ///   - poll: how often the store is asked when nothing woke the loop.
    ///   - drain: how long running items may take to finish at a graceful shutdown.
    init(maxConcurrent: Int, poll: Duration, drain: Duration) {
        self.maxConcurrent = max(1, maxConcurrent)
        self.poll = poll
        self.drain = drain
        (wakeups, wakeContinuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Looks for items now (after this process queued one).
    func wake() {
        wakeContinuation.yield()
    }

    /// Claims and runs items until a graceful shutdown (or cancellation), then drains as above.
    /// `claim` answers the next item or nil when none is waiting; an error it throws goes to
    /// `claimFailed` (a cancellation does not), and the loop waits for its next wake-up.
    func run<Item: Sendable>(
        claim: @escaping @Sendable () async throws -> Item?,
        claimFailed: @escaping @Sendable (any Error) -> Void,
        execute: @escaping @Sendable (Item) async -> Void,
        afterDrain: AfterDrain
    ) async {
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.pollUntilShutdown() }
                for await _ in wakeups {
                    while let item = await claimNext(claim, claimFailed) {
                        group.addTask {
                            await execute(item)
                            self.slots.withLock { $0.used -= 1 }
                            self.wake()
                        }
                    }
                }
                let deadline = ContinuousClock.now + drain
                while slots.withLock({ $0.used > 0 }), ContinuousClock.now < deadline, !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(20))
                }
                switch afterDrain {
                case .cancel: group.cancelAll()
                case .call(let stop): stop()
                }
            }
        } onGracefulShutdown: {
            self.slots.withLock { $0.accepting = false }
            self.wakeContinuation.finish()
        }
    }

    private func pollUntilShutdown() async {
        while slots.withLock({ $0.accepting }), !Task.isCancelled {
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: self.poll) }
            wakeContinuation.yield()
        }
    }

    /// The next item, in a slot reserved for it; nil (and no slot) when the slots are full, the
    /// loop is shutting down, nothing is waiting, or the claim failed.
    private func claimNext<Item: Sendable>(
        _ claim: @escaping @Sendable () async throws -> Item?, _ claimFailed: @Sendable (any Error) -> Void
    ) async -> Item? {
        let reserved = slots.withLock { state -> Bool in
            guard state.accepting, state.used < maxConcurrent else { return false }
            state.used += 1
            return true
        }
        guard reserved else { return nil }
        do {
            if let item = try await cancelWhenGracefulShutdown(claim) { return item }
        } catch is CancellationError {
        } catch {
            claimFailed(error)
        }
        slots.withLock { $0.used -= 1 }
        return nil
    }
}
