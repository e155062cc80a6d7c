import Synchronization

/// The runs and models whose page, tried as one plain `INSERT` (a first load, see
/// ``PostgresStore/saveRecords(_:model:checkpoint:for:)``), found an id taken: their later pages go
/// straight to the upsert. Without it, a dataset whose deleted records come back, or a listing
/// whose pages overlap, would have every page inserted, rolled back and saved again.
///
/// A hint held in memory only: bounded (forgotten wholesale past ``limit`` entries), lost with the
/// process, and never needed for correctness — a page tried again as new only costs its retry.
final class PlainInsertRefusals: Sendable {
    struct Key: Hashable {
        var runId: Int64
        var model: String
    }

    static let limit = 4_096
    private let keys = Mutex<Set<Key>>([])

    func record(runId: Int64, model: String) {
        keys.withLock { keys in
            if keys.count >= Self.limit { keys.removeAll(keepingCapacity: true) }
            keys.insert(Key(runId: runId, model: model))
        }
    }

    func contains(runId: Int64, model: String) -> Bool {
        keys.withLock { $0.contains(Key(runId: runId, model: model)) }
    }
}
