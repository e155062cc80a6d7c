import Foundation
import Logging
import PostgresNIO
import Synchronization
import Testing
import TributaryCore
import TributaryPostgres
import TributaryStore
import TributaryTestSupport

/// PostgreSQL's queue signals: which store calls send which (in their transactions, in commit
/// order), and a listening connection that stops answering is given up and listened again.
@Suite("PostgreSQL queue signals", .enabled(if: StoreKind.postgresURL != nil, "needs TRIBUTARY_TEST_POSTGRES_URL"))
struct QueueSignalsTests {
    static let quiet: Logger = {
        var logger = Logger(label: "tests")
        logger.logLevel = .critical
        return logger
    }()

    /// What a watch heard: the signals in order, and how often it started listening.
    final class Heard: Sendable {
        private let state = Mutex<(signals: [QueueSignal], listening: Int)>(([], 0))
        func listening() { state.withLock { $0.listening += 1 } }
        func add(_ signal: QueueSignal) { state.withLock { $0.signals.append(signal) } }
        var signals: [QueueSignal] { state.withLock { $0.signals } }
        var listenings: Int { state.withLock { $0.listening } }
    }

    @Test func eachCallThatQueuesRunsOrMakesVariantsDueSignalsInItsTransactionAndOthersDoNot() async throws {
        let f = try await TestStore(.postgres)
        let store = f.store
        let watcher = try #require(try await f.reopen() as? any QueueSignals)
        let heard = Heard()
        let watch = Task { try await watcher.watchSignals(onListening: { heard.listening() }, { heard.add($0) }) }
        defer { watch.cancel() }
        try await eventually("the watch to listen") { heard.listenings == 1 }
        func expectHeard(_ expected: [QueueSignal], _ what: String) async throws {
            try await eventually(what, seconds: 15) { heard.signals.count >= expected.count }
            #expect(heard.signals == expected, "\(what)")
        }
        let connection = ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "c1")
        func importing(_ id: String, paused: Set<String> = []) -> ConnectionImport {
            var value = ConnectionImport(
                ref: ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: id), metadata: [:], connectionConfig: [:],
                credentialsType: "NONE", sealedCredentials: nil)
            value.pausedSyncs = paused
            return value
        }
        // A new connection's unpaused base variants are due; importing it again creates none.
        _ = try await store.importConnection(importing("c1"), baseVariantsOf: ["orders"])
        _ = try await store.importConnection(importing("c1"), baseVariantsOf: ["orders"])
        _ = try await store.importConnection(importing("c2", paused: ["orders"]), baseVariantsOf: ["orders"])
        let base = VariantRef(connection: connection, syncName: "orders")
        try await store.enqueueRuns([base])
        try await expectHeard([.variantsDue, .runsQueued], "an import creating an unpaused base variant, then a trigger; not a re-import or a paused one")

        let eu = VariantRef(connection: connection, syncName: "orders", variant: "eu")
        let us = VariantRef(connection: connection, syncName: "orders", variant: "us")
        _ = try await store.createVariant(us, maximumPerSync: 10, paused: true)
        _ = try await store.createVariant(eu, maximumPerSync: 10, paused: false)
        try await expectHeard([.variantsDue, .runsQueued, .variantsDue], "a new unpaused variant; not a paused one")

        try await store.setPaused(false, for: [eu])
        _ = try await store.enqueueScheduledRuns([eu], dueAt: Timestamp(microseconds: Timestamp.now().microseconds + 60_000_000))
        try await store.setPaused(false, for: [us])
        try await expectHeard(
            [.variantsDue, .runsQueued, .variantsDue, .variantsDue], "a resume of a paused variant; not a start of a started one, nor a scheduler's enqueue")

        try await store.resetVariants([us], emptyCache: false, queuesRuns: false)
        try await store.resetVariants([us], emptyCache: false, queuesRuns: true)
        try await expectHeard([.variantsDue, .runsQueued, .variantsDue, .variantsDue, .runsQueued], "a reset that queues a run; not one that does not")

        // A change that rolls back sends nothing: a trigger of a variant already queued is refused.
        await #expect(throws: TributaryError.self) { try await store.enqueueRuns([eu, us]) }
        try await store.setPaused(true, for: [eu])
        try await store.setPaused(false, for: [eu])
        try await expectHeard(
            [.variantsDue, .runsQueued, .variantsDue, .variantsDue, .runsQueued, .variantsDue], "nothing from the refused trigger")
    }

    /// The listening backend is frozen with SIGSTOP (a connection that no longer answers, without a
    /// reset): the check gives up on it within its time and the watch fails; listened again, it hears.
    @Test(.timeLimit(.minutes(1))) func aListeningConnectionThatStopsAnsweringIsGivenUpAndListenedAgain() async throws {
        let f = try await TestStore(.postgres)
        let url = try PostgresURL(f.location)
        let watcher = PostgresStore(url: url, maximumConnections: 1, listenCheck: (.milliseconds(200), .seconds(1)), logger: Self.quiet)
        let heard = Heard()
        let admin = try await PostgresConnection.connect(configuration: try url.connectionConfiguration(), id: 9, logger: Self.quiet)
        var frozen: Int32? = nil
        let ended = LockedValue<Result<Void, any Error>?>(nil)
        let first = Task {
            do {
                try await watcher.watchSignals(onListening: { heard.listening() }, { heard.add($0) })
                ended.withLock { $0 = .success(()) }
            } catch {
                ended.withLock { $0 = .failure(error) }
            }
        }
        do {
            try await eventually("the watch to listen") { heard.listenings == 1 }
            let pid = try #require(
                try await admin.query(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'tributary-queue-signals'",
                    logger: Self.quiet
                ).collect().first?.decode(Int32.self))
            frozen = pid
            #expect(kill(pid_t(pid), SIGSTOP) == 0)
            let began = ContinuousClock.now
            try await eventually("the watch to give up the connection") { ended.withLock { $0 } != nil }
            let failure: TributaryError? =
                switch ended.withLock({ $0 }) {
                case .failure(let error): error as? TributaryError
                default: nil
                }
            #expect(failure?.code == .storeUnavailable)
            #expect(failure?.message.contains("did not answer") == true, "the check's own error: \(failure?.message ?? "")")
            #expect(ContinuousClock.now - began < .seconds(8), "given up at the check (0.2 s + 1 s), not when TCP gives up")
            kill(pid_t(pid), SIGCONT)
            frozen = nil

            let second = Task { try await watcher.watchSignals(onListening: { heard.listening() }, { heard.add($0) }) }
            try await eventually("the watch to listen again") { heard.listenings == 2 }
            _ = try await admin.query("SELECT pg_notify('tributary_queue', 'runs')", logger: Self.quiet)
            try await eventually("the signal") { heard.signals == [.runsQueued] }
            second.cancel()
            do {
                try await second.value
            } catch is CancellationError {}
        } catch {
            first.cancel()
            if let frozen { kill(pid_t(frozen), SIGCONT) }
            try? await admin.close()
            throw error
        }
        try await admin.close()
    }
}
