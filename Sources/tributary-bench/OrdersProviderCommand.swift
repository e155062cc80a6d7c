import ArgumentParser
import Foundation
import Hummingbird
import Logging
import Synchronization
import TributaryCore

/// `orders-provider`: the local paginated API the `end-to-end` and `scheduler` suites sync from,
/// run as a child process so its CPU and memory are not counted as Tributary's. It prints
/// `listening on PORT` once it listens.
///
/// - `GET /orders?cursor=&limit=&updated_after=`: ``OrderGenerator`` orders, cursor-paginated
///   (`{"orders":[…],"next_cursor":"…"}`, the last page without a cursor); with `updated_after`
///   only the orders changed after that time.
/// - `POST /change`: changes 1% of the orders (every 100th), stamped with the current time.
/// - `GET /ping`: a tiny page of 3 orders (the scheduler suite's fast provider).
struct OrdersProviderCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "orders-provider", abstract: "The benchmarks' local paginated orders API.")

    @Option var records = 100_000
    @Option var port = 0

    func run() async throws {
        let state = Mutex(ProviderState())
        let n = records
        let router = Router()
        router.get("/orders") { request, _ -> Response in
            let limit = min(max(request.uri.queryParameters.get("limit", as: Int.self) ?? 1000, 1), 10_000)
            let cursor = request.uri.queryParameters.get("cursor", as: Int.self) ?? 0
            let updatedAfter = request.uri.queryParameters.get("updated_after").flatMap { Timestamp(iso8601: $0) }
            let current = state.withLock { $0 }
            // The listing: every order, or with `updated_after` the changed ones (every `changeEvery`-th)
            // if they changed after it. A cursor counts entries of the listing.
            let step: Int
            let total: Int
            if let updatedAfter {
                step = current.generator.changeEvery
                let changedSince = current.changedAt.map { $0 > updatedAfter } ?? false
                total = changedSince ? (n + step - 1) / step : 0
            } else {
                step = 1
                total = n
            }
            let positions = (cursor..<max(cursor, min(cursor + limit, total))).map { $0 * step }
            let next = cursor + limit < total ? String(cursor + limit) : nil
            let body = current.generator.page(positions: positions, next: next)
            return Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
        }
        router.post("/change") { _, _ -> Response in
            state.withLock { state in
                state.generator.revision += 1
                let now = Timestamp.now()
                state.changedAt = now
                state.generator.changedAt = now.iso8601
            }
            return Response(status: .noContent)
        }
        router.get("/ping") { _, _ -> Response in
            let body = state.withLock { $0.generator }.page(positions: [0, 1, 2], next: nil)
            return Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
        }
        var logger = Logger(label: "orders-provider")
        logger.logLevel = .error
        let app = Application(
            router: router, configuration: ApplicationConfiguration(address: .hostname("127.0.0.1", port: port)),
            onServerRunning: { channel in
                // Unbuffered: the parent waits for this line.
                FileHandle.standardOutput.write(Data("listening on \(channel.localAddress?.port ?? 0)\n".utf8))
            }, logger: logger)
        try await app.runService()
    }

    struct ProviderState: Sendable {
        var generator = OrderGenerator()
        var changedAt: Timestamp? = nil
    }
}
