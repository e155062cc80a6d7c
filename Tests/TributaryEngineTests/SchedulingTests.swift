import Foundation
import Logging
import PostgresNIO
import ServiceLifecycle
import Synchronization
import Testing
import TributaryCore
@testable import TributaryEngine
import TributaryPostgres
import TributarySQLite
import TributaryStore
import TributaryTestSupport

/// A clock tests move by hand.
final class TestClock: Sendable {
    // Starts just after the real time: the store stamps variants with the real clock when it creates
    // them, and they must be due at the test's "now" even on a busy machine.
    private let now = Mutex(Timestamp(microseconds: Timestamp.now().microseconds + 30_000_000))
    var current: Timestamp { now.withLock { $0 } }
    func advance(seconds: Int64) { now.withLock { $0 = Timestamp(microseconds: $0.microseconds + seconds * 1_000_000) } }
    var function: @Sendable () -> Timestamp { { self.current } }
}

/// Counts runs that are inside a sync function right now, and the most seen at once.
final class Occupancy: Sendable {
    private struct State {
        var active: [String: Int] = [:]
        var peak: [String: Int] = [:]
        var total = 0
        var peakTotal = 0
        var started: [String] = []
        var finished: [String] = []
    }
    private let state = Mutex(State())

    func enter(_ connection: String, _ name: String) {
        state.withLock { s in
            s.active[connection, default: 0] += 1
            s.peak[connection] = max(s.peak[connection] ?? 0, s.active[connection]!)
            s.total += 1
            s.peakTotal = max(s.peakTotal, s.total)
            s.started.append(name)
        }
    }
    func leave(_ connection: String, _ name: String) {
        state.withLock { s in
            s.active[connection, default: 1] -= 1
            s.total -= 1
            s.finished.append(name)
        }
    }
    var started: [String] { state.withLock { $0.started } }
    var finished: [String] { state.withLock { $0.finished } }
    var peakTotal: Int { state.withLock { $0.peakTotal } }
    func peak(_ connection: String) -> Int { state.withLock { $0.peak[connection] ?? 0 } }
}

/// A store, an executor over gated functions, a coordinator running as a service, and a scheduler.
final class SchedulingFixture: Sendable {
    let engine: EngineFixture
    let clock = TestClock()
    let gate = Gate()
    let occupancy = Occupancy()
    let coordinator: RunCoordinator
    let queue: RunQueue
    let scheduler: Scheduler
    let config: TributaryConfig
    let group: ServiceGroup

    init(
        limits: RunCoordinator.Limits = RunCoordinator.Limits(), openGates: Set<String> = [], kind: StoreKind = .sqlite,
        beforeShutdownStop: @escaping @Sendable () async -> Void = {}
    ) async throws {
        let gate = gate
        let occupancy = occupancy
        // "gated" waits for the gate unless its variant is listed in `openGates`; "fast" saves one record.
        let gated = ClosureSyncFunction(name: "gated") { nango in
            let name = "\(nango.connectionId)/\(nango.variant)"
            occupancy.enter(nango.connectionId, name)
            defer { occupancy.leave(nango.connectionId, name) }
            while !gate.isOpen(for: name) && !openGates.contains(nango.variant) {
                try await Task.sleep(for: .milliseconds(2))
                try nango.checkCancellation()
            }
            try await nango.batchSave([["id": .string(name)]], model: "Item")
        }
        engine = try await EngineFixture([gated], kind: kind)
        config = try ConfigLoader.parse(
            yaml: """
                environments:
                  dev: { secret_key: dev-key-0000000000000001 }
                integrations:
                  shop:
                    syncs:
                      items: { function: gated, models: [Item], frequency: every 5 minutes }
                """,
            file: "test.yaml", environment: [:])
        var logger = Logger(label: "scheduling")
        logger.logLevel = .critical
        coordinator = RunCoordinator(
            executor: engine.executor, config: config, limits: limits, clock: clock.function, logger: logger, beforeShutdownStop: beforeShutdownStop)
        queue = RunQueue(store: engine.store, worker: coordinator)
        scheduler = Scheduler(config: config, store: engine.store, worker: coordinator, clock: clock.function, logger: logger)
        group = ServiceGroup(configuration: ServiceGroupConfiguration(services: [coordinator], logger: logger))
    }

    var sync: SyncConfig { config.integrations[0].syncs[0] }

    /// Creates the variant (as the API does) and queues a run of it.
    func start(_ ref: VariantRef) async throws {
        try await engine.store.ensureVariant(ref)
        try await queue.trigger(ref)
    }

    func ref(_ connection: String, _ variant: String = "base") -> VariantRef {
        VariantRef(connection: ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: connection), syncName: "items", variant: variant)
    }

    /// Runs `body` while the coordinator service runs.
    func running(_ body: @escaping @Sendable () async throws -> Void) async throws {
        let group = self.group
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            defer { gate.release() }
            do {
                try await body()
            } catch {
                await group.triggerGracefulShutdown()
                throw error
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    /// Waits until none of `refs` has a queued or running run, and the worker has planned their next runs.
    func idle(_ refs: [VariantRef]) async throws {
        try await eventually("runs to finish") {
            for ref in refs where try await self.queue.isActive(ref) || self.coordinator.isRunningHere(ref) { return false }
            return true
        }
    }
}


/// Another service of a group, failing once the run `c1/stuck` is inside its function (however
/// loaded the machine is): its group is cancelled outright, not shut down gracefully.
struct FailsOnceStuckRuns: Service {
    struct Boom: Error {}
    let occupancy: Occupancy

    func run() async throws {
        let deadline = ContinuousClock.now + .seconds(20)
        while !occupancy.started.contains("c1/stuck"), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        throw Boom()
    }
}

/// Holds whoever waits on it until it is opened — cancelled tasks too (it ignores cancellation).
final class Hold: Sendable {
    private struct State {
        var open = false
        var waited = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    private let state = Mutex(State())

    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let pass = state.withLock { s in
                s.waited = true
                if !s.open { s.waiters.append(continuation) }
                return s.open
            }
            if pass { continuation.resume() }
        }
    }

    func open() {
        let waiters = state.withLock { s in
            s.open = true
            defer { s.waiters = [] }
            return s.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Whether anyone came to wait.
    var waited: Bool { state.withLock { $0.waited } }
}

final class Gate: Sendable {
    private let open = Mutex(false)
    private let released = Mutex<Set<String>>([])
    func release() { open.withLock { $0 = true } }
    var isOpen: Bool { open.withLock { $0 } }
    /// Opens the gate for one run only (`connection/variant`).
    func releaseOnly(_ name: String) { _ = released.withLock { $0.insert(name) } }
    func isOpen(for name: String) -> Bool { isOpen || released.withLock { $0.contains(name) } }
}

@Suite("Scheduling and concurrency")
struct SchedulingTests {
    @Test(arguments: StoreKind.available) func dueVariantsRunOnTheirOwnGridPausedOnesDoNot(_ kind: StoreKind) async throws {
        let f = try await SchedulingFixture(openGates: ["base", "weekly"], kind: kind)
        let base = f.ref("c1")
        let paused = f.ref("c1", "paused")
        let weekly = f.ref("c1", "weekly")
        for ref in [base, paused, weekly] { try await f.engine.store.ensureVariant(ref) }
        try await f.engine.store.setPaused(true, for: paused)
        try await f.engine.store.setFrequency("every week", for: weekly)
        try await f.running {
            // New variants are due at once (their next run is their creation time).
            let first = try await f.scheduler.tick()
            #expect(Set(first) == [base, weekly])
            try await f.idle([base, weekly])
            let baseState = try #require(try await f.engine.store.variantState(base))
            let weeklyState = try #require(try await f.engine.store.variantState(weekly))
            #expect(baseState.nextRunAt == Schedule.nextSlot(after: f.clock.current, origin: baseState.createdAt, intervalSeconds: 300))
            #expect(weeklyState.nextRunAt == Schedule.nextSlot(after: f.clock.current, origin: weeklyState.createdAt, intervalSeconds: 604_800))
            #expect(try await f.scheduler.tick().isEmpty, "nothing due before the next slot")
            f.clock.advance(seconds: 300)
            #expect(try await f.scheduler.tick() == [base], "five minutes later only the 5-minute variant is due")
            try await f.idle([base])
            #expect(try await f.engine.store.runs(of: base, limit: 10).count == 2)
            #expect(try await f.engine.store.runs(of: weekly, limit: 10).count == 1)
            #expect(try await f.engine.store.runs(of: paused, limit: 10).isEmpty)
            // Started again after missing slots: it runs at once.
            try await f.engine.store.setPaused(false, for: paused)
            f.gate.release()
            #expect(try await f.scheduler.tick() == [paused])
            try await f.idle([paused])
        }
    }

    /// The scheduler sleeps until the earliest planned run when that comes before its next tick, so
    /// a run starts at its slot rather than up to a tick late (schedule lag, docs/BENCHMARKS.md).
    @Test(arguments: StoreKind.available) func theSchedulerWakesForThePlannedRunBeforeItsTick(_ kind: StoreKind) async throws {
        let f = try await SchedulingFixture(openGates: ["base"], kind: kind)
        let planned = f.ref("c1")
        let paused = f.ref("c1", "paused")
        for ref in [planned, paused] { try await f.engine.store.ensureVariant(ref) }
        let now = Timestamp.now()
        try await f.engine.store.setPaused(true, for: paused)
        try await f.engine.store.setNextRun(Timestamp(microseconds: now.microseconds + 100_000), for: paused)
        try await f.engine.store.setNextRun(Timestamp(microseconds: now.microseconds + 500_000), for: planned)
        #expect(try await f.engine.store.nextScheduledRun(after: now) == Timestamp(microseconds: now.microseconds + 500_000), "paused variants plan nothing")
        #expect(try await f.engine.store.nextScheduledRun(after: Timestamp(microseconds: now.microseconds + 500_000)) == nil)
        var logger = Logger(label: "scheduling")
        logger.logLevel = .critical
        let scheduler = Scheduler(config: f.config, store: f.engine.store, worker: f.coordinator, interval: .seconds(60), logger: logger)
        try await f.running {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await scheduler.run() }
                defer { group.cancelAll() }
                let start = ContinuousClock.now
                try await eventually("the planned run", seconds: 20) { try await !f.engine.store.runs(of: planned, limit: 1).isEmpty }
                #expect(ContinuousClock.now - start < .seconds(10), "queued at its planned time, not at the 60 s tick")
                #expect(try await f.engine.store.runs(of: paused, limit: 1).isEmpty)
            }
        }
    }

    /// A variant created or resumed through this process's run queue wakes its scheduler: the first
    /// run is queued at once, not at the next tick (here 60 s away).
    @Test(arguments: StoreKind.available) func aVariantCreatedOrResumedHereIsQueuedWithoutWaitingForTheTick(_ kind: StoreKind) async throws {
        let f = try await SchedulingFixture(openGates: ["base", "fresh", "resumed"], kind: kind)
        let first = f.ref("c1")
        let fresh = f.ref("c1", "fresh")
        let resumed = f.ref("c1", "resumed")
        try await f.engine.store.ensureVariant(first)
        var logger = Logger(label: "scheduling")
        logger.logLevel = .critical
        let scheduler = Scheduler(config: f.config, store: f.engine.store, worker: f.coordinator, interval: .seconds(60), logger: logger)
        let queue = RunQueue(store: f.engine.store, worker: f.coordinator, scheduler: scheduler)
        try await f.running {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await scheduler.run() }
                defer { group.cancelAll() }
                // The first pass queues `first`; its next run is then five minutes away, so the
                // scheduler sleeps for its whole 60 s tick.
                try await eventually("the first pass") { try await !f.engine.store.runs(of: first, limit: 1).isEmpty }
                try await f.idle([first])
                _ = try await queue.createVariant(resumed, maximumPerSync: 100, paused: true)
                try await Task.sleep(for: .milliseconds(100))
                let start = ContinuousClock.now
                _ = try await queue.createVariant(fresh, maximumPerSync: 100, paused: false)
                try await eventually("the new variant's first run", seconds: 20) { try await !f.engine.store.runs(of: fresh, limit: 1).isEmpty }
                #expect(ContinuousClock.now - start < .seconds(10), "queued at its creation, not at the 60 s tick")
                #expect(try await f.engine.store.runs(of: resumed, limit: 1).isEmpty, "created paused: no run")
                let resuming = ContinuousClock.now
                try await queue.setPaused(false, [resumed])
                try await eventually("the resumed variant's run", seconds: 20) { try await !f.engine.store.runs(of: resumed, limit: 1).isEmpty }
                #expect(ContinuousClock.now - resuming < .seconds(10), "queued when resumed, not at the 60 s tick")
            }
        }
    }

    /// On PostgreSQL an API-only process's trigger and new variant reach a worker process at once
    /// through the store's queue signals (`NOTIFY` in their transactions, `LISTEN` in the worker
    /// process), not at its next poll (here 60 s away); a listener whose connection is cut listens
    /// again and looks once.
    @Test(.enabled(if: StoreKind.postgresURL != nil, "needs TRIBUTARY_TEST_POSTGRES_URL"))
    func anotherProcessesTriggerAndNewVariantWakeThisWorkerAndSchedulerThroughTheStore() async throws {
        let f = try await SchedulingFixture(limits: RunCoordinator.Limits(poll: .seconds(60)), openGates: ["base", "fresh"], kind: .postgres)
        let ready = f.ref("c1")
        let triggered = f.ref("c2")
        let fresh = f.ref("c1", "fresh")
        let later = Timestamp(microseconds: Timestamp.now().microseconds + 3_600_000_000)
        for ref in [ready, triggered] {
            try await f.engine.store.ensureVariant(ref)
            try await f.engine.store.setNextRun(later, for: ref)
        }
        // The API process: its own store instance (its own pool), no worker, no scheduler.
        let apiStore = try await f.engine.testStore.reopen()
        let api = RunQueue(store: apiStore)
        var logger = Logger(label: "scheduling")
        logger.logLevel = .critical
        let scheduler = Scheduler(config: f.config, store: f.engine.store, worker: f.coordinator, interval: .seconds(60), logger: logger)
        let signals = try #require(f.engine.store as? any QueueSignals)
        let listener = QueueSignalListener(signals: signals, worker: f.coordinator, scheduler: scheduler, logger: logger)
        let quiet = logger
        let admin = try await PostgresConnection.connect(
            configuration: try PostgresURL(f.engine.testStore.location).connectionConfiguration(), id: 9, logger: quiet)
        @Sendable func signalRunsQueued() async throws {
            try await admin.query("SELECT pg_notify('tributary_queue', 'runs')", logger: quiet)
        }
        @Sendable func claimed(_ ref: VariantRef) async throws -> Bool {
            try await f.engine.store.runs(of: ref, limit: 1).first.map { $0.status != .queued } ?? false
        }
        do {
            try await f.running {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await scheduler.run() }
                    group.addTask { try await listener.run() }
                    defer { group.cancelAll() }
                    // The worker's first poll and the scheduler's first pass are over; both now wait 60 s.
                    try await Task.sleep(for: .milliseconds(300))
                    // The listener may still be starting to listen: signalled again until it hears.
                    try await apiStore.enqueueRuns([ready])
                    let listening = ContinuousClock.now
                    try await eventually("the listener to hear a signal", seconds: 20) {
                        try await signalRunsQueued()
                        return try await claimed(ready)
                    }
                    #expect(ContinuousClock.now - listening < .seconds(10), "claimed at a signal, not at the 60 s poll")
                    // Once that run is over the worker claims again (a slot came free), then waits for its poll.
                    try await f.idle([ready])
                    try await Task.sleep(for: .milliseconds(300))
                    let start = ContinuousClock.now
                    try await api.trigger(triggered)
                    try await eventually("the triggered run to be claimed", seconds: 20) { try await claimed(triggered) }
                    #expect(ContinuousClock.now - start < .seconds(10), "the trigger's signal woke the worker")
                    let creating = ContinuousClock.now
                    _ = try await api.createVariant(fresh, maximumPerSync: 100, paused: false)
                    try await eventually("the new variant's first run", seconds: 20) { try await !f.engine.store.runs(of: fresh, limit: 1).isEmpty }
                    #expect(ContinuousClock.now - creating < .seconds(10), "the new variant's signal woke the scheduler")

                    // The listening connection is cut (a database restart, a failover) and a run is queued
                    // meanwhile: the listener listens again after its 1 s wait and looks once.
                    try await f.idle([fresh])
                    try await Task.sleep(for: .milliseconds(300))
                    let cut = try await admin.query(
                        """
                        SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                        WHERE datname = current_database() AND application_name = 'tributary-queue-signals'
                        """, logger: quiet
                    ).collect().first?.decode(Int.self)
                    #expect(cut == 1, "the listener's one connection, by its name")
                    let again = f.ref("c3")
                    try await f.engine.store.ensureVariant(again)
                    try await f.engine.store.setNextRun(later, for: again)
                    try await apiStore.enqueueRuns([again])
                    let cutAt = ContinuousClock.now
                    try await eventually("the listener to listen again and look", seconds: 20) { try await claimed(again) }
                    #expect(ContinuousClock.now - cutAt < .seconds(10), "found at the listener's return, not at the 60 s poll")
                }
            }
        } catch {
            try? await admin.close()
            throw error
        }
        try await admin.close()
    }

    @Test(arguments: StoreKind.available) func slotsMissedWhileRunningAreSkippedNotQueued(_ kind: StoreKind) async throws {
        let f = try await SchedulingFixture(kind: kind)
        let ref = f.ref("c1")
        let created = try await f.engine.store.ensureVariant(ref)
        try await f.running {
            #expect(try await f.scheduler.tick() == [ref])
            // The run takes "an hour": twelve 5-minute slots pass while it runs.
            for _ in 0..<12 {
                f.clock.advance(seconds: 300)
                #expect(try await f.scheduler.tick().isEmpty)
            }
            f.clock.advance(seconds: 10)
            f.gate.release()
            try await f.idle([ref])
            let state = try #require(try await f.engine.store.variantState(ref))
            #expect(state.nextRunAt == Schedule.nextSlot(after: f.clock.current, origin: created.createdAt, intervalSeconds: 300))
            #expect(try await f.scheduler.tick().isEmpty, "no backlog of missed runs")
            #expect(try await f.engine.store.runs(of: ref, limit: 50).count == 1)
        }
    }

    @Test(arguments: StoreKind.available) func limitsHoldAndConnectionsAreServedFairly(_ kind: StoreKind) async throws {
        let f = try await SchedulingFixture(limits: RunCoordinator.Limits(maxConcurrentRuns: 3, maxRunsPerConnection: 2), kind: kind)
        let busy = (1...6).map { f.ref("busy", "v\($0)") }
        let others = [f.ref("quiet-1", "v1"), f.ref("quiet-2", "v1")]
        try await f.running {
            for ref in busy + others { try await f.engine.store.ensureVariant(ref) }
            // Queued together (one batch), busy first: fairness decides the start order, not arrival.
            try await f.queue.trigger(busy + others)
            try await eventually("the first wave") { f.occupancy.started.count == 3 }
            try await Task.sleep(for: .milliseconds(50))
            // The connection with six queued variants did not take every slot: both quiet ones got in.
            #expect(Set(f.occupancy.started) == ["busy/v1", "quiet-1/v1", "quiet-2/v1"])
            f.gate.release()
            try await f.idle(busy + others)
            #expect(f.occupancy.finished.count == 8)
            #expect(f.occupancy.peakTotal <= 3)
            #expect(f.occupancy.peak("busy") <= 2)
        }
    }

    @Test(arguments: StoreKind.available) func aSlowVariantDoesNotHoldUpTheOthers(_ kind: StoreKind) async throws {
        let fastOnes: Set<String> = ["f1", "f2", "f3", "f4"]
        let f = try await SchedulingFixture(limits: RunCoordinator.Limits(maxConcurrentRuns: 4, maxRunsPerConnection: 2), openGates: fastOnes, kind: kind)
        let slow = f.ref("c1", "slow")
        let fast = fastOnes.sorted().map { f.ref("c1", $0) }
        try await f.running {
            try await f.start(slow)
            for ref in fast { try await f.start(ref) }
            try await f.idle(fast)
            #expect(try await f.queue.isActive(slow), "the slow run is still going")
            for ref in fast { #expect(try await f.engine.store.runs(of: ref, limit: 1).first?.status == .succeeded) }
            f.gate.release()
            try await f.idle([slow])
        }
    }

    @Test(arguments: StoreKind.available) func shutdownDrainsRunningRunsThenCancelsAndRequeuesTheRest(_ kind: StoreKind) async throws {
        // Drain time 3 s (room for a loaded machine): a run that finishes within it succeeds; one still blocked is cancelled and
        // queued again (it keeps its checkpoint), so the next worker to start resumes it.
        let f = try await SchedulingFixture(
            limits: RunCoordinator.Limits(maxConcurrentRuns: 4, maxRunsPerConnection: 4, drain: .seconds(3)), openGates: [], kind: kind)
        let quick = f.ref("c1", "quick")
        let stuck = f.ref("c1", "stuck")
        let late = f.ref("c1", "late")
        let group = f.group
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await f.start(quick)
            try await f.start(stuck)
            try await eventually("both runs to start") { f.occupancy.started.count == 2 }
            let shutdown = ContinuousClock.now
            await group.triggerGracefulShutdown()
            // "quick" is released shortly after the shutdown signal: it is drained, not cancelled.
            try await Task.sleep(for: .milliseconds(50))
            // A trigger during shutdown is kept in the store for the next worker; this one claims nothing more.
            try await f.start(late)
            f.gate.releaseOnly("c1/quick")
            try await tasks.waitForAll()
            #expect(ContinuousClock.now - shutdown < .seconds(5))
        }
        let quickRuns = try await f.engine.store.runs(of: quick, limit: 5)
        #expect(quickRuns.map(\.status) == [.succeeded], "quick: \(quickRuns.map { "\($0.status) \($0.error ?? "")" })")
        // Stopped by the group's cancellation, the run went back to the queue (the same run, to resume).
        #expect(try await f.engine.store.runs(of: stuck, limit: 5).map(\.status) == [.queued])
        #expect(try await f.engine.store.runs(of: late, limit: 5).map(\.status) == [.queued])
        #expect(!f.occupancy.started.contains("c1/late"))
    }

    @Test(arguments: StoreKind.available) func whenAnotherServiceFailsTheWorkerStopsAtOnceAndRequeuesItsRun(_ kind: StoreKind) async throws {
        // Another service of the group fails (say the API cannot bind its port): the group is
        // cancelled, not shut down gracefully. The worker must end at once — no drain wait, no
        // polling on — and its interrupted run is queued again.
        let f = try await SchedulingFixture(limits: RunCoordinator.Limits(maxConcurrentRuns: 2, maxRunsPerConnection: 2, drain: .seconds(60)), kind: kind)
        var logger = Logger(label: "failing-group")
        logger.logLevel = .critical
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: [f.coordinator, FailsOnceStuckRuns(occupancy: f.occupancy)], logger: logger))
        let stuck = f.ref("c1", "stuck")
        try await f.start(stuck)
        await #expect(throws: FailsOnceStuckRuns.Boom.self) { try await group.run() }
        #expect(f.occupancy.finished.contains("c1/stuck"), "the function was stopped (the gate never opened)")
        #expect(f.occupancy.started.contains("c1/stuck"), "the run had started")
        // Stopped by the group's cancellation, the run went back to the queue (the same run, to resume).
        #expect(try await f.engine.store.runs(of: stuck, limit: 5).map(\.status) == [.queued])
    }

    /// The same failure, with the order that once ended such a run as cancelled made certain: the
    /// worker is held between the end of its claim loop and its shutdown stop (which marks its runs
    /// stopped by the shutdown) until the run, its task cancelled with the group, has ended in the
    /// store. It ended queued again: the run's own task cancelled counts as the shutdown's stop.
    @Test(.timeLimit(.minutes(1)), arguments: StoreKind.available) func aRunCancelledWithItsGroupBeforeTheWorkerMarksItIsQueuedAgain(_ kind: StoreKind) async throws {
        let hold = Hold()
        let f = try await SchedulingFixture(
            limits: RunCoordinator.Limits(maxConcurrentRuns: 2, maxRunsPerConnection: 2, drain: .seconds(60)), kind: kind,
            beforeShutdownStop: { await hold.wait() })
        var logger = Logger(label: "failing-group")
        logger.logLevel = .critical
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: [f.coordinator, FailsOnceStuckRuns(occupancy: f.occupancy)], logger: logger))
        let stuck = f.ref("c1", "stuck")
        try await f.start(stuck)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            defer { hold.open() }
            try await eventually("the stopped run to end in the store") {
                guard f.occupancy.finished.contains("c1/stuck") else { return false }
                return try await f.engine.store.runs(of: stuck, limit: 5).map(\.status) != [.running]
            }
            try await eventually("the worker to be held before its shutdown stop") { hold.waited }
            #expect(try await f.engine.store.runs(of: stuck, limit: 5).map(\.status) == [.queued])
            hold.open()
            await #expect(throws: FailsOnceStuckRuns.Boom.self) { try await tasks.waitForAll() }
        }
        #expect(f.occupancy.started == ["c1/stuck"])
    }

    @Test(arguments: StoreKind.available) func cancellingAQueuedRunDropsItBeforeItStarts(_ kind: StoreKind) async throws {
        let f = try await SchedulingFixture(limits: RunCoordinator.Limits(maxConcurrentRuns: 1, maxRunsPerConnection: 1), kind: kind)
        let first = f.ref("c1", "a")
        let queued = f.ref("c1", "b")
        try await f.running {
            try await f.start(first)
            try await f.start(queued)
            try await eventually("the first run") { f.occupancy.started.count == 1 }
            try await f.queue.setPaused(true, [queued])
            #expect(try await !f.queue.isActive(queued))
            f.gate.release()
            try await f.idle([first])
            #expect(!f.occupancy.started.contains("c1/b"), "the cancelled run never reached its function")
            let runs = try await f.engine.store.runs(of: queued, limit: 5)
            #expect(runs.map(\.status) == [.cancelled])
            #expect(runs.first?.error == "Cancelled before it started: the variant was paused.")
        }
    }

    @Test(arguments: StoreKind.available) func aRunStopsWhenAnotherProcessCancelsItThroughTheStore(_ kind: StoreKind) async throws {
        // The cancel comes through the store only (as from an API process): no local shortcut.
        let f = try await SchedulingFixture(kind: kind)
        let ref = f.ref("c1")
        let apiOnly = RunQueue(store: f.engine.store, worker: nil)
        try await f.running {
            try await f.start(ref)
            try await eventually("the run to start") { f.occupancy.started.count == 1 }
            let asked = ContinuousClock.now
            let outcome = try await apiOnly.setPaused(true, [ref])
            // Ended in the store at once; its worker sees the lease gone at its next check and stops the function.
            #expect(outcome.ended.map(\.status) == [.cancelled])
            try await eventually("the function to stop") { f.occupancy.finished == ["c1/base"] }
            #expect(ContinuousClock.now - asked < .seconds(5), "stopped within a few lease checks")
            let run = try #require(try await f.engine.store.runs(of: ref, limit: 1).first)
            #expect(run.status == .cancelled)
            #expect(run.error == "Cancelled: the variant was paused.")
            f.gate.release()
            try await eventually("the worker to let go") { !f.coordinator.isRunningHere(ref) }
            #expect(try await f.engine.store.recordCounts(of: ref).isEmpty, "nothing the stopped function wrote was applied")
        }
    }

    @Test(arguments: StoreKind.available) func theQueueIsSharedAWorkerRunsWhatAnotherProcessQueued(_ kind: StoreKind) async throws {
        let f = try await SchedulingFixture(openGates: ["base"], kind: kind)
        let ref = f.ref("c1")
        try await f.engine.store.ensureVariant(ref)
        // Queued with no worker in this process; then a worker starts and claims it.
        try await RunQueue(store: f.engine.store).trigger(ref)
        await #expect(throws: TributaryError.self) { try await RunQueue(store: f.engine.store).trigger(ref) }
        try await f.running {
            try await f.idle([ref])
            #expect(try await f.engine.store.runs(of: ref, limit: 5).map(\.status) == [.succeeded])
        }
    }
}

struct Temporary: RetryableError, CustomStringConvertible {
    var retryAfterSeconds: Double? = nil
    var description: String { "provider answered 503" }
}
struct Permanent: Error, CustomStringConvertible { var description: String { "bad request" } }

@Suite("Retries after temporary failures")
struct RetryTests {
    @Test(arguments: StoreKind.available) func temporaryFailuresRetrySoonerWithBackoffPermanentOnesWaitForTheirSlot(_ kind: StoreKind) async throws {
        let failure = Mutex<(any Error)?>(Temporary())
        let flaky = ClosureSyncFunction(name: "flaky") { nango in
            if let error = failure.withLock({ $0 }) { throw error }
            try await nango.batchSave([["id": "ok"]], model: "Item")
        }
        let engine = try await EngineFixture([flaky], kind: kind)
        let clock = TestClock()
        var logger = Logger(label: "retry")
        logger.logLevel = .critical
        let sync = SyncConfig(name: "orders", function: "flaky", models: ["Item"], frequency: try Frequency("every hour"))
        let config = TributaryConfig(
            environments: [EnvironmentConfig(name: "dev", secretKeys: [])], integrations: [IntegrationConfig(providerConfigKey: "shop", syncs: [sync])])
        let coordinator = RunCoordinator(
            executor: engine.executor, config: config,
            limits: RunCoordinator.Limits(retry: RetryPolicy(maxAttempts: 2, baseSeconds: 10, maxSeconds: 900)), clock: clock.function, logger: logger)
        let queue = RunQueue(store: engine.store, worker: coordinator)
        let created = try await engine.store.ensureVariant(base)
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: [coordinator], logger: logger))

        func runOnce() async throws -> (RunRecord, seconds: Double) {
            let before = try await engine.store.runs(of: base, limit: 50).count
            try await queue.trigger(base)
            try await eventually("the run") {
                let active = try await queue.isActive(base)
                return try await engine.store.runs(of: base, limit: 50).count > before && !active && !coordinator.isRunningHere(base)
            }
            let run = try await engine.store.runs(of: base, limit: 1)[0]
            let next = try #require(try await engine.store.variantState(base)?.nextRunAt)
            return (run, Double(next.microseconds - clock.current.microseconds) / 1_000_000)
        }

        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            let hourSlot = { Double(Schedule.nextSlot(after: clock.current, origin: created.createdAt, intervalSeconds: 3600).microseconds - clock.current.microseconds) / 1_000_000 }

            var (run, wait) = try await runOnce()
            #expect(run.status == .failed)
            #expect(run.retry != nil)
            #expect(wait >= 8 && wait <= 12, "first retry after ~10 s, not the hourly slot (\(wait))")
            clock.advance(seconds: 12)
            (run, wait) = try await runOnce()
            #expect(wait >= 16 && wait <= 24, "second retry after ~20 s (\(wait))")
            clock.advance(seconds: 24)
            (run, wait) = try await runOnce()
            #expect(abs(wait - hourSlot()) < 0.001, "attempts used up: back to the schedule")

            // A success ends the streak; the next temporary failure retries after the provider's Retry-After.
            failure.withLock { $0 = nil }
            clock.advance(seconds: 3600)
            (run, _) = try await runOnce()
            #expect(run.status == .succeeded)
            failure.withLock { $0 = Temporary(retryAfterSeconds: 300) }
            clock.advance(seconds: 60)
            (run, wait) = try await runOnce()
            #expect(abs(wait - 300) < 0.001, "Retry-After is honoured (\(wait))")

            failure.withLock { $0 = Permanent() }
            clock.advance(seconds: 400)
            (run, wait) = try await runOnce()
            #expect(run.retry == nil)
            #expect(run.error == "bad request")
            #expect(abs(wait - hourSlot()) < 0.001, "a permanent failure waits for its slot")

            failure.withLock { $0 = nil }
            clock.advance(seconds: 3600)
            (run, _) = try await runOnce()
            #expect(run.status == .succeeded)

            // A write that failed because the database was out of reach is temporary too.
            failure.withLock { $0 = TributaryError(.storeUnavailable, "No database connection within 10 seconds.") }
            clock.advance(seconds: 60)
            (run, wait) = try await runOnce()
            #expect(run.status == .failed)
            #expect(run.retry != nil)
            #expect(wait >= 8 && wait <= 12, "retried after ~10 s, not the hourly slot (\(wait))")
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }
}

@Suite("Recovery from a run whose process died")
struct CrashRecoveryTests {
    @Test(arguments: StoreKind.available) func aDeadRunExpiresWhenItsLeaseRunsOutAndIsRetriedFromItsCheckpoint(_ kind: StoreKind) async throws {
        let seen = Mutex<[JSONValue?]>([])
        let resumable = ClosureSyncFunction(name: "resumable") { nango in
            let page = try await nango.getCheckpoint()?["page"]
            seen.withLock { $0.append(page) }
            try await nango.batchSave([["id": "after-resume"]], model: "Item")
        }
        let engine = try await EngineFixture([resumable], kind: kind)
        var logger = Logger(label: "recovery")
        logger.logLevel = .critical
        let config = try ConfigLoader.parse(
            yaml: """
                environments:
                  dev: { secret_key: dev-key-0000000000000001 }
                integrations:
                  shop:
                    syncs:
                      orders: { function: resumable, models: [Item], frequency: every hour, track_deletes: true }
                """,
            file: "test.yaml", environment: [:])
        let executor = SyncExecutor(store: engine.store, functions: try SyncFunctionRegistry([resumable]), logger: logger, leaseSeconds: 1)
        let coordinator = RunCoordinator(executor: executor, config: config, logger: logger)
        let queue = RunQueue(store: engine.store, worker: coordinator)
        let scheduler = Scheduler(config: config, store: engine.store, worker: coordinator, logger: logger)
        let ref = VariantRef(connection: ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "c1"), syncName: "orders")

        // A process started a run, checkpointed page 3, and died: its run is left "running" with a 3 s lease.
        let dead = try await engine.store.startRun(ref, RunStart(tracksDeletes: true, leaseSeconds: 3))
        try await engine.store.saveCheckpoint(["page": 3], for: dead.lease)

        let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: [coordinator], logger: logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            // While the lease is live the variant is not due again and nothing expires.
            #expect(try await scheduler.tick().isEmpty)
            await #expect(throws: TributaryError.self) { try await queue.trigger(ref) }
            #expect(seen.withLock { $0 }.isEmpty)

            try await Task.sleep(for: .milliseconds(3100))
            _ = try await scheduler.tick()
            try await eventually("the resumed run") {
                try await engine.store.runs(of: ref, limit: 5).first?.status == .succeeded && !coordinator.isRunningHere(ref)
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        #expect(seen.withLock { $0 } == [3], "the run's next attempt resumed from its checkpoint")
        let runs = try await engine.store.runs(of: ref, limit: 5)
        #expect(runs.map(\.status) == [.succeeded], "one run, resumed — not a second run beside an expired one")
        #expect(runs[0].id == dead.runId && runs[0].attempts == 2)
        #expect(runs[0].kind == .initial)
        #expect(runs[0].startedAt == dead.startedAt, "it keeps its first start")
    }

    @Test(arguments: StoreKind.available) func aPausedVariantsDeadRunExpiresWithoutARetry(_ kind: StoreKind) async throws {
        // The store's own clock, moved by hand: lease arithmetic without sleeping.
        let clock = TestClock()
        let engine = try await EngineFixture([], kind: kind, clock: clock.function)
        let store = engine.store
        // Paused first (pausing ends a running run); a run started directly afterwards (as dryrun does) then dies.
        try await store.ensureVariant(base)
        try await store.setPaused(true, for: base)
        let dead = try await store.startRun(base, RunStart(tracksDeletes: false, leaseSeconds: 60))
        clock.advance(seconds: 59)
        #expect(try await store.expireRuns(RunExpiry.Policy()).isEmpty, "the lease is still live")
        clock.advance(seconds: 2)
        #expect(try await store.expireRuns(RunExpiry.Policy()).map(\.id) == [dead.runId])
        #expect(try await store.runs(of: base, limit: 5).map(\.status) == [.expired])
        #expect(try await store.activeRun(of: base) == nil)
        #expect(try await store.variantState(base)?.nextRunAt != nil, "started again, it runs at once")
    }
}
