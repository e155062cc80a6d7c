#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Named steps of a run's life where a test can stop the process for real — the way a crash, an OOM
/// kill or a power cut would. `TRIBUTARY_FAILPOINTS=run.completed,…` makes the process print
/// `tributary failpoint <name>` to standard error and SIGKILL itself when it reaches a listed step.
/// Unset (always, outside tests), a failpoint is one check of an empty set.
///
/// The steps: `run.claimed` (a worker claimed a run, before its function starts), `run.saved` (a
/// page of records was written), `run.before-complete` (the function returned; its outcome is not
/// recorded yet), `run.completed` (the outcome and the next run are recorded, before the worker
/// moves on), `shutdown.before-release` and `shutdown.released` (a graceful shutdown queues a running
/// run again).
public enum Failpoint {
    static let active: Set<String> = Set(
        (ProcessInfo.processInfo.environment["TRIBUTARY_FAILPOINTS"] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty })

    /// Kills this process at once when `name` is listed in `TRIBUTARY_FAILPOINTS`.
    public static func hit(_ name: String) {
        guard !active.isEmpty, active.contains(name) else { return }
        let line = Array("tributary failpoint \(name)\n".utf8)
        _ = line.withUnsafeBufferPointer { write(2, $0.baseAddress, $0.count) }
        kill(getpid(), SIGKILL)
    }
}
