import ArgumentParser
import Foundation
import Logging
import TributaryCore
import TributaryEngine
import TributaryPostgres
import TributarySQLite
import TributaryStore

/// `scheduler-worker`: one worker process of the `scheduler` suite's `--worker-processes` — the real
/// `Scheduler` and `RunCoordinator` on the suite's store and configuration, until it is terminated.
/// It prints `ready` once both run.
struct SchedulerWorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scheduler-worker", abstract: "A worker process of the scheduler suite (started by it).", shouldDisplay: false)

    @Option(help: "The configuration file the suite wrote.") var config: String
    @Option(help: "The SQLite file, for a SQLite store.") var sqlite: String?
    @Option(help: "The PostgreSQL server's URL, for a PostgreSQL store.") var database: String?
    @Option(help: "The database on that server.") var databaseName: String?
    @Option var tick = 1.0
    @Option var maxConcurrentRuns = 16

    func run() async throws {
        // The suite holds this process's stdin open: when it ends (killed, crashed), so does this one.
        Thread.detachNewThread {
            while !FileHandle.standardInput.availableData.isEmpty {}
            Foundation.exit(0)
        }
        // Logs go to stderr: nobody reads stdout after `ready`.
        LoggingSystem.bootstrap(StreamLogHandler.standardError)
        var logger = Logger(label: "bench-worker")
        logger.logLevel = .error
        let text = try String(contentsOfFile: config, encoding: .utf8)
        let configuration = try ConfigLoader.parse(yaml: text, file: config, environment: [:])
        let store: any Store
        var postgres: PostgresStore? = nil
        if let sqlite {
            store = try SQLiteStore(path: sqlite)
        } else if let database, let databaseName {
            let url = try PostgresURL(database).with(database: databaseName)
            postgres = PostgresStore(url: url, maximumConnections: 8, logger: logger)
            store = postgres!
        } else {
            throw ValidationError("give --sqlite PATH, or --database URL and --database-name NAME")
        }
        let (worker, scheduler, http) = try SchedulerBench.worker(
            store: store, config: configuration, tick: tick, maxConcurrentRuns: maxConcurrentRuns, logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            if let postgres { group.addTask { await postgres.run() } }
            group.addTask { try await worker.run() }
            group.addTask { try await scheduler.run() }
            if let postgres {
                // As `tributary serve --role worker` does: new variants made by the suite's process wake this scheduler.
                let listener = QueueSignalListener(signals: postgres, worker: worker, scheduler: scheduler, logger: logger)
                group.addTask { try await listener.run() }
            }
            FileHandle.standardOutput.write(Data("ready\n".utf8))
            // Until terminated (the suite sends SIGTERM); a task ending early is an error.
            try await group.next()
            group.cancelAll()
        }
        try await http.shutdown()
    }
}

/// The `scheduler-worker` processes of one measurement.
final class SchedulerWorkerProcesses: Sendable {
    let processes: [Process]
    /// The workers' stdin, held open while they should run (see ``SchedulerWorkerCommand``).
    let lifelines: [Pipe]

    /// Starts `count` workers on the store at `location` and waits until each runs.
    init(count: Int, configFile: String, location: BenchLocation, server: String?, tick: Double, maxConcurrentRuns: Int) throws {
        var started: [Process] = []
        var lifelines: [Pipe] = []
        do {
            for _ in 0..<count {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
                var arguments = ["scheduler-worker", "--config", configFile, "--tick", String(tick), "--max-concurrent-runs", String(maxConcurrentRuns)]
                switch location {
                case .sqlite(let path): arguments += ["--sqlite", path]
                case .postgres(let url):
                    guard let server else { throw ValidationError("no --database URL given") }
                    arguments += ["--database", server, "--database-name", url.database]
                }
                process.arguments = arguments
                let output = Pipe()
                let lifeline = Pipe()
                process.standardOutput = output
                process.standardInput = lifeline
                try process.run()
                started.append(process)
                lifelines.append(lifeline)
                let line = String(decoding: output.fileHandleForReading.readData(ofLength: 6), as: UTF8.self)
                guard line == "ready\n" else { throw ValidationError("a scheduler worker exited before it was ready") }
            }
        } catch {
            for process in started { process.terminate() }
            throw error
        }
        processes = started
        self.lifelines = lifelines
    }

    /// CPU seconds the workers have used together.
    var cpuSeconds: Double { processes.reduce(0) { $0 + ProcessStats.cpuSeconds(pid: $1.processIdentifier) } }

    func stop() {
        for lifeline in lifelines { try? lifeline.fileHandleForWriting.close() }
        for process in processes { process.terminate() }
        for process in processes { process.waitUntilExit() }
    }
}
