import Foundation
import TributaryCore
import TributarySQLite
import TributaryStore
import TributaryTestSupport

/// A fresh migrated store of one kind — a real SQLite file, or a new database on the test
/// PostgreSQL server — released with the fixture.
typealias StoreFixture = TestStore

let connection = ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "customer-1")
let baseVariant = VariantRef(connection: connection, syncName: "orders", variant: "base")
let euVariant = VariantRef(connection: connection, syncName: "orders", variant: "store-eu")

func order(_ id: String, _ fields: JSONObject = [:]) -> PreparedRecord {
    var object: JSONObject = ["id": .string(id)]
    for (k, v) in fields { object[k] = v }
    return try! PreparedRecord(object)
}

extension Store {
    /// Every record of a dataset in feed order, paging with cursors.
    func allChanges(_ dataset: DatasetRef, pageSize: Int = 1000, after cursor: FeedCursor? = nil) async throws -> [StoredRecord] {
        var all: [StoredRecord] = []
        var cursor = cursor
        while true {
            let page = try await changes(try ChangeQuery(dataset: dataset, cursor: cursor, limit: pageSize))
            all.append(contentsOf: page.records)
            guard let next = page.nextCursor else { return all }
            cursor = next
        }
    }

    /// The current live (not deleted) payloads of a dataset by id.
    func liveRecords(_ dataset: DatasetRef) async throws -> [String: JSONObject] {
        var result: [String: JSONObject] = [:]
        for record in try await allChanges(dataset) where record.deletedAt == nil {
            result[record.id] = try JSONParser.parse(record.json).objectValue
        }
        return result
    }
}
