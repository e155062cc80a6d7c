import Foundation
import Synchronization
import Testing
import TributaryCore
import TributarySQLite
import TributaryStore
import TributaryTestSupport

@Suite("Change feed (SQLite and PostgreSQL)")
struct ChangeFeedTests {
    @Test(arguments: StoreKind.available) func pagesWithCursorWithoutSkipsOrRepeats(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        for batch in 0..<5 {
            let records = (0..<50).map { order("r\(batch * 50 + $0)", ["batch": .number(JSONNumber(batch))]) }
            _ = try await f.store.saveRecords(records, model: "Order", of: baseVariant)
        }
        var seen: [String] = []
        var cursor: FeedCursor? = nil
        var pages = 0
        repeat {
            let page = try await f.store.changes(try ChangeQuery(dataset: baseVariant.dataset("Order"), cursor: cursor, limit: 33))
            #expect(page.records.count <= 33)
            seen += page.records.map(\.id)
            if page.nextCursor != nil { #expect(page.nextCursor == page.records.last?.cursor) }
            cursor = page.nextCursor
            pages += 1
        } while cursor != nil
        #expect(pages == 8)  // 250 / 33, rounded up
        #expect(seen.count == 250)
        #expect(Set(seen).count == 250)
    }

    @Test(arguments: StoreKind.available) func filtersByActionModifiedAfterAndIds(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        _ = try await f.store.saveRecords([order("a"), order("u"), order("d")], model: "Order", of: baseVariant)
        let afterInsert = try await f.store.allChanges(baseVariant.dataset("Order"))
        _ = try await f.store.saveRecords([order("u", ["x": 1])], model: "Order", of: baseVariant)
        _ = try await f.store.deleteRecords(ids: ["d"], model: "Order", of: baseVariant)
        let dataset = baseVariant.dataset("Order")
        func ids(_ query: ChangeQuery) async throws -> [String] { try await f.store.changes(query).records.map(\.id).sorted() }
        #expect(try await ids(try ChangeQuery(dataset: dataset, actions: [.added])) == ["a"])
        #expect(try await ids(try ChangeQuery(dataset: dataset, actions: [.updated])) == ["u"])
        #expect(try await ids(try ChangeQuery(dataset: dataset, actions: [.deleted])) == ["d"])
        #expect(try await ids(try ChangeQuery(dataset: dataset, actions: [.added, .deleted])) == ["a", "d"])
        #expect(try await ids(try ChangeQuery(dataset: dataset, ids: ["a", "d", "zz"])) == ["a", "d"])
        let later = Timestamp(microseconds: afterInsert.map(\.lastModifiedAt.microseconds).max()! + 1)
        #expect(try await ids(try ChangeQuery(dataset: dataset, modifiedAfter: later)) == ["d", "u"])
        // Every filter at once, each parameter in its place.
        #expect(try await ids(try ChangeQuery(dataset: dataset, modifiedAfter: later, actions: [.updated, .deleted], ids: ["u", "a"])) == ["u"])
        #expect(try await ids(try ChangeQuery(dataset: dataset, modifiedAfter: later, actions: [.deleted], ids: ["u", "d", "a"])) == ["d"])
    }

    @Test func rejectsBadCursorsAndLimits() throws {
        #expect(throws: TributaryError.self) { try FeedCursor(encoded: "not-a-cursor") }
        #expect(throws: TributaryError.self) { try FeedCursor(encoded: Data("v2:1:1".utf8).base64EncodedString()) }
        #expect(throws: TributaryError.self) { try ChangeQuery(dataset: baseVariant.dataset("Order"), limit: 0) }
        #expect(throws: TributaryError.self) { try ChangeQuery(dataset: baseVariant.dataset("Order"), limit: 10_001) }
        #expect(throws: TributaryError.self) {
            try ChangeQuery(dataset: baseVariant.dataset("Order"), ids: (0...100).map(String.init))
        }
        let cursor = FeedCursor(sequence: 12, tiebreaker: 345)
        #expect(try FeedCursor(encoded: cursor.encoded) == cursor)
    }

    /// The byte-level cursor encoder writes exactly Foundation's base64 of `v1:<seq>:<tiebreaker>`
    /// (every padding length), so cursors issued before it still decode and compare equal.
    @Test(arguments: [(0, 0), (1, 2), (12, 345), (9, 99), (123_456_789, 1), (Int64.max, Int64.max), (7, 1_234_567_890_123)])
    func cursorEncodingMatchesBase64(_ sequence: Int64, _ tiebreaker: Int64) throws {
        let cursor = FeedCursor(sequence: sequence, tiebreaker: tiebreaker)
        #expect(cursor.encoded == Data("v1:\(sequence):\(tiebreaker)".utf8).base64EncodedString())
        #expect(try FeedCursor(encoded: cursor.encoded) == cursor)
    }

    /// `GET /records` splices metadata into the stored bytes; parsed, it is the payload plus
    /// exactly the `metadata` object, for added, updated and deleted records and an empty payload.
    @Test func renderedRecordIsPayloadPlusMetadata() throws {
        let t1 = Timestamp(microseconds: 1_706_695_200_123_456)
        let t2 = Timestamp(microseconds: 1_706_695_260_000_001)
        let records = [
            StoredRecord(id: "a", json: Array(#"{"id":"a","n":1}"#.utf8), firstSeenAt: t1, lastModifiedAt: t1, deletedAt: nil, cursor: FeedCursor(sequence: 1, tiebreaker: 1)),
            StoredRecord(id: "b", json: Array(#"{"id":"b"}"#.utf8), firstSeenAt: t1, lastModifiedAt: t2, deletedAt: nil, cursor: FeedCursor(sequence: 2, tiebreaker: 10)),
            StoredRecord(id: "c", json: Array(#"{"id":"c","x":[true]}"#.utf8), firstSeenAt: t1, lastModifiedAt: t2, deletedAt: t2, cursor: FeedCursor(sequence: 30, tiebreaker: 7)),
            StoredRecord(id: "d", json: Array("{}".utf8), firstSeenAt: t2, lastModifiedAt: t2, deletedAt: nil, cursor: FeedCursor(sequence: 4, tiebreaker: 4)),
        ]
        for record in records {
            var expected = try JSONParser.parse(record.json).objectValue ?? [:]
            expected[RecordMetadata.key] = .object(record.metadata)
            let rendered = try JSONParser.parse(record.renderedJSON())
            #expect(rendered == .object(expected))
            #expect(rendered[RecordMetadata.key]?["last_modified_at"]?.stringValue == record.lastModifiedAt.iso8601)
        }
        #expect(t1.iso8601 == "2024-01-31T10:00:00.123456+00:00")
        #expect(Timestamp(microseconds: -1).iso8601 == "1969-12-31T23:59:59.999999+00:00")
        #expect(Timestamp(iso8601: t2.iso8601) == t2)
    }

    @Test(arguments: StoreKind.available) func unknownDatasetReadsEmpty(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        let page = try await f.store.changes(try ChangeQuery(dataset: DatasetRef(connection: connection, model: "Nothing")))
        #expect(page.records.isEmpty)
        #expect(page.nextCursor == nil)
    }

    /// A reader paging while a writer keeps changing records never misses a change: after the writer
    /// stops, the last version the reader saw of every record is its final version, and cursors only grow.
    @Test(arguments: StoreKind.available) func readerNeverSkipsAChangeWhileWritersRun(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        let dataset = baseVariant.dataset("Order")
        let ids = (0..<200).map { "r\($0)" }
        _ = try await f.store.saveRecords(ids.map { order($0, ["v": 0]) }, model: "Order", of: baseVariant)
        let store = f.store
        let finished = Flag()
        let readOnce = Flag()
        let writer = Task {
            defer { finished.set() }
            var generator = SystemRandomNumberGenerator()
            for round in 1...60 {
                // Halfway, wait for the reader to have read once, however loaded the machine is.
                if round == 30 { while !readOnce.isSet { try await Task.sleep(for: .milliseconds(1)) } }
                let chosen = ids.shuffled(using: &generator).prefix(25)
                _ = try await store.saveRecords(
                    chosen.map { order($0, ["v": .number(JSONNumber(round))]) }, model: "Order", of: baseVariant)
                if round % 7 == 0 { _ = try await store.deleteRecords(ids: [chosen.first!], model: "Order", of: baseVariant) }
                if round % 11 == 0 {
                    _ = try await store.saveRecords([order(chosen.first!, ["v": -1])], model: "Order", of: baseVariant)
                }
                // Paced so the reader certainly reads many times while writes are still coming.
                try await Task.sleep(for: .milliseconds(3))
            }
        }
        var lastSeen: [String: StoredRecord] = [:]
        var cursor: FeedCursor? = nil
        var previous: FeedCursor? = nil
        func drain() async throws {
            while true {
                let page = try await store.changes(try ChangeQuery(dataset: dataset, cursor: cursor, limit: 17))
                for record in page.records {
                    if let previous { #expect(record.cursor > previous) }
                    previous = record.cursor
                    lastSeen[record.id] = record
                }
                if let last = page.records.last { cursor = last.cursor }
                if page.nextCursor == nil { return }
            }
        }
        var readsDuringWrites = 0
        while !finished.isSet {
            try await drain()
            readsDuringWrites += 1
            readOnce.set()
            try await Task.sleep(for: .milliseconds(1))
        }
        try await writer.value
        try await drain()
        let final = try await store.allChanges(dataset)
        #expect(final.count == 200)
        for record in final {
            #expect(lastSeen[record.id] == record, "reader missed the final change of \(record.id)")
        }
        #expect(readsDuringWrites > 1, "the reader should have read while the writer was writing")
    }

    /// Several processes (store instances with their own connections) write the same dataset at once
    /// while a reader pages through it: every write gets a place in the feed after every position the
    /// reader has passed, so the reader still ends with the final version of every record.
    @Test(arguments: StoreKind.available) func readerNeverSkipsAChangeWhileSeveralProcessesWrite(_ kind: StoreKind) async throws {
        let f = try await StoreFixture(kind)
        let dataset = baseVariant.dataset("Order")
        let ids = (0..<120).map { "r\($0)" }
        _ = try await f.store.saveRecords(ids.map { order($0, ["v": 0]) }, model: "Order", of: baseVariant)
        var writers: [any Store] = [f.store]
        for _ in 0..<2 { writers.append(try await f.reopen()) }
        // One run's lease, presented by every process's writes (as a run's pipelined saves would).
        let lease = try await f.store.startRun(baseVariant, RunStart(tracksDeletes: false, leaseSeconds: 600)).lease
        let finished = Flag()
        let readOnce = Flag()
        let store = f.store
        let writing = Task {
            defer { finished.set() }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (index, writer) in writers.enumerated() {
                    group.addTask {
                        var generator = SystemRandomNumberGenerator()
                        for round in 1...30 {
                            if round == 15 { while !readOnce.isSet { try await Task.sleep(for: .milliseconds(1)) } }
                            // Each process writes its own value, so the final version tells who wrote last.
                            let chosen = ids.shuffled(using: &generator).prefix(20)
                            _ = try await writer.saveRecords(
                                chosen.map { order($0, ["v": .number(JSONNumber(round * 10 + index))]) }, model: "Order", for: lease)
                            if round % 9 == 0 { _ = try await writer.deleteRecords(ids: [chosen.first!], model: "Order", for: lease) }
                            try await Task.sleep(for: .milliseconds(2))
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        var lastSeen: [String: StoredRecord] = [:]
        var cursor: FeedCursor? = nil
        var reads = 0
        func drain() async throws {
            while true {
                let page = try await store.changes(try ChangeQuery(dataset: dataset, cursor: cursor, limit: 13))
                for record in page.records { lastSeen[record.id] = record }
                if let last = page.records.last { cursor = last.cursor }
                if page.nextCursor == nil { return }
            }
        }
        while !finished.isSet {
            try await drain()
            reads += 1
            readOnce.set()
        }
        try await writing.value
        try await drain()
        let final = try await store.allChanges(dataset)
        #expect(final.count == ids.count)
        for record in final {
            #expect(lastSeen[record.id] == record, "reader missed the final change of \(record.id)")
        }
        #expect(reads > 1, "the reader should have read while the processes were writing")
    }
}

/// A flag set once from another task.
final class Flag: Sendable {
    private let value = Mutex(false)
    func set() { value.withLock { $0 = true } }
    var isSet: Bool { value.withLock { $0 } }
}
