import Foundation
import Synchronization
import Testing
import TributaryCore
@testable import TributaryPostgres
import TributaryStore
import TributaryTestSupport

/// A first load's later pages (a run writing into a dataset that holds only what it added). On
/// PostgreSQL each goes in as one autocommit statement that checks, in SQL, that the run still holds
/// its lease and that the run and dataset rows are as the run's previous page left them; otherwise
/// the page takes the transaction. Every test states what any store must do, and checks on
/// PostgreSQL which way the pages went.
@Suite("A first load's later pages (SQLite and PostgreSQL)")
struct FirstLoadPageTests {
    static let orders = SyncAddress(environment: "dev", providerConfigKey: "shop", syncName: "orders")

    /// Pages written by PostgreSQL's one statement so far (nil on SQLite).
    func alone(_ f: StoreFixture) -> Int? { (f.store as? PostgresStore)?.plainInsertedAlone.load(ordering: .relaxed) }

    func ids(_ f: StoreFixture) async throws -> [String] { try await f.store.liveRecords(baseVariant.dataset("Order")).keys.sorted() }

    /// The feed's change sequence of each record.
    func sequences(_ f: StoreFixture) async throws -> [String: Int64] {
        Dictionary(uniqueKeysWithValues: try await f.store.allChanges(baseVariant.dataset("Order")).map { ($0.id, $0.cursor.sequence) })
    }

    func page(_ ids: String...) -> [PreparedRecord] { ids.map { order($0, ["v": 1]) } }

    @Test(arguments: StoreKind.available) func laterPagesAreWrittenAsTheTransactionWouldWriteThem(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        let started = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: true))
        #expect(try await f.store.saveRecords(page("1", "2"), model: "Order", checkpoint: ["page": 1], for: started.lease) == ModelResult(added: 2))
        #expect(alone(f) == (kind == .postgres ? 0 : nil), "the first page takes the transaction (nothing to expect yet)")
        #expect(try await f.store.saveRecords(page("3", "4"), model: "Order", checkpoint: nil, for: started.lease) == ModelResult(added: 2))
        #expect(try await f.store.variantState(baseVariant)?.checkpoint?["page"] == 1, "a page without a checkpoint leaves the last one")
        #expect(try await f.store.saveRecords(page("5", "6"), model: "Order", checkpoint: ["page": 3], for: started.lease) == ModelResult(added: 2))
        #expect(alone(f) == (kind == .postgres ? 2 : nil), "the later pages are one statement each")

        #expect(try await ids(f) == ["1", "2", "3", "4", "5", "6"])
        #expect(try await f.store.recordCounts(of: baseVariant) == ["Order": 6])
        let state = try #require(try await f.store.variantState(baseVariant))
        #expect(state.checkpoint?["page"] == 3, "the checkpoint goes with its page")
        #expect(state.checkpointGeneration != nil && state.checkpointGeneration == started.deletionGeneration, "saved in the run's deletion window")
        let sequence = try await sequences(f)
        #expect(sequence["1"] == sequence["2"] && sequence["3"] == sequence["4"] && sequence["5"] == sequence["6"], "one change per page")
        #expect((sequence["2"] ?? 0) < (sequence["3"] ?? 0) && (sequence["4"] ?? 0) < (sequence["5"] ?? 0), "pages in feed order")
        #expect(try await f.store.runs(of: baseVariant, limit: 1).first?.results["Order"] == ModelResult(added: 6), "the run counts every page")

        // The pages were seen in the run's deletion window: its successful end deletes none of them.
        let done = try await f.store.completeRun(started.lease, RunCompletion(outcome: .succeeded, models: ["Order"], deleteUnseenModels: ["Order"]))
        #expect(done.results["Order"] == ModelResult(added: 6))
        #expect(try await ids(f) == ["1", "2", "3", "4", "5", "6"])
    }

    enum Loss: String, CaseIterable, Sendable {
        case leaseRanOut, paused, takenOver

        /// Makes the run `first` (claimed with `claim`) lose its lease this way; the attempt that
        /// took it over, if one did.
        func happen(to first: ClaimedRun, _ f: StoreFixture, clock: TestClock, claim: RunClaim) async throws -> ClaimedRun? {
            switch self {
            case .leaseRanOut:
                clock.advance(seconds: 61)
            case .paused:
                try await f.store.setPaused(true, for: baseVariant)
            case .takenOver:
                clock.advance(seconds: 61)
                #expect(try await f.store.expireRuns(RunExpiry.Policy()).map(\.id) == [first.started.runId])
                let second: ClaimedRun = try #require(try await f.store.claimRun(claim))
                #expect(second.started.lease == RunLease(runId: first.started.runId, token: 2))
                return second
            }
            return nil
        }

        /// The error a write under the lost lease gets.
        var error: TributaryError.Code { self == .paused ? .runNotRunning : .leaseLost }
    }

    /// A run that lost its lease after its first page writes nothing more — neither records, nor
    /// head, nor checkpoint — and gets the error the transaction gives.
    @Test(arguments: StoreKind.available, Loss.allCases) func aLaterPageOfARunThatLostItsLeaseWritesNothing(_ kind: StoreKind, _ loss: Loss) async throws {
        let clock = TestClock()
        let f = try await StoreFixture(kind, clock: { clock.now })
        try await f.store.ensureVariant(baseVariant)
        try await f.store.enqueueRuns([baseVariant])
        let claim = RunClaim(leaseSeconds: 60, maxRunsPerConnection: 10, syncs: [Self.orders: false])
        let first = try #require(try await f.store.claimRun(claim))
        _ = try await f.store.saveRecords(page("1", "2"), model: "Order", checkpoint: ["page": 1], for: first.started.lease)
        _ = try await f.store.saveRecords(page("3", "4"), model: "Order", checkpoint: ["page": 2], for: first.started.lease)
        let before = try await sequences(f)

        let second = try await loss.happen(to: first, f, clock: clock, claim: claim)
        let late = await #expect(throws: TributaryError.self) {
            _ = try await f.store.saveRecords(page("5", "6"), model: "Order", checkpoint: ["page": 3], for: first.started.lease)
        }
        #expect(late?.code == loss.error)
        #expect(try await ids(f) == ["1", "2", "3", "4"])
        #expect(try await sequences(f) == before)
        #expect(try await f.store.recordCounts(of: baseVariant) == ["Order": 4])
        #expect(try await f.store.variantState(baseVariant)?.checkpoint?["page"] == 2)

        // The attempt that took the run over goes on from there, its later pages one statement each again.
        guard let second else { return }
        let pagesBefore = alone(f)
        #expect(try await f.store.saveRecords(page("5", "6"), model: "Order", checkpoint: ["page": 3], for: second.started.lease) == ModelResult(added: 2))
        #expect(try await f.store.saveRecords(page("7", "8"), model: "Order", checkpoint: ["page": 4], for: second.started.lease) == ModelResult(added: 2))
        if let pagesBefore { #expect(alone(f) == pagesBefore + 1, "the new attempt's first page takes the transaction, its second does not") }
        #expect(try await ids(f) == ["1", "2", "3", "4", "5", "6", "7", "8"])
        #expect(try await f.store.variantState(baseVariant)?.checkpoint?["page"] == 4)
        #expect(try await f.store.runs(of: baseVariant, limit: 1).first?.results["Order"] == ModelResult(added: 8), "every attempt's pages counted")
    }

    /// A webhook execution writes into the dataset between two pages of a first load: the next page
    /// finds the dataset's head moved and takes the transaction — it comes after the webhook's
    /// change in the feed, and the counts stay exact.
    @Test(arguments: StoreKind.available) func aPageAfterAnotherWriterChangedTheDatasetComesAfterItsChange(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        _ = try await f.store.importConnection(
            ConnectionImport(ref: connection, metadata: [:], connectionConfig: [:], credentialsType: "NONE", sealedCredentials: nil), baseVariantsOf: ["orders"])
        let started = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: false))
        _ = try await f.store.saveRecords(page("1", "2"), model: "Order", checkpoint: nil, for: started.lease)
        _ = try await f.store.saveRecords(page("3", "4"), model: "Order", checkpoint: nil, for: started.lease)
        _ = try await f.store.enqueueProviderWebhook(for: [baseVariant], type: nil, payload: Array("{}".utf8))
        let webhook = try #require(try await f.store.claimProviderWebhook(leaseSeconds: 60, maxAttempts: 3))
        #expect(try await f.store.saveRecords([order("w")], model: "Order", checkpoint: nil, for: webhook.started.lease) == ModelResult(added: 1))
        let pagesBefore = alone(f)

        #expect(try await f.store.saveRecords(page("5", "6"), model: "Order", checkpoint: nil, for: started.lease) == ModelResult(added: 2))
        #expect(try await f.store.saveRecords(page("7", "8"), model: "Order", checkpoint: nil, for: started.lease) == ModelResult(added: 2))
        if let pagesBefore { #expect(alone(f) == pagesBefore, "the pages after the webhook's write take the transaction") }
        let sequence = try await sequences(f)
        #expect((sequence["w"] ?? .max) < (sequence["5"] ?? 0), "the page after the webhook's write comes after it in the feed")
        #expect((sequence["5"] ?? .max) < (sequence["7"] ?? 0))
        #expect(try await f.store.recordCounts(of: baseVariant) == ["Order": 9])
        let run = try await f.store.runs(of: baseVariant, limit: 5, includingWebhooks: true).first { $0.id == started.runId }
        #expect(run?.results["Order"] == ModelResult(added: 8), "the run counts its own pages")
    }

    /// A run's counts moved by a write the first load's pages did not see — another model's page
    /// into a dataset that held records already (the upsert) — are kept by the next first-load page.
    @Test(arguments: StoreKind.available) func aFirstLoadPageKeepsTheCountsAnotherModelsUpsertAdded(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        _ = try await f.store.saveRecords([order("c0")], model: "Customer", of: baseVariant)
        let started = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: false))
        _ = try await f.store.saveRecords(page("1", "2"), model: "Order", checkpoint: nil, for: started.lease)
        #expect(try await f.store.saveRecords([order("c0", ["v": 2]), order("c1")], model: "Customer", checkpoint: nil, for: started.lease) == ModelResult(added: 1, updated: 1))
        #expect(try await f.store.saveRecords(page("3", "4"), model: "Order", checkpoint: nil, for: started.lease) == ModelResult(added: 2))
        if let pages = alone(f) { #expect(pages == 0, "the counts moved unseen: the page took the transaction") }
        let results = try await f.store.runs(of: baseVariant, limit: 1).first?.results
        #expect(results?["Order"] == ModelResult(added: 4))
        #expect(results?["Customer"] == ModelResult(added: 1, updated: 1))
    }

    /// A run whose pages alternate between two models counts both — each model's page changes the
    /// run's counts the other model's next page expects — and on PostgreSQL keeps both models' later
    /// pages on the one statement.
    @Test(arguments: StoreKind.available) func pagesOfTwoModelsInTurnCountForBoth(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        let started = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: false))
        for n in 0..<3 {
            let ids = ["\(2 * n)", "\(2 * n + 1)"]
            #expect(try await f.store.saveRecords(ids.map { order($0) }, model: "Order", checkpoint: nil, for: started.lease) == ModelResult(added: 2))
            #expect(try await f.store.saveRecords(ids.map { order($0) }, model: "Customer", checkpoint: nil, for: started.lease) == ModelResult(added: 2))
        }
        let results = try await f.store.runs(of: baseVariant, limit: 1).first?.results
        #expect(results?["Order"] == ModelResult(added: 6))
        #expect(results?["Customer"] == ModelResult(added: 6))
        #expect(try await f.store.recordCounts(of: baseVariant) == ["Order": 6, "Customer": 6])
        if let pages = alone(f) { #expect(pages == 4, "each model's second and third pages are one statement each") }
    }
}
