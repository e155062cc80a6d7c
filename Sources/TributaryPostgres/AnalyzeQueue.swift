import Synchronization
import TributaryStore

/// The datasets whose partitions a store is to analyse next. A write that commits on its own and
/// takes its dataset past a threshold queues the dataset and returns; the store's
/// ``PostgresStore/run()`` analyses the queued datasets one at a time, each on a pooled connection
/// leased for it, so that the `ANALYZE` (~15–80 ms) runs beside the writer's next pages instead of
/// inside the page that crossed the threshold (docs/BENCHMARKS.md, twenty-first round).
///
/// A dataset queued again before its turn is analysed once. Past ``limit`` datasets waiting, more
/// are not queued: statistics are a hint — autovacuum analyses the partition later, and the
/// dataset's next doubling queues it again.
final class AnalyzeQueue: Sendable {
    /// The most datasets waiting at once.
    static let limit = 256

    private let waiting = Mutex<Set<Int64>>([])
    private let stream: AsyncStream<DatasetHead>
    private let continuation: AsyncStream<DatasetHead>.Continuation

    init() {
        (stream, continuation) = AsyncStream.makeStream()
    }

    /// Queues `dataset` unless it is waiting already, ``limit`` datasets are, or the queue was drained
    /// for the last time (its draining task was cancelled); whether it was queued.
    @discardableResult
    func enqueue(_ dataset: DatasetHead) -> Bool {
        guard waiting.withLock({ ids in ids.count < Self.limit && ids.insert(dataset.id).inserted }) else { return false }
        if case .terminated = continuation.yield(dataset) {
            waiting.withLock { _ = $0.remove(dataset.id) }
            return false
        }
        return true
    }

    /// How many datasets are waiting.
    var count: Int { waiting.withLock(\.count) }

    /// Hands each queued dataset to `analyse`, one at a time, in the order they were queued, until
    /// the calling task is cancelled. A dataset queued while `analyse` runs for it is analysed again
    /// after it (its rows written since). Only one task may drain a queue, once: cancelling it ends
    /// the queue, and datasets still waiting are dropped.
    func drain(_ analyse: (DatasetHead) async -> Void) async {
        defer {
            // However the loop ended (cancelled while waiting, or between two datasets), the queue
            // ends with it: later datasets are refused, and those still waiting are forgotten.
            continuation.finish()
            waiting.withLock { $0.removeAll() }
        }
        for await dataset in stream {
            if Task.isCancelled { return }
            waiting.withLock { _ = $0.remove(dataset.id) }
            await analyse(dataset)
        }
    }
}
