import Dispatch
import TributaryCore

/// Runs tasks' jobs on the serial queue the store's writer connection runs on (its target queue),
/// so a task that mostly waits for the store's writes goes on right after each one, on the
/// writer's own thread, instead of waiting for a thread of the shared pool to wake up (see
/// ``SQLiteStore/writeExecutor``).
///
/// Jobs run in the order they are enqueued, between writes. A job must never make a synchronous
/// GRDB write — ``SQLiteStore/close()``, ``SQLiteStore/migrate()`` (its migrator writes
/// synchronously), or dropping the last reference to the store — since that is a `dispatch_sync`
/// onto a queue the job is running on, which libdispatch answers by stopping the process. Every
/// store call a sync function can reach is asynchronous.
final class WriterQueueExecutor: WriteExecutor, @unchecked Sendable {
    /// Serial; the writer connection's queue targets it. Immutable after init.
    let queue: DispatchQueue
    private let tenants = WriteExecutorTenants()

    func join() { tenants.join() }
    func leave() { tenants.leave() }
    var isAlone: Bool { tenants.isAlone }

    init(queue: DispatchQueue) {
        self.queue = queue
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        queue.async { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
