import GRDB
import GRDBSQLite
import Synchronization

/// Checkpoints the store's write-ahead log on a connection of its own, beside the writer.
///
/// SQLite's automatic checkpoint (every 1,000 WAL pages) runs on the committing connection, so the
/// single writer spends part of every bulk load copying the log into the database file — about an
/// eighth of a million-record sync's run time here. Instead, the writer's WAL hook (called after each
/// commit with the log's size) hands the copy to this checkpointer, which runs a `PASSIVE` checkpoint
/// on its own serial queue (another core) while the writer goes on. `PASSIVE` never blocks the writer
/// or a reader; the writer restarts the log from its beginning at its next transaction once
/// everything is copied, as it does after its own checkpoints.
///
/// Should the checkpointer fall behind (or fail), the writer checkpoints itself once the log reaches
/// ``writerCheckpointPages`` while a checkpoint is under way, or twice that in any case, as SQLite's
/// own hook would: the log stays bounded. A log past the first bound with no checkpoint under way —
/// one transaction larger than the bound — goes to the checkpointer like any other
/// (``leavesToCheckpointer(pages:startingOne:)``).
final class WALCheckpointer: Sendable {
    /// The log size (pages) from which a commit asks for a checkpoint: SQLite's default. Pages are
    /// ``SQLiteStore/pageSize`` in a file this version created (8 MiB here), 4 KiB in older files.
    static let checkpointPages: Int32 = 1000
    /// The log size (pages) from which the writer checkpoints itself (32 MiB, or 16 MiB in a file
    /// with 4 KiB pages).
    static let writerCheckpointPages: Int32 = 4096
    /// The size (bytes) a log file larger than this is cut back to when the log restarts (SQLite's
    /// `journal_size_limit`). It is above the log's size in normal operation — up to twice
    /// ``writerCheckpointPages`` plus a commit, 65–73 MiB measured in a million-record sync — so the
    /// file is written over from its start, not cut back and grown again at every restart: a
    /// file grown again costs the kernel a new block and page for every log page (a 32 MiB limit
    /// made the incremental run of docs/BENCHMARKS.md 10–15% slower). Only a log grown past it —
    /// by one very large transaction, or while a long read (a backup, a long feed read) kept it
    /// from restarting under writes — is cut back, to this size.
    static let logFileLimit = 128 << 20

    private let connection: DatabaseQueue
    private let pending = Atomic<Bool>(false)
    private let finished = Atomic<Int>(0)
    private let writerRuns = Atomic<Int>(0)

    /// How many checkpoints this checkpointer has run.
    var checkpointsRun: Int { finished.load(ordering: .relaxed) }

    /// Whether a checkpoint is under way.
    var isCheckpointing: Bool { pending.load(ordering: .acquiring) }

    /// How many times the writer checkpointed itself, the log having outgrown the checkpointer.
    var writerCheckpoints: Int { writerRuns.load(ordering: .relaxed) }

    /// Opens the checkpointer's connection to the database at `path` (already in WAL mode).
    init(path: String) throws {
        var configuration = Configuration()
        configuration.label = "tributary.wal-checkpointer"
        configuration.busyMode = .timeout(30)
        connection = try DatabaseQueue(path: path, configuration: configuration)
    }

    /// Closes the connection, after the checkpoint under way (if any). Unregister first.
    func close() throws {
        try connection.close()
    }

    /// Waits (on the writer) until the checkpoint under way, if any, has ended: a checkpoint of the
    /// writer's own would otherwise find the checkpoint lock taken and do nothing.
    fileprivate func waitForCheckpoint() {
        connection.inDatabase { _ in }
    }

    fileprivate func countWriterCheckpoint() { writerRuns.add(1, ordering: .relaxed) }

    /// Whether a commit that left the log at `pages` (at least ``checkpointPages``) is left to the
    /// checkpointer, the writer going on: below ``writerCheckpointPages`` always (a checkpoint is
    /// started unless one is under way); up to twice that only when `startingOne` starts one now —
    /// one large commit grew the log, the checkpointer is not behind; past twice that never (the
    /// writer checkpoints itself, so the log stays within twice the bound plus one commit however
    /// its commits and the checkpoints interleave). `startingOne` is called at most once.
    static func leavesToCheckpointer(pages: Int32, startingOne: () -> Bool) -> Bool {
        if pages < writerCheckpointPages {
            _ = startingOne()
            return true
        }
        return pages < 2 * writerCheckpointPages && startingOne()
    }

    /// Starts a checkpoint unless one is under way (the hook calls it once the log is due); true
    /// when it started one.
    @discardableResult
    fileprivate func startCheckpoint() -> Bool {
        guard pending.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else { return false }
        connection.asyncWriteWithoutTransaction { [self] db in
            // A failed checkpoint leaves the log to the next one (or to the writer's own, past its limit).
            _ = try? db.checkpoint(.passive)
            finished.add(1, ordering: .relaxed)
            pending.store(false, ordering: .releasing)
        }
        return true
    }

    // MARK: The writer's hook

    /// Routes `connection`'s commits to the checkpointer registered under `id` (``register(_:as:)``),
    /// and turns SQLite's automatic checkpoint off on it. Call on the writer connection only.
    static func install(on connection: Database, id: Int) {
        // Replaces the automatic checkpoint (itself a WAL hook).
        sqlite3_wal_hook(connection.sqliteConnection, walHook, UnsafeMutableRawPointer(bitPattern: id))
    }

    /// The checkpointers of open stores, by the id their writer's hook carries: the hook never holds
    /// a pointer to an object that may be gone.
    private static let registry = Mutex<[Int: WALCheckpointer]>([:])
    private static let lastId = Atomic<Int>(0)

    /// A new id for a store's hook (never 0: the hook's context pointer).
    static func nextId() -> Int { lastId.add(1, ordering: .relaxed).newValue }

    static func register(_ checkpointer: WALCheckpointer, as id: Int) {
        registry.withLock { $0[id] = checkpointer }
    }

    /// Forgets the checkpointer of `id`; its connection closes when the last checkpoint under way ends.
    static func unregister(_ id: Int) {
        _ = registry.withLock { $0.removeValue(forKey: id) }
    }

    fileprivate static func registered(_ id: Int) -> WALCheckpointer? {
        registry.withLock { $0[id] }
    }
}

/// SQLite's WAL hook on the writer: after every commit, with the log's size in pages.
private let walHook: @convention(c) (UnsafeMutableRawPointer?, OpaquePointer?, UnsafePointer<CChar>?, Int32) -> Int32 = { context, db, name, pages in
    guard pages >= WALCheckpointer.checkpointPages else { return SQLITE_OK }
    let checkpointer = WALCheckpointer.registered(Int(bitPattern: context))
    if let checkpointer, WALCheckpointer.leavesToCheckpointer(pages: pages, startingOne: checkpointer.startCheckpoint) { return SQLITE_OK }
    // No checkpointer (yet, or any more), or the log outgrew it (the writer commits faster than the
    // log restarts): after the checkpoint under way, the writer copies the rest itself, as SQLite's
    // own hook does, so its next transaction starts the log over.
    checkpointer?.waitForCheckpoint()
    checkpointer?.countWriterCheckpoint()
    sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, nil, nil)
    return SQLITE_OK
}
