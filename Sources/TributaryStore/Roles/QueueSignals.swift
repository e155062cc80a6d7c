import TributaryCore

/// What one process tells the others through the store after it queued runs or made variants due,
/// so that their workers and schedulers act at once instead of at their next poll
/// (`scheduler.tick_seconds`).
public enum QueueSignal: String, Sendable, CaseIterable {
    /// Runs were queued (a trigger, a reset): workers should claim.
    case runsQueued = "runs"
    /// Variants became due (created, resumed, a connection's base variants): schedulers should pass.
    case variantsDue = "variants"
}

/// Cross-process wake-ups for the run queue (PostgreSQL: `LISTEN`/`NOTIFY`). Best effort: a lost
/// signal costs one poll interval, never a run — the polls stay the guarantee. A store that is
/// shared by one machine's processes only (SQLite) does not offer it.
public protocol QueueSignals: Sendable {
    /// Tells every watching process (this one included). Never throws: a signal that could not be
    /// sent is logged and dropped.
    func signal(_ signal: QueueSignal) async
    /// Calls `onSignal` for each signal any process sends, over a connection of its own, until
    /// cancelled (then it returns); throws when the connection fails or is lost.
    func watchSignals(_ onSignal: @escaping @Sendable (QueueSignal) -> Void) async throws
}
