import Synchronization
import TributaryStore

/// What a run's last first-load page left behind, per run and model: the run row and the dataset
/// head as that page's write committed them. The run's next page of the same model is then one
/// autocommit statement (``PostgresStore/saveRecords(_:model:checkpoint:for:)``) that writes only if
/// the rows are still exactly so — the fence and the head's checks in SQL, instead of `BEGIN`, the
/// fence, the insert and `COMMIT` as four round trips.
///
/// A hint held in memory only, as ``PlainInsertRefusals``: bounded (forgotten wholesale past
/// ``limit`` entries), lost with the process, and never trusted — the statement compares every
/// column it relies on, so a stale entry only costs one statement that writes nothing, and then
/// the attempt's later pages of that model take the transaction (``refuse(runId:token:model:)``).
final class PlainInsertHeads: Sendable {
    /// The rows a first-load page's statement expects: the run (locked, fenced) and the dataset.
    struct Expected: Sendable, Hashable {
        var runId: Int64
        /// The attempt whose lease wrote them.
        var token: Int64
        var variantPK: Int64
        /// The run's kind (`runs.kind`): never a webhook execution's (their seen generation is the
        /// variant's open window, read per write).
        var kind: String
        /// The run's deletion generation (`runs.deletion_generation`): its records' seen generation.
        var runGeneration: Int64?
        /// `runs.results` as the write left it.
        var results: String
        /// The dataset's head after the write; its record count equals what the run added.
        var dataset: DatasetHead
    }

    private struct Key: Hashable {
        var runId: Int64
        var model: String
    }

    private enum Entry {
        case expected(Expected)
        /// A statement found the rows changed: this attempt's pages of this model take the transaction.
        case refused(token: Int64)
    }

    static let limit = 4_096
    private let entries = Mutex<[Key: Entry]>([:])

    /// What the next page of `model` by the attempt `token` of run `runId` may expect, if known.
    func expected(runId: Int64, token: Int64, model: String) -> Expected? {
        entries.withLock { entries in
            guard case .expected(let expected)? = entries[Key(runId: runId, model: model)], expected.token == token else { return nil }
            return expected
        }
    }

    /// Keeps what a page's write committed, unless this attempt's pages of `model` were refused.
    func record(_ expected: Expected, model: String) {
        entries.withLock { entries in
            let key = Key(runId: expected.runId, model: model)
            if case .refused(let token)? = entries[key], token == expected.token { return }
            if entries.count >= Self.limit { entries.removeAll(keepingCapacity: true) }
            entries[key] = .expected(expected)
        }
    }

    /// The rows were not as expected (another model's write, a lost lease, another writer): the
    /// later pages of `model` by the attempt `token` take the transaction (an attempt that takes
    /// the run over starts afresh).
    func refuse(runId: Int64, token: Int64, model: String) {
        entries.withLock { entries in
            if entries.count >= Self.limit { entries.removeAll(keepingCapacity: true) }
            entries[Key(runId: runId, model: model)] = .refused(token: token)
        }
    }
}
