import Synchronization

/// A set of (run, model) pairs a write path marks to steer the run's later pages of that model:
/// the runs whose first-load insert found an id taken, whose later pages go straight to the
/// upsert (``PostgresStore/plainInsertRefusals``); the runs whose last page had most of its
/// records to write, whose next page sends its payloads at once (``PostgresStore/writingPages``);
/// the runs whose last page had some records to write, whose next page looked up alone sends its
/// payloads with the lookup (``PostgresStore/changingPages``);
/// the runs whose last page needed no write or was aligned with its rows, whose next page is looked
/// up alone (``PostgresStore/lookingUpAlone``); the runs whose pages the check could not align,
/// once or twice in a row (``PostgresStore/missedChecks``, ``PostgresStore/unorderedPages``).
///
/// A hint held in memory only: bounded (forgotten wholesale past ``limit`` entries), lost with the
/// process, and never needed for correctness — a page sent down the other path only costs a
/// statement or a retry.
final class RunModelMarks: Sendable {
    struct Key: Hashable {
        var runId: Int64
        var model: String
    }

    static let limit = 4_096
    private let keys = Mutex<Set<Key>>([])

    func mark(runId: Int64, model: String) {
        keys.withLock { keys in
            if keys.count >= Self.limit { keys.removeAll(keepingCapacity: true) }
            keys.insert(Key(runId: runId, model: model))
        }
    }

    func unmark(runId: Int64, model: String) {
        _ = keys.withLock { $0.remove(Key(runId: runId, model: model)) }
    }

    func contains(runId: Int64, model: String) -> Bool {
        keys.withLock { $0.contains(Key(runId: runId, model: model)) }
    }
}
