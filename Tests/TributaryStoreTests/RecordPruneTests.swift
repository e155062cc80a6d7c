import Testing
import TributaryCore
import TributaryStore
import TributaryTestSupport

/// Nango's payload pruning on both stores: oldest first up to the cursor, in bounded steps; a
/// pruned record keeps its id, tracking and feed position; saved again unchanged it gets its payload
/// back without moving in the feed; changed, it is an update like any other.
@Suite("Record payload pruning (SQLite and PostgreSQL)")
struct RecordPruneTests {
    @Test(arguments: StoreKind.available) func prunesUpToTheCursorAndASaveBringsThePayloadBack(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        let dataset = baseVariant.dataset("Order")
        _ = try await f.store.saveRecords((1...5).map { order("o\($0)", ["total": .number(JSONNumber($0 * 10))]) }, model: "Order", of: baseVariant)
        let before = try await f.store.allChanges(dataset)
        #expect(before.map(\.id) == ["o1", "o2", "o3", "o4", "o5"])
        let third = before[2].cursor

        let first = try await f.store.pruneRecords(dataset, through: third, limit: 2)
        #expect(first.count == 2 && first.hasMore, "oldest first, bounded: \(first)")
        let second = try await f.store.pruneRecords(dataset, through: third, limit: 2)
        #expect(second.count == 1 && !second.hasMore, "\(second)")
        #expect(try await f.store.pruneRecords(dataset, through: third, limit: 2).count == 0, "nothing twice")

        let pruned = try await f.store.allChanges(dataset)
        #expect(pruned.map(\.id) == before.map(\.id) && pruned.map(\.cursor) == before.map(\.cursor), "ids and feed positions stay")
        for record in pruned.prefix(3) {
            #expect(record.prunedAt != nil, "\(record.id)")
            #expect(try JSONParser.parse(record.json) == ["id": .string(record.id)], "only the id is left: \(String(decoding: record.json, as: UTF8.self))")
            let rendered = try JSONParser.parse(record.renderedJSON())
            #expect(rendered["_nango_metadata"]?["pruned_at"]?.stringValue != nil)
        }
        for record in pruned.suffix(2) {
            #expect(record.prunedAt == nil && record.json == before.first { $0.id == record.id }?.json, "after the cursor: untouched")
            #expect(try JSONParser.parse(record.renderedJSON())["_nango_metadata"]?["pruned_at"] == .null)
        }

        // Saved again unchanged: payload back, pruned_at cleared, no change counted, no move in the feed.
        let resave = try await f.store.saveRecords([order("o1", ["total": 10])], model: "Order", of: baseVariant)
        #expect(resave.added == 0 && resave.updated == 0, "\(resave)")
        // Saved changed: an update, its payload and a new feed position.
        let change = try await f.store.saveRecords([order("o2", ["total": 21])], model: "Order", of: baseVariant)
        #expect(change.updated == 1)
        let after = try await f.store.allChanges(dataset)
        let o1 = try #require(after.first { $0.id == "o1" })
        #expect(o1.prunedAt == nil && o1.cursor == before[0].cursor && o1.json == before[0].json)
        let o2 = try #require(after.first { $0.id == "o2" })
        let o2Payload = try JSONParser.parse(o2.json)
        #expect(o2.prunedAt == nil && o2.cursor > before[4].cursor && o2Payload["total"] == 21)
        let o3 = try #require(after.first { $0.id == "o3" })
        #expect(o3.prunedAt != nil, "the others stay pruned")
        // A dataset that does not exist prunes nothing.
        #expect(try await f.store.pruneRecords(baseVariant.dataset("Nothing"), through: third, limit: 10).count == 0)
    }

    /// A full refresh (deletions tracked) that saves pruned records again unchanged stamps them seen
    /// and gives them their payloads back, in place: nothing counted, none deleted, none moved, their
    /// timestamps kept. One saved changed is an update like any other.
    @Test(arguments: StoreKind.available) func aFullRefreshSavingPrunedRecordsUnchangedBringsTheirPayloadsBack(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        let dataset = baseVariant.dataset("Order")
        let records = (1...4).map { order("o\($0)", ["total": .number(JSONNumber($0 * 10))]) }
        _ = try await f.store.saveRecords(records, model: "Order", of: baseVariant)
        let before = try await f.store.allChanges(dataset)
        #expect(try await f.store.pruneRecords(dataset, through: before[3].cursor, limit: 10).count == 4)

        let started = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: true))
        let saved = try await f.store.saveRecords(Array(records.prefix(3)) + [order("o4", ["total": 41])], model: "Order", for: started.lease)
        #expect(saved == ModelResult(updated: 1), "\(saved)")
        let run = try await f.store.completeRun(started.lease, RunCompletion(outcome: .succeeded, models: ["Order"], deleteUnseenModels: ["Order"]))
        #expect(run.status == .succeeded)
        #expect(run.results["Order"] == ModelResult(updated: 1), "nothing added or deleted")

        let after = try await f.store.allChanges(dataset)
        for original in before.prefix(3) {
            let record = try #require(after.first { $0.id == original.id })
            #expect(record.prunedAt == nil && record.deletedAt == nil && record.json == original.json, "\(record.id): \(String(decoding: record.json, as: UTF8.self))")
            #expect(record.cursor == original.cursor, "\(record.id) keeps its place in the feed")
            #expect(record.firstSeenAt == original.firstSeenAt && record.lastModifiedAt == original.lastModifiedAt, "\(record.id) keeps its timestamps")
        }
        let o4 = try #require(after.first { $0.id == "o4" })
        let o4Payload = try JSONParser.parse(o4.json)
        #expect(o4.prunedAt == nil && o4.cursor > before[3].cursor && o4Payload["total"] == 41)
        #expect(o4.lastModifiedAt > before[3].lastModifiedAt && o4.firstSeenAt == before[3].firstSeenAt)
    }
}
