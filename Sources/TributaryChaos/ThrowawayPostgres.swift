#if canImport(FoundationEssentials)
import FoundationEssentials
#endif
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A PostgreSQL cluster of the chaos run's own, on a loopback port, in a temporary directory: it can
/// be stopped and started again mid-run without touching any other test's database. Needs Debian's
/// `postgresql` package (`/usr/lib/postgresql/*/bin`); as root the cluster runs as the `postgres` user.
public final class ThrowawayPostgres: Sendable {
    public var port: Int { state.withLock { $0 } }
    private let state: Mutex<Int>
    let directory: URL
    let bin: URL
    let runAs: [String]

    /// Creates (initdb) and starts the cluster on `port`, or on the next free one of a few after it.
    public init(port: Int) throws {
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
        guard let version = versions.sorted(by: { $0.compare($1, options: .numeric) == .orderedAscending }).last else {
            throw ChaosError("PostgreSQL is not installed (apt-get install postgresql)")
        }
        bin = URL(fileURLWithPath: "/usr/lib/postgresql/\(version)/bin")
        state = Mutex(port)
        directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("tributary-chaos-pg-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        runAs = getuid() == 0 ? ["/usr/sbin/runuser", "-u", "postgres", "--"] : []
        if getuid() == 0 { try Self.shell(["/bin/chown", "postgres", directory.path]) }
        try Self.shell(runAs + [bin.appendingPathComponent("initdb").path, "-D", directory.appendingPathComponent("cluster").path, "-U", "tributary", "--auth=trust", "-E", "UTF8"])
        for attempt in 0..<8 {
            do {
                try start()
                return
            } catch where attempt < 7 {
                state.withLock { $0 += 1 + Int.random(in: 0..<500) }
            }
        }
    }

    /// `postgres://…` of the cluster's `postgres` database.
    public var url: String { "postgres://tributary@127.0.0.1:\(port)/postgres?sslmode=disable" }

    public func start() throws {
        try Self.shell(
            runAs + [
                bin.appendingPathComponent("pg_ctl").path, "-D", directory.appendingPathComponent("cluster").path, "-l",
                directory.appendingPathComponent("log").path, "-w", "start", "-o",
                "-c listen_addresses=127.0.0.1 -p \(port) -k \(directory.path) -c max_connections=300 -c fsync=off -c synchronous_commit=off",
            ])
    }

    /// Stops the server the way an operator's restart or a failover does (`-m fast`: connections are closed).
    public func stop() throws {
        try Self.shell(runAs + [bin.appendingPathComponent("pg_ctl").path, "-D", directory.appendingPathComponent("cluster").path, "-m", "fast", "-w", "stop"])
    }

    /// Stops the server and removes the cluster.
    public func remove() {
        _ = try? Self.shell(
            runAs + [bin.appendingPathComponent("pg_ctl").path, "-D", directory.appendingPathComponent("cluster").path, "-m", "immediate", "stop"])
        try? FileManager.default.removeItem(at: directory)
    }

    /// Runs a command to its end, its output discarded (posix_spawn + waitpid: a short wait on this
    /// thread, and no interference with Foundation's own child-process bookkeeping).
    @discardableResult
    static func shell(_ arguments: [String]) throws -> Int32 {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, arguments[0], &actions, nil, &argv, environ)
        guard spawned == 0 else { throw ChaosError("could not start \(arguments[0]) (errno \(spawned))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        let exited = (status & 0x7f) == 0
        let code = exited ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        guard code == 0 else {
            throw ChaosError("\(URL(fileURLWithPath: arguments.first { $0.hasPrefix("/usr/lib") } ?? arguments[0]).lastPathComponent) failed (exit \(code))")
        }
        return code
    }
}

/// What stopped a chaos run from running (not a broken invariant: those are in the report).
public struct ChaosError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
