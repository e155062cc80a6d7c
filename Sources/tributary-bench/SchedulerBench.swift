import ArgumentParser
import Foundation
import Logging
import TributaryCore
import TributaryEngine
import TributaryStore

/// `scheduler`: many variants (default 100 connections × 100) of a declarative sync against a fast
/// local provider, on a short frequency, with the real scheduler and worker (default limits). The
/// variants are created spread over one interval (round-robin over the connections), as they would
/// be over time, so their schedules are spread too; then the suite watches for `--duration` seconds.
///
/// Schedule lag is a run's start minus the grid slot it ran for (the variant's schedule is
/// `created_at + k × interval`), reported apart for variants' first runs (due at creation, found by
/// the next tick) and for their scheduled runs — all of them, and the steady state: those whose slot
/// came an interval or more after the last first run finished. Then every variant is paused and the
/// process's CPU is measured while nothing is due ("CPU when idle"). With `--worker-processes N` the
/// schedulers and workers are N processes of their own (``SchedulerWorkerCommand``) sharing the store.
struct SchedulerBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scheduler", abstract: "Schedule lag p50/p99, runs/s and idle CPU with many variants on short frequencies.")

    @OptionGroup var options: BenchOptions
    @Option var connections = 100
    @Option(help: "Variants per connection.") var variants = 100
    @Option(help: "Seconds between a variant's runs (at least 30).") var frequency = 60
    @Option(help: "The sync's jitter_seconds. With jitter the variants are created all at once and the jitter alone spreads their runs.")
    var jitter = 0
    @Flag(help: "Create every variant at once (as with --jitter), without jitter: every variant's schedule starts in the same second.")
    var atOnce = false
    @Option(help: "Seconds to watch after the variants are created.") var duration = 120.0
    @Option(help: "Seconds to measure idle CPU for.") var idle = 10.0
    @Option(help: "The scheduler's tick and the worker's poll, in seconds (tributary.yaml scheduler.tick_seconds).") var tick = 1.0
    @Option(help: "Runs at once in the worker (tributary.yaml scheduler.max_concurrent_runs).") var maxConcurrentRuns = 16
    @Option(
        help:
            "Worker processes, each with its own scheduler and worker on the same store (0: one of each in this process). Idle CPU is then theirs, together."
    )
    var workerProcesses = 0

    func validate() throws {
        // Durations from the command line are turned into `Duration`s and integers: a value that
        // cannot be (infinite, NaN, out of range) is refused here rather than trapping there.
        // --tick as the configuration's scheduler.tick_seconds accepts it.
        for (name, value, range) in [
            ("--duration", duration, 0.001...86_400.0), ("--tick", tick, 0.05...60.0), ("--idle", idle, 0.001...86_400.0),
        ] where !(value.isFinite && range.contains(value)) {
            throw ValidationError("\(name) must be between \(range.lowerBound) and \(range.upperBound) seconds.")
        }
        guard frequency >= 30 else { throw ValidationError("--frequency must be at least 30 seconds.") }
        guard (1...100_000).contains(connections), (1...100_000).contains(variants), jitter >= 0, maxConcurrentRuns >= 1, workerProcesses >= 0 else {
            throw ValidationError(
                "--connections and --variants must be 1 to 100000, --max-concurrent-runs at least 1, --jitter and --worker-processes at least 0.")
        }
    }

    /// The scheduler and the worker a process runs, with the HTTP client they share (shut it down after).
    static func worker(store: any Store, config: TributaryConfig, tick: Double, maxConcurrentRuns: Int, logger: Logger) throws
        -> (RunCoordinator, Scheduler, OutboundHTTP)
    {
        let http = OutboundHTTP()
        let providers = ProviderAccess(
            config: config, store: store, cipher: try CredentialCipher(base64Key: Data(repeating: 7, count: 32).base64EncodedString()), http: http,
            logger: logger)
        let executor = SyncExecutor(store: store, functions: try SyncFunctionRegistry([]), providers: providers, logger: logger)
        let tick = Duration.milliseconds(Int(tick * 1000))
        let worker = RunCoordinator(
            executor: executor, config: config, limits: RunCoordinator.Limits(maxConcurrentRuns: maxConcurrentRuns, poll: tick), logger: logger)
        let scheduler = Scheduler(config: config, store: store, worker: worker, interval: tick, logger: logger)
        return (worker, scheduler, http)
    }

    func configYAML(baseURL: String) -> String {
        """
        server:
          max_variants_per_sync: \(variants)
        scheduler:
          tick_seconds: \(tick)
        environments:
          bench:
            secret_key: \(FeedBench.secretKey)
        integrations:
          shop:
            base_url: \(baseURL)
            syncs:
              orders:
                models: [Order]
                frequency: every \(frequency) seconds
                jitter_seconds: \(jitter)
                auto_start: false
                endpoint: /ping
                records_path: orders
        """
    }

    /// Seconds over which the variants are created when neither jitter nor `--at-once` is set: one interval, or the watch if shorter.
    var spreadSeconds: Double { min(Double(frequency), duration) }

    func run() async throws {
        let stores = try BenchStores(options: options)
        defer { stores.removeFiles() }
        let total = connections * variants
        // The new variants' arrival rate: past the worker's runs/s their first runs queue (a shorter
        // --duration than --frequency creates them faster than one interval spreads them).
        let creation: String
        if jitter > 0 {
            creation = ", jitter \(jitter) s, created at once"
        } else if atOnce {
            creation = ", created at once, no jitter"
        } else {
            creation = ", created over \(String(format: "%g", spreadSeconds)) s (\(String(format: "%.0f", Double(total) / spreadSeconds)) new variants/s)"
        }
        var report = BenchReport(
            suite: "scheduler: \(connections) connections × \(variants) variants, every \(frequency) s\(creation), tick \(tick) s, \(maxConcurrentRuns) runs at once\(workerProcesses > 0 ? " in each of \(workerProcesses) worker processes" : ""), watched \(Int(duration)) s",
            header: ["store: runs", "runs", "runs/s", "lag p50", "lag p99", "lag max", "busiest second", "failed", "idle CPU"])
        report.usesRecordOptions = false
        let provider = try ProviderProcess(records: 3)
        defer { provider.stop() }
        let config = try ConfigLoader.parse(yaml: configYAML(baseURL: provider.baseURL), file: "scheduler.yaml", environment: [:])
        guard let sync = config.integration("shop", in: "bench")?.syncs.first else { throw ValidationError("the bench configuration has no sync") }
        // Round-robin over connections: each connection's variants are spread over the interval too.
        // (Created all at once, one connection's variants queue behind max_runs_per_connection — by design.)
        let refs = (0..<variants).flatMap { v in
            (0..<connections).map { c in
                VariantRef(
                    connection: ConnectionRef(environment: "bench", providerConfigKey: "shop", connectionId: "conn-\(c)"), syncName: sync.name,
                    variant: String(format: "v%03d", v))
            }
        }
        for kind in stores.kinds {
            let outcome = try await stores.withStore(kind, name: "scheduler") { store, location in
                let (worker, scheduler, http) = try Self.worker(
                    store: store, config: config, tick: tick, maxConcurrentRuns: maxConcurrentRuns, logger: stores.logger)
                let configFile = stores.directory.appendingPathComponent("scheduler.yaml").path
                try configYAML(baseURL: provider.baseURL).write(toFile: configFile, atomically: true, encoding: .utf8)
                return try await withThrowingTaskGroup(of: Void.self) { group in
                    var processes: SchedulerWorkerProcesses? = nil
                    if workerProcesses > 0 {
                        processes = try SchedulerWorkerProcesses(
                            count: workerProcesses, configFile: configFile, location: location, server: options.database, tick: tick,
                            maxConcurrentRuns: maxConcurrentRuns)
                    } else {
                        group.addTask { try await worker.run() }
                        group.addTask { try await scheduler.run() }
                    }
                    defer {
                        processes?.stop()
                        group.cancelAll()
                    }
                    for connection in Set(refs.map(\.connection)) { _ = try await store.ensureConnection(connection) }
                    let queue = RunQueue(store: store, worker: workerProcesses > 0 ? nil : worker, scheduler: workerProcesses > 0 ? nil : scheduler)
                    // Created spread over one interval: their schedules (created_at + k × interval) are spread the same way.
                    let start = ContinuousClock.now
                    let spread = jitter > 0 || atOnce ? Duration.zero : Duration.seconds(spreadSeconds)
                    for (index, ref) in refs.enumerated() {
                        let due = start + spread * (Double(index) / Double(refs.count))
                        if due > .now { try await Task.sleep(until: due) }
                        // As the API creates them: this process's scheduler (if it has one) is woken for the first run.
                        _ = try await queue.createVariant(ref, maximumPerSync: variants, paused: false)
                    }
                    let watchEnd = start + .seconds(duration)
                    if watchEnd > .now { try await Task.sleep(until: watchEnd) }
                    // Variants created last may still be on their first run: wait for those (at most 30 s more).
                    let patience = ContinuousClock.now + .seconds(30)
                    var waiting = refs
                    while !waiting.isEmpty, ContinuousClock.now < patience {
                        waiting = try await waiting.asyncFilter { try await store.runs(of: $0, limit: 1).first?.finishedAt == nil }
                        if !waiting.isEmpty { try await Task.sleep(for: .milliseconds(200)) }
                    }
                    let watched = elapsed(start)
                    var lags: [Double] = []
                    var firstLags: [Double] = []
                    var failed = 0
                    // Scheduled starts per wall-clock second: how evenly the schedule (or the jitter) spreads them.
                    var perSecond: [Int64: Int] = [:]
                    var history: [(run: RunRecord, index: Int, lag: Double)] = []
                    for ref in refs {
                        guard let state = try await store.variantState(ref) else { continue }
                        let offset = sync.schedule.offsetMicroseconds(forVariant: state.id)
                        let finished = try await store.runs(of: ref, limit: 1000).filter { $0.finishedAt != nil }.sorted { $0.id < $1.id }
                        for (index, run) in finished.enumerated() {
                            let interval = Int64(frequency) * 1_000_000
                            // The grid is created_at + jitter offset + k × interval; the first run is due at creation.
                            let sinceOrigin = run.startedAt.microseconds - state.createdAt.microseconds - (index == 0 ? 0 : offset)
                            let lag = Double(sinceOrigin - (sinceOrigin / interval) * interval) / 1_000_000
                            history.append((run, index, lag))
                        }
                    }
                    // Scheduled runs whose slot came one interval or more after every first run had finished:
                    // the steady state, once the backlog of new variants (all due at once when created at once)
                    // and the slots that queued up behind it are worked off.
                    let backlogEnd =
                        (history.filter { $0.index == 0 }.compactMap { $0.run.finishedAt?.microseconds }.max() ?? 0) + Int64(frequency) * 1_000_000
                    var steadyLags: [Double] = []
                    var steadyPerSecond: [Int64: Int] = [:]
                    for (run, index, lag) in history {
                        // A variant's first run is due at its creation, which no scheduler knows of in advance.
                        if index == 0 {
                            firstLags.append(lag)
                        } else {
                            lags.append(lag)
                            perSecond[run.startedAt.microseconds / 1_000_000, default: 0] += 1
                            if run.startedAt.microseconds - Int64(lag * 1_000_000) > backlogEnd {
                                steadyLags.append(lag)
                                steadyPerSecond[run.startedAt.microseconds / 1_000_000, default: 0] += 1
                            }
                        }
                        if run.status != .succeeded { failed += 1 }
                    }
                    // Idle: everything paused, the scheduler and worker keep ticking over the paused variants.
                    try await store.setPaused(true, for: refs)
                    while try await refs.asyncContains(where: { try await store.activeRun(of: $0) != nil }) {
                        try await Task.sleep(for: .milliseconds(200))
                    }
                    // The workers' CPU: this process's, or the worker processes' together.
                    let cpuSeconds = { processes?.cpuSeconds ?? ProcessStats.cpuSeconds() }
                    let cpu = cpuSeconds()
                    try await Task.sleep(for: .seconds(idle))
                    let idleCPU = (cpuSeconds() - cpu) / idle
                    try await http.shutdown()
                    return Outcome(
                        lags: lags.sorted(), firstLags: firstLags.sorted(), steadyLags: steadyLags.sorted(), failed: failed, watched: watched, idleCPU: idleCPU,
                        busiestSecond: perSecond.values.max() ?? 0, steadyBusiestSecond: steadyPerSecond.values.max() ?? 0)
                }
            }
            func quantile(_ values: [Double], _ q: Double) -> Double {
                values.isEmpty ? 0 : values[min(values.count - 1, Int(Double(values.count) * q))]
            }
            let runs = outcome.lags.count + outcome.firstLags.count
            guard outcome.firstLags.count >= total else {
                throw ValidationError("only \(outcome.firstLags.count) variants ran; every one of the \(total) should have run at least once")
            }
            let rows: [(name: String, lags: [Double], busiest: Int?)] = [
                ("scheduled runs", outcome.lags, outcome.busiestSecond),
                ("  steady: an interval after the first runs", outcome.steadyLags, outcome.steadyBusiestSecond),
                ("first runs (new variants)", outcome.firstLags, nil),
            ]
            for (name, lags, busiest) in rows {
                report.add([
                    "\(kind.rawValue): \(name)", "\(lags.count)", String(format: "%.0f", Double(runs) / outcome.watched),
                    String(format: "%.3f s", quantile(lags, 0.5)), String(format: "%.3f s", quantile(lags, 0.99)), String(format: "%.3f s", lags.last ?? 0),
                    busiest.map { "\($0) starts" } ?? "", "\(outcome.failed)", String(format: "%.1f%% of a core", outcome.idleCPU * 100),
                ])
            }
            report.figure(kind, "runs", Double(runs))
            report.figure(kind, "runs_per_s", Double(runs) / outcome.watched)
            report.figure(kind, "lag_p50_s", quantile(outcome.lags, 0.5))
            report.figure(kind, "lag_p99_s", quantile(outcome.lags, 0.99))
            report.figure(kind, "lag_max_s", outcome.lags.last ?? 0)
            report.figure(kind, "steady_lag_p50_s", quantile(outcome.steadyLags, 0.5))
            report.figure(kind, "steady_lag_p99_s", quantile(outcome.steadyLags, 0.99))
            report.figure(kind, "steady_busiest_second_starts", Double(outcome.steadyBusiestSecond))
            report.figure(kind, "first_run_lag_p50_s", quantile(outcome.firstLags, 0.5))
            report.figure(kind, "first_run_lag_p99_s", quantile(outcome.firstLags, 0.99))
            report.figure(kind, "idle_cpu_fraction", outcome.idleCPU)
            report.figure(kind, "busiest_second_starts", Double(outcome.busiestSecond))
        }
        try report.print(options: options)
    }

    struct Outcome: Sendable {
        /// Runs after a variant's first: each for a slot of its grid.
        var lags: [Double]
        var firstLags: [Double]
        /// Scheduled runs whose slot came an interval or more after the last first run finished.
        var steadyLags: [Double]
        var failed: Int
        var watched: Double
        var idleCPU: Double
        /// The most scheduled (not first) runs that started in one wall-clock second.
        var busiestSecond: Int
        var steadyBusiestSecond: Int
    }
}

extension Array where Element: Sendable {
    func asyncFilter(_ isIncluded: (Element) async throws -> Bool) async rethrows -> [Element] {
        var kept: [Element] = []
        for element in self where try await isIncluded(element) { kept.append(element) }
        return kept
    }

    func asyncContains(where predicate: (Element) async throws -> Bool) async rethrows -> Bool {
        for element in self where try await predicate(element) { return true }
        return false
    }
}
