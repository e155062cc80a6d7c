import Synchronization
import TributaryCore
import TributaryStore

/// What each dataset's records were saved with by this process's last run of it, as their content
/// hashes (``RecordFingerprints``, 8 bytes a record; a record's hash covers its id), and what the
/// runs under way save: so that a run's page looked up alone can send with its lookup the payloads
/// of the records likely to need a write — those whose hash the dataset's last run did not save —
/// and a changed page of a full refresh is saved in one call (`tributary_save_guessed`, migration
/// `v15-unsent-payloads`) without every page sending all its payloads (docs/BENCHMARKS.md,
/// twenty-fourth round).
///
/// A hint held in memory only, as ``RunModelMarks``: lost with the process, never needed for
/// correctness — the lookup's check decides what is written, and a record to write whose payload
/// was not sent goes to the page's second call. It is kept within ``limit`` hashes (the least
/// recently used dataset's set or run's recording dropped first — a run whose lease was lost is
/// never finished here, and ages out so), within ``datasetLimit`` datasets and ``runLimit``
/// recordings. The limit counts the hashes; each set's index adds half a byte to a byte a record,
/// and a run's end briefly holds its recording and the set made from it beside the old one.
final class StoredHashes: Sendable {
    /// The most hashes held at once (16 MiB): a dataset of a million records, and its next run's
    /// being recorded.
    static let limit = 2 << 20
    /// The most runs being recorded at once.
    static let runLimit = 256
    /// The most datasets whose sets are kept.
    static let datasetLimit = 16_384

    /// A run's attempt and model.
    private struct RunKey: Hashable {
        var lease: RunLease
        var model: String
    }

    /// An attempt's saved records of one model, as they come.
    private struct Recording {
        var dataset: Int64
        var fingerprints: [UInt64] = []
        /// Dropped (past the limit, or for another run's pages): nothing more is recorded for the
        /// attempt, and its end leaves the dataset's set as it was.
        var dropped = false
        var used: UInt64
    }

    private struct Published {
        var fingerprints: RecordFingerprints
        var used: UInt64
    }

    private struct State {
        var published: [Int64: Published] = [:]
        var recording: [RunKey: Recording] = [:]
        /// Hashes held, published and recorded.
        var held = 0
        /// A counter standing for the time of each use.
        var clock: UInt64 = 0

        mutating func tick() -> UInt64 {
            clock += 1
            return clock
        }
    }

    let limit: Int
    private let state = Mutex(State())

    init(limit: Int = StoredHashes.limit) {
        self.limit = limit
    }

    /// Forgets every dataset's set and every run's recording: the store is then as a process that
    /// saw none of their runs (tests take the paths such a process takes).
    func removeAll() {
        state.withLock { $0 = State() }
    }

    /// How many hashes are held (tests check the limit).
    var held: Int { state.withLock { $0.held } }

    /// The indices of `records` likely to need a write in the dataset the attempt's last page of
    /// `model` was saved into: those whose hash the dataset's last run did not leave. Nil when that
    /// is not known (the attempt's first page, or no run of the dataset was recorded).
    func likelyWrites(_ records: [PreparedRecord], model: String, for lease: RunLease) -> [Int]? {
        let known: RecordFingerprints? = state.withLock { state in
            guard let dataset = state.recording[RunKey(lease: lease, model: model)]?.dataset, var set = state.published[dataset] else { return nil }
            set.used = state.tick()
            state.published[dataset] = set
            return set.fingerprints
        }
        guard let known else { return nil }
        return known.missing(records.map(\.hash))
    }

    /// Records a page the attempt saved into `dataset`: after it, each record's row holds its hash.
    func record(_ records: [PreparedRecord], model: String, for lease: RunLease, dataset: Int64) {
        let fingerprints = records.map(\.hash)
        let key = RunKey(lease: lease, model: model)
        state.withLock { state in
            let now = state.tick()
            var recording = state.recording.removeValue(forKey: key) ?? Recording(dataset: dataset, used: now)
            defer { state.recording[key] = recording }
            recording.used = now
            guard !recording.dropped, recording.dataset == dataset else {
                // A run's model saved into two datasets (its variant deleted and made again): not recorded.
                Self.drop(&recording, from: &state)
                return
            }
            // Past the run limit the least recently used attempt is forgotten: its key goes, and
            // should it save again, what it saves from then on is recorded as a run of its own
            // (a worse guess for its dataset's next run, never a wrong write).
            if state.recording.count >= Self.runLimit, let (oldest, dropped) = state.recording.min(by: { $0.value.used < $1.value.used }) {
                state.held -= dropped.fingerprints.count
                state.recording[oldest] = nil
            }
            while state.held + fingerprints.count > limit {
                guard Self.dropOldest(from: &state) else {
                    Self.drop(&recording, from: &state)
                    return
                }
            }
            recording.fingerprints.append(contentsOf: fingerprints)
            state.held += fingerprints.count
        }
    }

    /// The attempt ended, whatever its outcome: each model's saved records become what its dataset
    /// is known to hold (``RecordFingerprints/afterRun(_:run:)``) — an attempt that failed or was
    /// cancelled keeps what it saved too; a dropped recording leaves the dataset's set as it was.
    func finish(_ lease: RunLease) {
        let ended: [(dataset: Int64, fingerprints: [UInt64])] = state.withLock { state in
            let keys = state.recording.keys.filter { $0.lease == lease }
            return keys.compactMap { key in
                guard let recording = state.recording.removeValue(forKey: key) else { return nil }
                state.held -= recording.fingerprints.count
                return recording.dropped ? nil : (recording.dataset, recording.fingerprints)
            }
        }
        for (dataset, fingerprints) in ended {
            // Sorted outside the lock (~50 ms for a million, measured).
            let run = RecordFingerprints(unsorted: fingerprints)
            let previous = state.withLock { $0.published[dataset]?.fingerprints }
            let next = RecordFingerprints.afterRun(previous, run: run)
            state.withLock { state in
                Self.removeSet(of: dataset, from: &state)
                if state.published.count >= Self.datasetLimit, let oldest = Self.oldestSet(in: state) { Self.removeSet(of: oldest.key, from: &state) }
                while state.held + next.count > limit {
                    guard Self.dropOldest(from: &state) else { return }
                }
                state.published[dataset] = Published(fingerprints: next, used: state.tick())
                state.held += next.count
            }
        }
    }

    /// Forgets what a recording holds, and records nothing more for its attempt.
    private static func drop(_ recording: inout Recording, from state: inout State) {
        state.held -= recording.fingerprints.count
        recording.fingerprints = []
        recording.dropped = true
    }

    /// Drops the least recently used of the datasets' sets and the recordings that hold hashes (a
    /// recording is marked dropped, its key kept). Whether there was one.
    private static func dropOldest(from state: inout State) -> Bool {
        let set = oldestSet(in: state)
        let recording = state.recording.lazy.filter { !$0.value.fingerprints.isEmpty }.min { $0.value.used < $1.value.used }
        if let set, recording.map({ set.value.used < $0.value.used }) ?? true {
            removeSet(of: set.key, from: &state)
            return true
        }
        guard let recording, var dropped = state.recording[recording.key] else { return false }
        drop(&dropped, from: &state)
        state.recording[recording.key] = dropped
        return true
    }

    /// The least recently used dataset's set.
    private static func oldestSet(in state: State) -> (key: Int64, value: Published)? {
        state.published.min { $0.value.used < $1.value.used }
    }

    /// Forgets a dataset's set, if it has one.
    private static func removeSet(of dataset: Int64, from state: inout State) {
        if let set = state.published.removeValue(forKey: dataset) { state.held -= set.fingerprints.count }
    }
}
