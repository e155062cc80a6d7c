import Synchronization

/// A task executor on a store's writer thread (``SyncContext/writeExecutor``), shared by every
/// writing side that may use it. A writing side that does little but save pages goes on the moment
/// each write ends if it runs there — but its own work (taking pages, building the write) then holds
/// up every other write, which only pays while it is the one writing side: with several, the writer
/// is busy with their writes anyway (measured in docs/BENCHMARKS.md, twelfth round). So a writing
/// side ``join()``s while it runs, and runs on the executor only while ``isAlone``.
public protocol WriteExecutor: TaskExecutor {
    /// A writing side starts (call ``leave()`` when it ends, once; unbalanced calls only cost speed:
    /// a count below one reads as alone).
    func join()
    /// A writing side that joined ends.
    func leave()
    /// Whether at most one writing side has joined.
    var isAlone: Bool { get }
}

/// The count of writing sides a ``WriteExecutor`` keeps.
public struct WriteExecutorTenants: ~Copyable, Sendable {
    private let count = Atomic<Int>(0)

    public init() {}

    public func join() { count.add(1, ordering: .relaxed) }
    public func leave() { count.subtract(1, ordering: .relaxed) }
    public var isAlone: Bool { count.load(ordering: .relaxed) <= 1 }
}
