import Foundation
import PropertyBased
import Testing
import TributaryCore
import TributarySQLite
import TributaryStore
import TributaryTestSupport

/// Random sequences of saves, partial updates, deletes and full-refresh runs (successful and
/// failed) applied to two variants, checked after every step against a plain in-memory model:
/// the per-call counts, the change feed a cursor-following reader sees, and the final cache.
@Suite("Records cache against an in-memory model (SQLite and PostgreSQL)")
struct RecordsCachePropertyTests {
    struct ModelRecord: Equatable {
        var payload: JSONObject
        var deleted: Bool
        var action: RecordAction
    }

    struct Model {
        var records: [String: ModelRecord] = [:]

        mutating func save(_ payload: JSONObject) -> (ModelResult, changed: Bool) {
            let id = payload["id"]!.stringValue!
            guard let existing = records[id], !existing.deleted else {
                records[id] = ModelRecord(payload: payload, deleted: false, action: .added)
                return (ModelResult(added: 1), true)
            }
            guard existing.payload != payload else { return (ModelResult(), false) }
            records[id] = ModelRecord(payload: payload, deleted: false, action: .updated)
            return (ModelResult(updated: 1), true)
        }

        mutating func update(_ patch: JSONObject) -> (ModelResult, changed: Bool) {
            let id = patch["id"]!.stringValue!
            guard var existing = records[id], !existing.deleted else { return (ModelResult(), false) }
            let merged = existing.payload.merging(patch)
            guard merged != existing.payload else { return (ModelResult(), false) }
            existing.payload = merged
            existing.action = .updated
            records[id] = existing
            return (ModelResult(updated: 1), true)
        }

        mutating func delete(_ id: String) -> Bool {
            guard var existing = records[id], !existing.deleted else { return false }
            existing.deleted = true
            existing.action = .deleted
            records[id] = existing
            return true
        }

        var liveCount: Int { records.values.filter { !$0.deleted }.count }
    }

    @Test(arguments: StoreKind.available) func randomOperationSequencesMatchTheModel(_ kind: StoreKind) async throws {
        // One store for all sequences; each sequence works on a connection of its own, so it starts from empty datasets.
        let f = try await StoreFixture(kind)
        await propertyCheck(count: 60, input: Gen.int(in: 0...1_000_000).array(of: 1...40)) { codes in
            do {
                try await check(codes, f.store)
            } catch {
                Issue.record("unexpected error: \(error)")
            }
        }
    }

    func check(_ codes: [Int], _ store: any Store) async throws {
        let fresh = ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: UUID().uuidString)
        let variants = [baseVariant, euVariant].map { VariantRef(connection: fresh, syncName: $0.syncName, variant: $0.variant) }
        var models = [Model(), Model()]
        var cursors: [FeedCursor?] = [nil, nil]

        for code in codes {
            let op = code % 6
            let id = (code / 6) % 8
            let v = variants.count == 2 ? (code / 48) % 2 : 0
            let value = (code / 96) % 3
            let variant = variants[v]
            var changedIds: Set<String> = []

            func payload(_ id: Int) -> JSONObject { ["id": .string("r\(id)"), "v": .number(JSONNumber(value))] }

            switch op {
            case 0, 1:
                let ids = op == 0 ? [id] : [id, (id + 1) % 8, (id + 2) % 8]
                var expected = ModelResult()
                for i in ids {
                    let (result, changed) = models[v].save(payload(i))
                    expected += result
                    if changed { changedIds.insert("r\(i)") }
                }
                let actual = try await store.saveRecords(ids.map { try! PreparedRecord(payload($0)) }, model: "Order", of: variant)
                #expect(actual == expected, "save \(ids) on \(variant.variant)")
            case 2:
                let changed = models[v].delete("r\(id)")
                if changed { changedIds.insert("r\(id)") }
                let actual = try await store.deleteRecords(ids: ["r\(id)"], model: "Order", of: variant)
                #expect(actual == ModelResult(deleted: changed ? 1 : 0))
            case 3:
                let patch: JSONObject = ["id": .string("r\(id)"), "p": .number(JSONNumber(value))]
                let (expected, changed) = models[v].update(patch)
                if changed { changedIds.insert("r\(id)") }
                let actual = try await store.updateRecords([try RecordPatch(patch)], model: "Order", of: variant)
                #expect(actual == expected)
            default:
                // A full-refresh run that sees the ids with (id + value) even, then succeeds (op 4) or fails (op 5).
                let seen = (0..<8).filter { ($0 + value) % 2 == 0 }
                let started = try await store.startRun(variant, RunStart(tracksDeletes: true))
                var expected = ModelResult()
                for i in seen {
                    let (result, changed) = models[v].save(payload(i))
                    expected += result
                    if changed { changedIds.insert("r\(i)") }
                }
                let saved = try await store.saveRecords(seen.map { try! PreparedRecord(payload($0)) }, model: "Order", for: started.lease)
                #expect(saved == expected)
                let success = op == 4
                var deleted = 0
                if success {
                    for i in 0..<8 where !seen.contains(i) && models[v].delete("r\(i)") {
                        deleted += 1
                        changedIds.insert("r\(i)")
                    }
                }
                let run = try await store.completeRun(
                    started.lease,
                    RunCompletion(outcome: success ? .succeeded : .failed(message: "boom"), models: ["Order"], deleteUnseenModels: ["Order"]))
                // The run's results are what its writes counted in their transactions, plus its deletions.
                #expect(run.results["Order"] == ModelResult(added: saved.added, updated: saved.updated, deleted: deleted))
            }

            // The reader following this variant's feed sees exactly the records this step changed.
            let fresh = try await store.allChanges(variant.dataset("Order"), pageSize: 3, after: cursors[v])
            #expect(Set(fresh.map(\.id)) == changedIds, "feed after op \(op) on \(variant.variant)")
            #expect(fresh.count == changedIds.count, "no repeats")
            if let last = fresh.last { cursors[v] = last.cursor }
        }

        for (index, variant) in variants.enumerated() {
            let all = try await store.allChanges(variant.dataset("Order"))
            #expect(all.count == models[index].records.count)
            for record in all {
                let expected = try #require(models[index].records[record.id])
                #expect(record.action == expected.action, "\(record.id) in \(variant.variant)")
                #expect(try JSONParser.parse(record.json).objectValue == expected.payload)
            }
            let counts = try await store.recordCounts(of: variant)
            #expect((counts["Order"] ?? 0) == models[index].liveCount)
        }
    }
}
