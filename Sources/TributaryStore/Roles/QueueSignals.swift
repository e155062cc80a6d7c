import TributaryCore

/// What a store tells every process watching it when a change it committed queued runs or made
/// variants due, so that their workers and schedulers act at once instead of at their next poll
/// (`scheduler.tick_seconds`).
public enum QueueSignal: String, Sendable, CaseIterable {
    /// Runs were queued (a trigger, a reset): workers should claim.
    case runsQueued = "runs"
    /// Variants became due (created, resumed, a new connection's base variants): schedulers should pass.
    case variantsDue = "variants"
}

/// Cross-process wake-ups for the run queue (PostgreSQL: `NOTIFY` in the transactions of
/// `enqueueRuns`, `resetVariants` that queue runs, `createVariant`, `setPaused` that resumes, and the
/// connection imports that create base variants; heard with `LISTEN`). The signals of a scheduler's
/// own passes are not sent: its worker is woken in its process. Best effort: a lost signal costs one
/// poll interval, never a run — the polls stay the guarantee. A store shared by one machine's
/// processes only (SQLite) does not offer it.
public protocol QueueSignals: Sendable {
    /// Listens on a connection of its own and calls `onListening` each time it starts listening
    /// (signals sent before may have been missed) and `onSignal` for each signal, until cancelled
    /// (then it returns); throws when the connection fails, is lost, or stops answering.
    func watchSignals(onListening: @escaping @Sendable () -> Void, _ onSignal: @escaping @Sendable (QueueSignal) -> Void) async throws
}
