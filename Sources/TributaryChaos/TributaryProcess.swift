import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One `tributary serve` child process the chaos run starts, kills (SIGKILL), freezes (SIGSTOP) and
/// thaws (SIGCONT) — and restarts after it died.
final class TributaryProcess: Sendable {
    let name: String
    private let binary: URL
    private let arguments: [String]
    private let directory: URL
    private let process = Mutex<Process?>(nil)
    /// SIGSTOPped by the chaos run (a frozen VM, a stopped container).
    private let frozen = Mutex(false)

    init(name: String, binary: URL, arguments: [String], directory: URL) {
        self.name = name
        self.binary = binary
        self.arguments = arguments
        self.directory = directory
    }

    var isRunning: Bool { process.withLock { $0?.isRunning ?? false } }
    var isFrozen: Bool { frozen.withLock { $0 } }
    var pid: Int32? { process.withLock { $0?.isRunning == true ? $0?.processIdentifier : nil } }

    func start() throws {
        let child = Process()
        child.executableURL = binary
        child.currentDirectoryURL = directory
        child.arguments = arguments
        let log = directory.appendingPathComponent("\(name).log")
        if !FileManager.default.fileExists(atPath: log.path) { _ = FileManager.default.createFile(atPath: log.path, contents: nil) }
        let handle = try FileHandle(forWritingTo: log)
        handle.seekToEndOfFile()
        child.standardOutput = handle
        child.standardError = handle
        try child.run()
        process.withLock { $0 = child }
        frozen.withLock { $0 = false }
    }

    func kill9() {
        thaw()
        if let pid { kill(pid, SIGKILL) }
        // Until the child is reaped (a few milliseconds).
        var waited = 0
        while isRunning, waited < 500 {
            usleep(10_000)
            waited += 1
        }
    }

    func freeze() {
        guard let pid, !isFrozen else { return }
        kill(pid, SIGSTOP)
        frozen.withLock { $0 = true }
    }

    func thaw() {
        guard isFrozen else { return }
        if let pid { kill(pid, SIGCONT) }
        frozen.withLock { $0 = false }
    }

    /// SIGTERM, and how long the process took to exit (nil: it did not within `limit`; it is killed then).
    func terminate(limit: Duration) async -> Duration? {
        thaw()
        guard let child = process.withLock({ $0 }), child.isRunning else { return .zero }
        let asked = ContinuousClock.now
        child.terminate()
        while child.isRunning, ContinuousClock.now - asked < limit { try? await Task.sleep(for: .milliseconds(20)) }
        if child.isRunning {
            kill9()
            return nil
        }
        return ContinuousClock.now - asked
    }
}
