import Synchronization
import TributaryStore

/// What a run's last first-load page left behind, per run and model: the run row and the dataset
/// head as that page's write committed them. The run's next page of the same model is then one
/// autocommit statement (``PostgresStore/saveRecords(_:model:checkpoint:for:)``) that writes only if
/// the rows are still exactly so — the fence and the head's checks in SQL, instead of `BEGIN`, the
/// fence, the insert and `COMMIT` as four round trips.
///
/// A hint held in memory only, as ``RunModelMarks``: bounded (forgotten wholesale past
/// ``limit`` entries), lost with the process, and never trusted — the statement compares every
/// column it relies on, so a stale entry only costs one statement that writes nothing, and then
/// the attempt's later pages of that model take the transaction (``refuse(runId:token:model:)``).
/// The run's results are kept per run, so a run whose models' pages come in turn keeps its pages
/// of every model on the one statement.
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
        /// The dataset's head after the write (its `recordCount` unused: see ``recordCount``).
        var dataset: DatasetHead
        /// The dataset's live records after the write: what the run added.
        var recordCount: Int64
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

    private struct State {
        var entries: [Key: Entry] = [:]
        /// The run row's results as the attempt's last recorded write left them, whatever its
        /// model: a run whose models' pages come in turn expects the counts the other model's page
        /// wrote.
        var results: [Int64: (token: Int64, text: String)] = [:]

        mutating func makeRoom() {
            guard entries.count >= PlainInsertHeads.limit else { return }
            entries.removeAll(keepingCapacity: true)
            results.removeAll(keepingCapacity: true)
        }
    }

    static let limit = 4_096
    private let state = Mutex(State())

    /// What the next page of `model` by the attempt `token` of run `runId` may expect, if known.
    func expected(runId: Int64, token: Int64, model: String) -> Expected? {
        state.withLock { state in
            guard case .expected(var expected)? = state.entries[Key(runId: runId, model: model)], expected.token == token else { return nil }
            if let results = state.results[runId], results.token == token { expected.results = results.text }
            return expected
        }
    }

    /// Keeps what a page's write committed, unless this attempt's pages of `model` were refused;
    /// the run's results it left are what the attempt's next page of any model expects.
    func record(_ expected: Expected, model: String) {
        state.withLock { state in
            let key = Key(runId: expected.runId, model: model)
            state.results[expected.runId] = (expected.token, expected.results)
            if case .refused(let token)? = state.entries[key], token == expected.token { return }
            state.makeRoom()
            state.entries[key] = .expected(expected)
        }
    }

    /// The rows were not as expected (a lost lease, another writer in the dataset, the run's
    /// counts moved by a write this cache did not see): the later pages of `model` by the attempt
    /// `token` take the transaction (an attempt that takes the run over starts afresh).
    func refuse(runId: Int64, token: Int64, model: String) {
        state.withLock { state in
            state.makeRoom()
            state.entries[Key(runId: runId, model: model)] = .refused(token: token)
        }
    }
}
