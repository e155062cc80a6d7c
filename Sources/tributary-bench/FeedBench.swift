import ArgumentParser
import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import NIOCore
import TributaryCore
import TributaryEngine
import TributaryServer
import TributaryStore

/// `feed`: N records read back through `GET /records` in pages of 1000 over loopback HTTP (the
/// real application, a real HTTP client that parses every page), against a raw `SELECT` of the
/// same rows' payloads from the same database.
struct FeedBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "feed", abstract: "Change feed throughput: GET /records pages over loopback, against a raw SELECT of the same rows.")

    @OptionGroup var options: BenchOptions

    /// The `bench` environment's key (every suite's configuration uses it).
    static let secretKey = "bench-secret-key-000000000000001"
    static let configYAML = """
        environments:
          bench:
            secret_key: \(secretKey)
        integrations:
          shop:
            syncs:
              orders:
                function: bench-orders
                models: [Order]
                frequency: every hour
        """

    func run() async throws {
        let stores = try BenchStores(options: options)
        defer { stores.removeFiles() }
        let n = options.records
        let pageSize = options.pageSize
        var report = BenchReport(
            suite: "feed: \(n) records through GET /records?limit=\(pageSize) over loopback",
            header: ["read", "store", "seconds", "records/s", "vs raw"])
        let config = try ConfigLoader.parse(yaml: Self.configYAML, file: "feed-bench.yaml", environment: [:])
        for kind in stores.kinds {
            let (feed, parsed, rendered, served, raw) = try await stores.withStore(kind, name: "feed") { store, location in
                let load = try await OrdersSync(store: store, records: n, pageSize: pageSize, trackDeletes: false, logger: stores.logger).run(OrderGenerator())
                guard load.run.status == .succeeded else { throw ValidationError("loading the records failed: \(load.result)") }
                let api = API(
                    config: config, runs: RunQueue(store: store),
                    cipher: try CredentialCipher(base64Key: Data(repeating: 7, count: 32).base64EncodedString()))
                let (feed, parsed) = try await withListeningServer(api: api, logger: stores.quietLogger) { port in
                    (try await timed { try await readFeed(port: port, pageSize: pageSize, parse: false) },
                     try await timed { try await readFeed(port: port, pageSize: pageSize, parse: true) })
                }
                guard feed.value == n, parsed.value == n else {
                    throw ValidationError("the feed returned \(feed.value) and \(parsed.value) records, expected \(n)")
                }
                // The store's part alone: the same pages rendered in process, no HTTP.
                let rendered = try await timed { () async throws -> (records: Int, bytes: Int) in
                    var cursor: FeedCursor? = nil
                    var (records, bytes) = (0, 0)
                    repeat {
                        let page = try await store.changes(
                            try ChangeQuery(dataset: OrdersSync.variant.dataset("Order"), cursor: cursor, limit: pageSize))
                        records += page.records.count
                        bytes += FeedRenderer.body(of: page).count  // the body `GET /records` sends
                        cursor = page.nextCursor
                    } while cursor != nil
                    return (records, bytes)
                }
                // Every record's metadata alone is over 200 bytes.
                guard rendered.value.records == n, rendered.value.bytes > 200 * n else {
                    throw ValidationError("the store rendered \(rendered.value.records) records in \(rendered.value.bytes) bytes, expected \(n)")
                }
                // HTTP's own part: the feed's first page, rendered once, served from memory by a bare
                // Hummingbird router as many times as the feed has pages, read by the same scanning client.
                let firstPage = try await store.changes(try ChangeQuery(dataset: OrdersSync.variant.dataset("Order"), limit: pageSize))
                let served = try await Self.serveFromMemory(FeedRenderer.body(of: firstPage), logger: stores.quietLogger) { port in
                    try await timed { try await readFeed(port: port, pageSize: pageSize, parse: false, pages: (n + pageSize - 1) / pageSize) }
                }
                guard served.value >= n else { throw ValidationError("the static pages held \(served.value) records, expected \(n)") }
                let limit = try await stores.rawLimit(location, sameDatabase: true)
                let select = try await timed {
                    try await limit.select(
                        kind == .sqlite
                            ? "SELECT p.payload FROM records r JOIN record_payloads p ON p.record_id = r.id ORDER BY r.dataset_id, r.seq, r.id"
                            : "SELECT payload::text FROM records ORDER BY dataset_id, seq, id")
                }
                try await limit.close()
                guard select.value.rows == n else { throw ValidationError("the raw SELECT read \(select.value.rows) rows, expected \(n)") }
                return (feed.seconds, parsed.seconds, rendered.seconds, served.seconds, select.seconds)
            }
            let store = kind.rawValue
            report.add(["GET /records pages (client scans each page)", store, seconds(feed), "\(rate(n, feed))", percent(raw, of: feed)])
            report.add(["GET /records pages (client parses each page)", store, seconds(parsed), "\(rate(n, parsed))", percent(raw, of: parsed)])
            report.add(["the store renders the pages (no HTTP)", store, seconds(rendered), "\(rate(n, rendered))", percent(raw, of: rendered)])
            report.add(["the same bytes from memory over HTTP (scanned)", store, seconds(served), "\(rate(n, served))", percent(raw, of: served)])
            report.add(["raw limit: SELECT the payloads in feed order", store, seconds(raw), "\(rate(n, raw))", "100%"])
            report.figure(kind, "feed_s", feed)
            report.figure(kind, "raw_select_s", raw)
            report.figure(kind, "feed_parsed_s", parsed)
            report.figure(kind, "feed_rendered_s", rendered)
            report.figure(kind, "feed_http_only_s", served)
            report.figure(kind, "feed_vs_raw", raw / feed)
        }
        try report.print(options: options)
    }

    /// Reads the whole feed of the bench dataset; returns how many records came back. With `parse`
    /// the client parses every page into JSON values (what a consumer does); without, it scans each
    /// page for its records' metadata and the next cursor (the server's and transport's cost alone).
    ///
    /// With `pages`, it reads `/page` that many times instead (``serveFromMemory(_:logger:_:)``'s server).
    func readFeed(port: Int, pageSize: Int, parse: Bool, pages: Int? = nil) async throws -> Int {
        var cursor: String? = nil
        var count = 0
        var read = 0
        repeat {
            var url = pages == nil ? "http://127.0.0.1:\(port)/records?model=Order&limit=\(pageSize)" : "http://127.0.0.1:\(port)/page"
            if let cursor, pages == nil { url += "&cursor=\(cursor)" }
            var request = HTTPClientRequest(url: url)
            request.headers.add(name: "Authorization", value: "Bearer \(Self.secretKey)")
            request.headers.add(name: "Connection-Id", value: OrdersSync.variant.connection.connectionId)
            request.headers.add(name: "Provider-Config-Key", value: OrdersSync.variant.connection.providerConfigKey)
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
            let body = try await response.body.collect(upTo: 256 << 20)
            guard response.status == .ok else { throw ValidationError("GET /records answered \(response.status): \(String(buffer: body))") }
            if parse {
                let page = try JSONParser.parse(Array(buffer: body))
                count += page["records"]?.arrayValue?.count ?? 0
                cursor = page["next_cursor"]?.stringValue
            } else {
                count += Self.occurrences(of: Self.metadataMarker, in: body)
                cursor = Self.nextCursor(in: body)
            }
            read += 1
            if let pages { cursor = read < pages ? cursor : nil }
        } while cursor != nil
        return count
    }

    /// Serves `body` at `GET /page` on a free loopback port while `run` runs with that port.
    static func serveFromMemory<T: Sendable>(_ body: [UInt8], logger: Logger, _ run: @Sendable (Int) async throws -> T) async throws -> T {
        let page = ByteBuffer(bytes: body)
        let router = Router()
        router.get("page") { _, _ in Response(status: .ok, headers: [.contentType: "application/json; charset=utf-8"], body: ResponseBody(byteBuffer: page)) }
        return try await withListening(
            { onListening in
                Application(
                    router: router, configuration: ApplicationConfiguration(address: .hostname("127.0.0.1", port: 0)),
                    onServerRunning: { channel in await onListening(channel.localAddress?.port ?? 0) }, logger: logger)
            }, run)
    }
}

extension FeedBench {
    static let metadataMarker = Array(#""_nango_metadata":{"#.utf8)
    static let cursorMarker = Array(#""next_cursor":""#.utf8)

    /// How often `marker` occurs in `buffer`.
    static func occurrences(of marker: [UInt8], in buffer: ByteBuffer) -> Int {
        buffer.withUnsafeReadableBytes { bytes in
            marker.withUnsafeBytes { marker in
                guard let base = bytes.baseAddress, marker.count > 1 else { return 0 }
                // memchr for the marker's second byte (`_`, rarer than its quote), then a compare:
                // what a client scanning for a marker would do (a byte loop costs more than the server).
                let probe = Int32(marker[1])
                var count = 0
                var offset = 1
                while offset < bytes.count, let found = memchr(base + offset, probe, bytes.count - offset) {
                    let at = base.distance(to: UnsafeRawPointer(found))
                    if at - 1 + marker.count <= bytes.count, memcmp(base + at - 1, marker.baseAddress!, marker.count) == 0 {
                        count += 1
                        offset = at - 1 + marker.count
                    } else {
                        offset = at + 1
                    }
                }
                return count
            }
        }
    }

    /// The page's `next_cursor` (the last member of the response), or nil when it is null.
    static func nextCursor(in buffer: ByteBuffer) -> String? {
        let tail = Array(buffer.readableBytesView.suffix(200))
        guard let start = tail.firstRange(of: cursorMarker)?.upperBound, let end = tail[start...].firstIndex(of: UInt8(ascii: "\"")) else { return nil }
        return String(decoding: tail[start..<end], as: UTF8.self)
    }
}

/// Runs the API application on a free loopback port while `body` runs with that port.
func withListeningServer<T: Sendable>(api: API, logger: Logger, _ body: @Sendable (Int) async throws -> T) async throws -> T {
    try await withListening({ try buildApplication(api: api, logger: logger, port: 0, onListening: $0) }, body)
}

/// Runs the application `makeApplication` builds (given the callback that reports the port it
/// listens on) while `body` runs with that port; the application stops when `body` returns.
func withListening<T: Sendable, App: ApplicationProtocol>(
    _ makeApplication: (@escaping @Sendable (Int) async -> Void) throws -> App, _ body: @Sendable (Int) async throws -> T
) async throws -> T {
    let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
    let app = try makeApplication { port in portContinuation.yield(port) }
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await app.runService(gracefulShutdownSignals: []) }
        defer { group.cancelAll() }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { throw ValidationError("the server did not start") }
        return try await body(port)
    }
}
