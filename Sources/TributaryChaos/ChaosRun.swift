import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import Synchronization
import TributaryCore
import TributaryDemo
import TributaryPostgres
import TributarySQLite
import TributaryStore

/// How a chaos run is set up.
public struct ChaosOptions: Sendable {
    public enum Mode: String, Sendable, CaseIterable {
        /// One `tributary serve` process (API and worker) on a SQLite file.
        case sqlite
        /// One `--role api` and several `--role worker` processes on a PostgreSQL cluster of the run's own,
        /// which is stopped and started again now and then.
        case postgres
    }

    public var mode: Mode
    public var seed: UInt64
    /// How long the faults go on (the final checks come after).
    public var duration: Duration
    /// The `tributary` executable.
    public var binary: URL
    /// Worker processes (PostgreSQL mode).
    public var workers: Int
    public var connections: Int
    /// Variants per connection besides `base`.
    public var variants: Int
    /// Progress lines (what the run does, what failed).
    public var log: @Sendable (String) -> Void
    /// The processes' `--log-level` (their logs are kept in the run's directory when it fails).
    public var processLogLevel: String = ProcessInfo.processInfo.environment["TRIBUTARY_CHAOS_LOG_LEVEL"] ?? "warning"

    public init(
        mode: Mode, seed: UInt64, duration: Duration, binary: URL, workers: Int = 3, connections: Int = 3, variants: Int = 2,
        log: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.mode = mode
        self.seed = seed
        self.duration = duration
        self.binary = binary
        self.workers = max(1, workers)
        self.connections = max(1, connections)
        self.variants = max(0, variants)
        self.log = log
    }
}

/// What a chaos run did and which invariants broke (none, when it passed).
public struct ChaosReport: Sendable {
    public var mode: ChaosOptions.Mode
    public var seed: UInt64
    /// How often each fault and API call happened.
    public var actions: [String: Int] = [:]
    /// Broken invariants, each a sentence naming what and where (the first few dozen).
    public var failures: [String] = []
    /// How many invariants broke in all.
    public var failureCount = 0
    /// Runs recorded, records checked against the provider, feed changes followed.
    public var runs = 0
    public var recordsChecked = 0
    public var changesFollowed = 0

    public var passed: Bool { failures.isEmpty }

    public var summary: String {
        let acts = actions.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        return "chaos \(mode.rawValue) seed \(seed): \(passed ? "passed" : "FAILED (\(failureCount))") — \(runs) runs, \(recordsChecked) records checked against the provider, \(changesFollowed) feed changes followed; \(acts)"
    }
}

/// A chaos run with real processes: `tributary serve` processes are SIGKILLed, SIGSTOPped past their
/// lease and thawed, and (PostgreSQL) cut off by a restarted database, while the API deletes, resets
/// and re-creates variants and connections, triggers runs, pauses and starts, and provider webhooks
/// arrive — against the demo shop, whose data keeps changing (a clock 20× real time). A follower
/// reads every change feed all the while. Then the shop is frozen, every variant is reset and synced
/// once more, and the invariants are checked against the shop's truth:
///
/// - no record lost or falsely deleted: every variant's records are exactly the shop's, field for
///   field; no record was ever marked deleted while the shop still listed it;
/// - every change once in the feed, in order (cursors only grow);
/// - no deleted connection or variant with rows left (after the purge), no orphan records;
/// - no two runs of a variant overlapping in the run history (provider webhook executions aside);
/// - every started variant scheduled (an active run or a planned next run);
/// - every process stops within its shutdown budget on SIGTERM (PostgreSQL mode: also while the
///   database is down).
public enum ChaosRun {
    static let key = "chaos-secret-key-0000000001"
    static let shopKey = "chaos-shop-key"
    static let webhookSecret = "chaos-webhook-secret"
    static let drainSeconds = 1
    static let leaseSeconds = 2

    public static func run(_ options: ChaosOptions) async throws -> ChaosReport {
        let directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("tributary-chaos-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var quiet = Logger(label: "tributary.chaos")
        quiet.logLevel = .error
        let logger = quiet
        let provider = ChaosProvider(speed: 20)
        let providerPort = PortBox()
        let postgres = options.mode == .postgres ? try ThrowawayPostgres(port: 30_000 + Int(options.seed % 20_000)) : nil
        // The directory (the processes' logs) stays when the run failed, for a look afterwards.
        let keep = Mutex(true)
        defer {
            postgres?.remove()
            if !keep.withLock({ $0 }) { try? FileManager.default.removeItem(at: directory) }
        }
        let location: StoreLocation =
            postgres.map { .postgres(url: $0.url) } ?? .sqlite(path: directory.appendingPathComponent("chaos.sqlite").path)
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            let report = try await run(options, directory: directory, http: http, provider: provider, providerPort: providerPort, location: location, postgres: postgres, logger: logger)
            try? await http.shutdown()
            keep.withLock { $0 = !report.passed }
            if !report.passed { options.log("the processes' logs: \(directory.path)") }
            return report
        } catch {
            try? await http.shutdown()
            options.log("chaos \(options.mode.rawValue) seed \(options.seed) could not run: \(error) (the processes' logs: \(directory.path))")
            throw error
        }
    }

    private static func run(
        _ options: ChaosOptions, directory: URL, http: HTTPClient, provider: ChaosProvider, providerPort: PortBox, location: StoreLocation,
        postgres: ThrowawayPostgres?, logger: Logger
    ) async throws -> ChaosReport {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await provider.serve(apiKey: shopKey, pageDelay: .milliseconds(15), logger: logger) { port in providerPort.set(port) }
            }
            defer { group.cancelAll() }
            var waited = 0
            while providerPort.value == nil, waited < 500 {
                try await Task.sleep(for: .milliseconds(10))
                waited += 1
            }
            guard let shopPort = providerPort.value, shopPort > 0 else { throw ChaosError("the chaos shop did not start") }
            let harness = try await Harness(
                options: options, directory: directory, http: http, provider: provider, shopPort: shopPort, location: location, postgres: postgres)
            return try await harness.run()
        }
    }
}

/// The port the shop was bound to, once it is.
final class PortBox: Sendable {
    private let port = Mutex<Int?>(nil)
    func set(_ value: Int) { port.withLock { $0 = value } }
    var value: Int? { port.withLock { $0 } }
}

/// One chaos run's moving parts.
final class Harness: Sendable {
    let options: ChaosOptions
    let directory: URL
    let http: HTTPClient
    let provider: ChaosProvider
    let location: StoreLocation
    let postgres: ThrowawayPostgres?
    let apiPort: Int
    let processes: [TributaryProcess]
    let store: any Store
    let storeRunner: Task<Void, Never>?
    private let state: Mutex<State>

    struct State {
        var random: SeededRandom
        var report: ChaosReport
        /// Processes killed on purpose, and when they come back.
        var downUntil: [String: ContinuousClock.Instant] = [:]
        /// Processes frozen on purpose, and when they are thawed.
        var thawAt: [String: ContinuousClock.Instant] = [:]
        var databaseDown = false
        /// Feed position per dataset (connection, model, variant), across deletions and re-creations.
        var cursors: [DatasetRef: FeedCursor] = [:]
    }

    /// The port every API process of the run listens on, across their restarts: the seed's, in
    /// 20000–29999, or else the first free of 63 more spread over that span (steps of 157) — one
    /// held by another process, handed out in this one (another run's, whose server may be down
    /// for a restart) or in the kernel's ephemeral range (where outgoing connections take their
    /// local ports) is passed over.
    static func apiPort(seed: UInt64) throws -> Int {
        let base = Int((seed >> 16) % 10_000)
        let ephemeral = ephemeralRange()
        let candidates = (0..<64).lazy.map { 20_000 + (base + $0 * 157) % 10_000 }.filter { !ephemeral.contains($0) }
        guard let port = takeFreePort(candidates) else {
            throw ChaosError("no free loopback port for the API among 64 tried from \(20_000 + base)")
        }
        return port
    }

    init(
        options: ChaosOptions, directory: URL, http: HTTPClient, provider: ChaosProvider, shopPort: Int, location: StoreLocation,
        postgres: ThrowawayPostgres?
    ) async throws {
        self.options = options
        self.directory = directory
        self.http = http
        self.provider = provider
        self.location = location
        self.postgres = postgres
        apiPort = try Self.apiPort(seed: options.seed)
        state = Mutex(State(random: SeededRandom(seed: options.seed), report: ChaosReport(mode: options.mode, seed: options.seed)))
        let config = directory.appendingPathComponent("tributary.yaml")
        try Self.config(shopPort: shopPort).write(to: config, atomically: true, encoding: .utf8)
        let database: String
        switch location {
        case .sqlite(let path):
            database = path
            let sqlite = try SQLiteStore(path: path)
            try await sqlite.migrate()
            store = sqlite
            storeRunner = nil
        case .postgres(let url):
            database = url
            var quiet = Logger(label: "tributary.chaos.store")
            quiet.logLevel = .critical
            let pg = PostgresStore(url: try PostgresURL(url), maximumConnections: 4, operationTimeout: .seconds(3), logger: quiet)
            try await pg.migrate()
            store = pg
            storeRunner = Task { await pg.run() }
        }
        let port = apiPort
        func serve(_ role: String) -> [String] {
            ["serve", "--role", role, "--config", config.path, "--database", database, "--port", "\(port)", "--insecure-dev-key", "--log-level", options.processLogLevel]
        }
        if options.mode == .sqlite {
            processes = [TributaryProcess(name: "all", binary: options.binary, arguments: serve("all"), directory: directory)]
        } else {
            processes = [TributaryProcess(name: "api", binary: options.binary, arguments: serve("api"), directory: directory)]
                + (1...options.workers).map { TributaryProcess(name: "worker\($0)", binary: options.binary, arguments: serve("worker"), directory: directory) }
        }
    }

    static func config(shopPort: Int) -> String {
        """
        environments:
          dev: { secret_key: \(ChaosRun.key) }
        scheduler:
          tick_seconds: 0.2
          lease_seconds: \(ChaosRun.leaseSeconds)
          drain_seconds: \(ChaosRun.drainSeconds)
          max_concurrent_runs: 6
          max_runs_per_connection: 3
          max_run_attempts: 100
        integrations:
          demo-shop:
            base_url: http://127.0.0.1:\(shopPort)
            auth: { type: api_key, header: X-Api-Key }
            webhooks: { connection_path: connection, type_path: event, secret: \(ChaosRun.webhookSecret) }
            syncs:
              orders:
                models: [Order]
                frequency: 30s
                sync_type: full
                track_deletes: true
                endpoint: /stores/{variant}/orders
                pagination: { type: cursor, cursor_path: next_cursor, cursor_param: cursor, limit_param: limit, limit: 20 }
                records_path: orders
                webhook_subscriptions: [order.updated]
                webhook: { records_path: order }
        """
    }

    var connections: [String] { (0..<options.connections).map { "c\($0)" } }
    var variantNames: [String] { (1...max(1, options.variants)).prefix(options.variants).map { "v\($0)" } }

    func note(_ line: String) { options.log(line) }

    /// Failures kept in the report (the rest are counted).
    static let failuresKept = 40

    func fail(_ failure: String) {
        let kept = state.withLock { state -> Bool in
            state.report.failureCount += 1
            guard state.report.failures.count < Self.failuresKept else { return false }
            state.report.failures.append(failure)
            return true
        }
        if kept { note("FAILED: \(failure)") }
    }

    func count(_ action: String) { state.withLock { $0.report.actions[action, default: 0] += 1 } }

    func random(_ range: Range<Int>) -> Int { state.withLock { Int.random(in: range, using: &$0.random) } }
    func chance(_ p: Double) -> Bool { state.withLock { Double.random(in: 0..<1, using: &$0.random) < p } }

    // MARK: The run

    func run() async throws -> ChaosReport {
        defer { storeRunner?.cancel() }
        do {
            return try await runChecked()
        } catch {
            for process in processes { process.kill9() }
            throw error
        }
    }

    private func runChecked() async throws -> ChaosReport {
        for process in processes { try process.start() }
        try await waitForAPI(seconds: 60)
        try await setUp()
        note("chaos \(options.mode.rawValue) seed \(options.seed): \(processes.count) processes, \(options.connections) connections × \(options.variants + 1) variants, faults for \(options.duration)")
        let end = ContinuousClock.now + options.duration
        let follower = Task { await self.follow(until: nil) }
        defer { follower.cancel() }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.supervise(until: end) }
            group.addTask { await self.faults(until: end) }
        }
        note("faults over; bringing everything back")
        try await settle()
        if options.mode == .postgres { await shutdownWhileTheDatabaseIsDown() }
        let frozen = provider.freeze()
        note("shop frozen at \(Timestamp(frozen).iso8601); resetting and syncing every variant once more")
        try await syncEverythingOnce()
        note("every variant synced from the frozen shop; waiting for the purge")
        try await waitForPurges()
        follower.cancel()
        _ = await follower.value
        await follow(until: ContinuousClock.now)  // everything up to now
        note("checking")
        try await check(frozen: frozen)
        await stopEverything()
        return state.withLock { $0.report }
    }

    func setUp() async throws {
        for connection in connections {
            try await retrying("import \(connection)") { try await self.importConnection(connection) }
            for variant in variantNames {
                try await retrying("create \(connection)/\(variant)") { try await self.createVariant(connection, variant) }
            }
        }
    }

    // MARK: Faults and API calls

    func faults(until end: ContinuousClock.Instant) async {
        var lastDatabaseRestart = ContinuousClock.now
        var iteration = 0
        while ContinuousClock.now < end, !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(100 + random(0..<300)))
            let connection = connections[random(0..<connections.count)]
            let variants = ["base"] + variantNames
            let variant = variants[random(0..<variants.count)]
            iteration += 1
            // Whatever the seed, each process fault happens at least once: a SIGKILL and a SIGSTOP
            // of a running process early on (the random ones may all find their process down).
            let forced = iteration == 5 || iteration == 15
            let runningProcess = processes.first { $0.isRunning && !$0.isFrozen }
            switch iteration == 5 ? 19 : iteration == 15 ? 21 : random(0..<24) {
            case 0..<4: await call("trigger") { try await self.trigger(connection, variant, reset: false, emptyCache: false) }
            case 4..<6: await call("reset") { try await self.trigger(connection, variant, reset: true, emptyCache: self.chance(0.5)) }
            case 6..<10: await call("provider webhook") { try await self.providerWebhook(connection) }
            case 10:
                guard variant != "base" else { continue }
                await call("delete variant") { try await self.deleteVariant(connection, variant) }
            case 11..<13:
                guard variant != "base" else { continue }
                await call("create variant") { try await self.createVariant(connection, variant) }
            case 13: await call("pause") { try await self.setPaused(true, connection, variant) }
            case 14..<16: await call("start") { try await self.setPaused(false, connection, variant) }
            case 16: await call("delete connection") { try await self.deleteConnection(connection) }
            case 17..<19: await call("import connection") { try await self.importConnection(connection) }
            case 19..<21:
                let process = forced ? (runningProcess ?? processes[0]) : processes[random(0..<processes.count)]
                guard process.isRunning else { continue }
                count("SIGKILL")
                process.kill9()
                let back = ContinuousClock.now + .milliseconds(300 + random(0..<1500))
                state.withLock { $0.downUntil[process.name] = back }
            case 21..<23:
                let process = forced ? (runningProcess ?? processes[0]) : processes[random(0..<processes.count)]
                guard process.isRunning, !process.isFrozen else { continue }
                count("SIGSTOP past the lease")
                process.freeze()
                let thawAt = ContinuousClock.now + .milliseconds(ChaosRun.leaseSeconds * 1000 + 500 + random(0..<1500))
                state.withLock { $0.thawAt[process.name] = thawAt }
            default:
                guard let postgres, ContinuousClock.now - lastDatabaseRestart > .seconds(8) else { continue }
                lastDatabaseRestart = ContinuousClock.now
                count("PostgreSQL restart")
                state.withLock { $0.databaseDown = true }
                do {
                    try postgres.stop()
                    try await Task.sleep(for: .milliseconds(500 + random(0..<2500)))
                    try postgres.start()
                } catch {
                    fail("could not restart PostgreSQL: \(error)")
                }
                state.withLock { $0.databaseDown = false }
            }
        }
    }

    /// Restarts processes that died (killed on purpose: once their time down is over) and thaws frozen
    /// ones when their time is up.
    func supervise(until end: ContinuousClock.Instant) async {
        while ContinuousClock.now < end, !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(100))
            restartDead()
            thawDue()
        }
    }

    func thawDue() {
        let now = ContinuousClock.now
        for process in processes {
            let due = state.withLock { state -> Bool in
                guard let at = state.thawAt[process.name], at <= now else { return false }
                state.thawAt[process.name] = nil
                return true
            }
            if due { process.thaw() }
        }
    }

    func restartDead() {
        let now = ContinuousClock.now
        for process in processes where !process.isRunning {
            let until = state.withLock { $0.downUntil[process.name] }
            if let until, until > now { continue }
            try? process.start()
        }
    }

    /// One API call of the chaos; its failure (a process is down, a variant is running) is part of the game.
    func call(_ name: String, _ body: @escaping @Sendable () async throws -> Void) async {
        count(name)
        _ = try? await body()
    }

    /// Everything up and thawed, the database running.
    func settle() async throws {
        for process in processes { process.thaw() }
        state.withLock {
            $0.downUntil = [:]
            $0.thawAt = [:]
        }
        if let postgres { try? postgres.start() }
        restartDead()
        try await waitForAPI(seconds: 60)
    }

    /// With PostgreSQL stopped, SIGTERM stops a worker within its shutdown budget (drain + 10 s) and a little.
    func shutdownWhileTheDatabaseIsDown() async {
        guard let postgres, let worker = processes.last, worker.isRunning else { return }
        do {
            try postgres.stop()
            let took = await worker.terminate(limit: .seconds(ChaosRun.drainSeconds + 25))
            if let took {
                note("SIGTERM with the database down: a worker stopped in \(took)")
                if took > .seconds(ChaosRun.drainSeconds + 15) { fail("a worker took \(took) to stop on SIGTERM with the database down") }
            } else {
                fail("a worker did not stop on SIGTERM within \(ChaosRun.drainSeconds + 25) s with the database down")
            }
            try postgres.start()
            try worker.start()
            try await waitForAPI(seconds: 60)
        } catch {
            fail("the shutdown-while-down check could not run: \(error)")
        }
    }

    /// Every connection imported, every variant created and started, then reset and synced once from
    /// the frozen shop — until each variant has a successful run that started after the reset.
    func syncEverythingOnce() async throws {
        let deadline = ContinuousClock.now + .seconds(180)
        for connection in connections {
            try await retrying("import \(connection)") { try await self.importConnection(connection) }
            for variant in variantNames { _ = try? await createVariant(connection, variant) }
            let all = ["base"] + variantNames
            try await retrying("start \(connection)") { try await self.setPaused(false, connection, all) }
        }
        note("every variant imported and started; resetting them")
        let resetAt = Timestamp.now()
        for connection in connections {
            try await retrying("reset \(connection)") {
                let status = try await self.api(
                    "POST", "/sync/trigger",
                    ["provider_config_key": "demo-shop", "connection_id": .string(connection), "syncs": .array((["base"] + self.variantNames).map { .string("orders::\($0)") }), "opts": ["reset": true]]).status
                guard status == 200 else { throw ChaosError("reset answered \(status)") }
            }
        }
        for connection in connections {
            for variant in ["base"] + variantNames {
                let ref = VariantRef(connection: ConnectionRef(environment: "dev", providerConfigKey: "demo-shop", connectionId: connection), syncName: "orders", variant: variant)
                while true {
                    guard ContinuousClock.now < deadline else {
                        fail("\(ref): no successful run from the frozen shop within 3 minutes")
                        break
                    }
                    let runs = (try? await store.runs(of: ref, limit: 20, includingWebhooks: false)) ?? []
                    if runs.contains(where: { $0.status == .succeeded && $0.startedAt.microseconds >= resetAt.microseconds }) { break }
                    // A failed final run (a provider error, a worker restarted): run it again.
                    if let latest = runs.first, latest.status.isFinished, latest.status != .succeeded, latest.startedAt.microseconds >= resetAt.microseconds {
                        _ = try? await trigger(connection, variant, reset: false, emptyCache: false)
                    }
                    try await Task.sleep(for: .milliseconds(200))
                }
            }
        }
    }

    func waitForPurges() async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            if let census = try? await bounded("the store census", seconds: 20, { [location] in try await StoreCensus.take(location) }),
                census.pendingPurges == 0 { return }
            try await Task.sleep(for: .milliseconds(250))
        }
        fail("deleted datasets were not purged within 60 s")
    }

    func stopEverything() async {
        for process in processes {
            guard process.isRunning else { continue }
            let budget = Duration.seconds(ChaosRun.drainSeconds + 10)
            if let took = await process.terminate(limit: budget + .seconds(10)) {
                if took > budget + .seconds(3) { fail("\(process.name) took \(took) to stop on SIGTERM") }
            } else {
                fail("\(process.name) did not stop on SIGTERM")
            }
        }
    }

    // MARK: The follower

    /// Reads every variant's change feed from where it last stopped (`until`: once more up to then;
    /// nil: over and over until cancelled): cursors only grow, and no record is marked deleted while
    /// the shop still listed it.
    func follow(until stop: ContinuousClock.Instant?) async {
        repeat {
            for connection in connections {
                let ref = ConnectionRef(environment: "dev", providerConfigKey: "demo-shop", connectionId: connection)
                for variant in ["base"] + variantNames {
                    let dataset = DatasetRef(connection: ref, model: "Order", variant: variant)
                    while !Task.isCancelled {
                        let cursor = state.withLock { $0.cursors[dataset] }
                        guard let query = try? ChangeQuery(dataset: dataset, cursor: cursor, limit: 500),
                            let page = try? await store.changes(query)
                        else { break }
                        for record in page.records { observe(record, in: dataset) }
                        if page.nextCursor == nil { break }
                    }
                }
            }
            if stop == nil { try? await Task.sleep(for: .milliseconds(150)) }
        } while stop == nil && !Task.isCancelled
    }

    func observe(_ record: StoredRecord, in dataset: DatasetRef) {
        let previous = state.withLock { state -> FeedCursor? in
            state.report.changesFollowed += 1
            defer { state.cursors[dataset] = record.cursor }
            return state.cursors[dataset]
        }
        if let previous, !(record.cursor > previous) {
            fail("\(dataset.connection.connectionId)/\(dataset.variant): the feed went back (\(record.cursor) after \(previous))")
        }
        guard let deleted = record.deletedAt, let leaves = DemoShop.leavesListing(record.id) else { return }
        // Deleted only once the shop no longer listed it (its shop time at the deleting transaction).
        let shopTime = provider.shopTime(at: deleted.date)
        if shopTime.addingTimeInterval(2) < leaves {
            fail(
                "\(dataset.connection.connectionId)/\(dataset.variant): record \(record.id) was marked deleted at shop time \(Timestamp(shopTime).iso8601), while the shop listed it until \(Timestamp(leaves).iso8601)"
            )
        }
    }

    // MARK: The checks

    func check(frozen: Date) async throws {
        for connection in connections {
            let ref = ConnectionRef(environment: "dev", providerConfigKey: "demo-shop", connectionId: connection)
            for variant in ["base"] + variantNames {
                let variantRef = VariantRef(connection: ref, syncName: "orders", variant: variant)
                // The records are the shop's, field for field.
                var live: [String: JSONValue] = [:]
                var seen = Set<String>()
                var cursor: FeedCursor? = nil
                repeat {
                    let page = try await store.changes(try ChangeQuery(dataset: variantRef.dataset("Order"), cursor: cursor, limit: 1000))
                    for record in page.records {
                        if !seen.insert(record.id).inserted { fail("\(connection)/\(variant): record \(record.id) appears twice in the feed") }
                        if record.deletedAt == nil { live[record.id] = try JSONParser.parse(record.json) }
                    }
                    cursor = page.nextCursor
                } while cursor != nil
                let truth = Dictionary(uniqueKeysWithValues: DemoShop.orders(store: variant, at: frozen).map { ($0["id"]?.stringValue ?? "", JSONValue.object($0)) })
                let missing = Set(truth.keys).subtracting(live.keys)
                let extra = Set(live.keys).subtracting(truth.keys)
                if !missing.isEmpty { fail("\(connection)/\(variant): \(missing.count) records lost or falsely deleted, e.g. \(missing.sorted().prefix(3))") }
                if !extra.isEmpty { fail("\(connection)/\(variant): \(extra.count) records the shop no longer lists are still live, e.g. \(extra.sorted().prefix(3))") }
                let wrong = truth.filter { id, order in live[id].map { $0 != order } ?? false }.keys.sorted()
                if !wrong.isEmpty { fail("\(connection)/\(variant): \(wrong.count) records differ from the shop's, e.g. \(wrong.prefix(3))") }
                if let counts = try? await store.recordCounts(of: variantRef), counts["Order"] != truth.count {
                    fail("\(connection)/\(variant): recordCount \(counts["Order"] ?? 0), the shop lists \(truth.count)")
                }
                state.withLock { $0.report.recordsChecked += live.count }
                // No two runs of the variant overlapped: each that ran started after the one before ended
                // (a run cancelled while queued never ran: its start is its queue time).
                let runs = try await store.runs(of: variantRef, limit: 100_000, includingWebhooks: false).filter { $0.attempts > 0 }.sorted { $0.id < $1.id }
                state.withLock { $0.report.runs += runs.count }
                for (earlier, later) in zip(runs, runs.dropFirst()) {
                    guard let end = earlier.finishedAt else {
                        fail("\(connection)/\(variant): run \(earlier.id) is \(earlier.status.rawValue) while a later run \(later.id) exists")
                        continue
                    }
                    if later.startedAt < end {
                        fail("\(connection)/\(variant): runs \(earlier.id) and \(later.id) overlap (\(later.startedAt.iso8601) < \(end.iso8601))")
                    }
                }
            }
        }
        let census = try await bounded("the store census", seconds: 30) { [location] in try await StoreCensus.take(location) }
        if census.orphanRecords > 0 { fail("\(census.orphanRecords) records of deleted datasets remain") }
        if census.pendingPurges > 0 { fail("\(census.pendingPurges) datasets still wait for the purge") }
        if census.datasetsWithoutVariant > 0 { fail("\(census.datasetsWithoutVariant) datasets of deleted variants remain") }
        if census.unscheduledVariants > 0 { fail("\(census.unscheduledVariants) started variants have neither an active run nor a next run") }
        if census.variantsWithSeveralActiveRuns > 0 { fail("\(census.variantsWithSeveralActiveRuns) variants have two active runs") }
        let expectedVariants = options.connections * (options.variants + 1)
        if census.variants != expectedVariants { fail("\(census.variants) variants exist, \(expectedVariants) expected") }
    }

    // MARK: API calls

    @discardableResult
    func api(_ method: String, _ path: String, _ body: JSONValue? = nil, authenticated: Bool = true, signed: Bool = false) async throws -> (status: Int, json: JSONValue) {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(apiPort)\(path)")
        request.method = .init(rawValue: method)
        if authenticated { request.headers.add(name: "Authorization", value: "Bearer \(ChaosRun.key)") }
        if let body {
            let bytes = JSONWriter.bytes(body, canonical: false)
            request.headers.add(name: "Content-Type", value: "application/json")
            if signed { request.headers.add(name: "X-Signature-Sha256", value: WebhookSignature.sign(bytes, key: ChaosRun.webhookSecret)) }
            request.body = .bytes(ByteBuffer(bytes: bytes))
        }
        let client = http
        let prepared = request
        return try await bounded("\(method) \(path)", seconds: 30) {
            let response = try await client.execute(prepared, timeout: .seconds(15))
            let bytes = try await response.body.collect(upTo: 1 << 22)
            return (Int(response.status.code), (try? JSONParser.parse(Array(bytes.readableBytesView))) ?? .null)
        }
    }

    func waitForAPI(seconds: Int) async throws {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            if let status = try? await api("GET", "/health", authenticated: false).status, status == 200 { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw ChaosError("the API did not answer within \(seconds) s (see \(directory.path)/*.log)")
    }

    /// Tries `body` until it succeeds (processes restart, the database comes back), for a minute at most.
    func retrying(_ what: String, _ body: @escaping @Sendable () async throws -> Void) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        while true {
            do {
                try await body()
                return
            } catch {
                guard ContinuousClock.now < deadline else { throw ChaosError("\(what) kept failing: \(error)") }
                restartDead()
                try await Task.sleep(for: .milliseconds(250))
            }
        }
    }

    func importConnection(_ connection: String) async throws {
        let status = try await api(
            "POST", "/connections",
            ["provider_config_key": "demo-shop", "connection_id": .string(connection), "credentials": ["type": "API_KEY", "api_key": .string(ChaosRun.shopKey)]]
        ).status
        guard status == 200 || status == 201 else { throw ChaosError("import answered \(status)") }
    }

    func createVariant(_ connection: String, _ variant: String) async throws {
        let response = try await api("POST", "/sync/orders/variant/\(variant)", ["provider_config_key": "demo-shop", "connection_id": .string(connection)])
        guard response.status == 200 || response.json["error"]?["code"] == "sync_variant_already_exists" else {
            throw ChaosError("create variant answered \(response.status)")
        }
    }

    func deleteVariant(_ connection: String, _ variant: String) async throws {
        try await api("DELETE", "/sync/orders/variant/\(variant)", ["provider_config_key": "demo-shop", "connection_id": .string(connection)])
    }

    func deleteConnection(_ connection: String) async throws {
        try await api("DELETE", "/connections/\(connection)?provider_config_key=demo-shop")
    }

    func trigger(_ connection: String, _ variant: String, reset: Bool, emptyCache: Bool) async throws {
        var body: JSONObject = ["provider_config_key": "demo-shop", "connection_id": .string(connection), "syncs": [.string("orders::\(variant)")]]
        if reset { body["opts"] = ["reset": true, "emptyCache": .bool(emptyCache)] }
        try await api("POST", "/sync/trigger", .object(body))
    }

    func setPaused(_ paused: Bool, _ connection: String, _ variant: String) async throws {
        try await setPaused(paused, connection, [variant])
    }

    func setPaused(_ paused: Bool, _ connection: String, _ variants: [String]) async throws {
        let status = try await api(
            "POST", paused ? "/sync/pause" : "/sync/start",
            ["provider_config_key": "demo-shop", "connection_id": .string(connection), "syncs": .array(variants.map { .string("orders::\($0)") })]
        ).status
        guard status == 200 else { throw ChaosError("\(paused ? "pause" : "start") answered \(status)") }
    }

    /// `order.updated` for one of the base store's orders as the shop has it now.
    func providerWebhook(_ connection: String) async throws {
        let orders = DemoShop.orders(store: "base", at: provider.now)
        guard !orders.isEmpty else { return }
        let order = orders[random(0..<orders.count)]
        try await api(
            "POST", "/webhook/dev/demo-shop", ["event": "order.updated", "connection": .string(connection), "order": .object(order)], authenticated: false,
            signed: true)
    }
}
