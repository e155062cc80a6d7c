import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Synchronization
import Testing
import TributaryCore
import TributarySQLite
import TributaryStore

#if canImport(Glibc)
import Glibc
#endif

/// An async action's worker is SIGKILLed while the action's provider call is in flight: a second
/// `tributary serve` on the same database claims it once the lease ran out and runs it again — once
/// more, with the same idempotency key — and it ends succeeded, with its `async_action` webhook queued.
@Suite("Async action crash recovery (child processes)")
struct ActionCrashProcessTests {
    static func config(port: Int) -> String {
        """
        environments:
          dev:
            secret_key: dev-secret-key-0000000001
            webhooks: { urls: ["http://127.0.0.1:\(port)/hook"], signing_key: action-crash-signing-key-01 }
        scheduler:
          lease_seconds: 2
          tick_seconds: 0.1
        integrations:
          payments:
            base_url: http://127.0.0.1:\(port)/api
            actions:
              charge:
                endpoint: /charges
                headers: { Idempotency-Key: "{idempotency_key}" }
                body: { amount: "{input.amount}" }
        """
    }

    /// The provider: holds the first charge open (its caller is killed meanwhile), answers the next.
    final class Payments: Sendable {
        let keys = Mutex<[String]>([])
        let bodies = Mutex<[String]>([])
        /// Ends the held first call (its caller is gone by then).
        let released = Mutex(false)

        func router() -> Router<BasicRequestContext> {
            let router = Router()
            router.post("/hook") { _, _ in Response(status: .ok) }
            router.post("/api/charges") { request, _ in
                let body = try await request.body.collect(upTo: 1 << 20)
                let count = self.keys.withLock { keys -> Int in
                    keys.append(request.headers[HTTPField.Name("Idempotency-Key")!] ?? "")
                    return keys.count
                }
                self.bodies.withLock { $0.append(String(buffer: body)) }
                if count == 1 {
                    let deadline = ContinuousClock.now + .seconds(30)
                    while !self.released.withLock({ $0 }), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
                }
                return Response(
                    status: .ok, headers: [.contentType: "application/json"],
                    body: ResponseBody(byteBuffer: ByteBuffer(string: #"{"charged":true,"attempt":\#(count)}"#)))
            }
            return router
        }
    }

    @Test func aKilledWorkersActionRunsOnceMoreUnderTheSameKeyAndSucceeds() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: ServeProcessTests.binary.path), "build the tributary product first")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-action-crash-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let database = directory.appendingPathComponent("actions.sqlite").path
        let payments = Payments()
        let app = Application(router: payments.router(), configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            let port = try #require(client.port)
            try Self.config(port: port).write(to: directory.appendingPathComponent("tributary.yaml"), atomically: true, encoding: .utf8)
            let store = try SQLiteStore(path: database)
            defer { try? store.close() }
            try await store.migrate()
            let connection = ConnectionRef(environment: "dev", providerConfigKey: "payments", connectionId: "acme")
            _ = try await store.importConnection(
                ConnectionImport(ref: connection, metadata: [:], connectionConfig: [:], credentialsType: "NONE", sealedCredentials: nil), baseVariantsOf: [])
            // What `POST /action/trigger` with X-Async does.
            let queued = try await store.queueAction(
                ActionRunStart(connection: connection, actionName: "charge", input: Array(#"{"amount":42}"#.utf8), isAsync: true, leaseSeconds: 2))

            func serve() throws -> Process {
                try ServeProcessTests.launch(
                    [
                        "serve", "--config", directory.appendingPathComponent("tributary.yaml").path, "--database", database, "--port", "0",
                        "--insecure-dev-key", "--log-level", "error",
                    ], in: directory)
            }
            let first = try serve()
            defer { if first.isRunning { kill(first.processIdentifier, SIGKILL) } }
            try await waitFor("the first charge reached the provider") { payments.keys.withLock { $0.count } == 1 }
            kill(first.processIdentifier, SIGKILL)
            first.waitUntilExit()
            #expect(first.terminationReason == .uncaughtSignal)
            let interrupted = try #require(try await store.actionRun(queued.id, environment: "dev"))
            #expect(interrupted.status == .running && interrupted.attempts == 1 && interrupted.expiries == 0, "a killed process records nothing")

            let second = try serve()
            defer { if second.isRunning { second.terminate() } }
            try await waitFor("the action ended", seconds: 30) {
                try await store.actionRun(queued.id, environment: "dev")?.status.isFinished == true
            }
            second.terminate()
            second.waitUntilExit()
            let run = try #require(try await store.actionRun(queued.id, environment: "dev"))
            #expect(run.status == .succeeded && run.attempts == 2 && run.expiries == 1)
            #expect(run.output.map { String(decoding: $0, as: UTF8.self) } == #"{"charged":true,"attempt":2}"#)
            #expect(payments.keys.withLock { $0 } == [queued.id, queued.id], "called twice in all, with one idempotency key")
            #expect(payments.bodies.withLock { $0 }.allSatisfy { $0 == #"{"amount":42}"# })
            #expect(try await store.actionLogs(queued.id, limit: 10).contains { $0.level == .warn && $0.message.contains("lease ran out") })
            let webhook = try #require(try await store.deliveries(DeliveryQuery(environment: "dev")).first)
            #expect(String(decoding: webhook.body, as: UTF8.self).contains(#""type":"async_action""#) && webhook.success)
            payments.released.withLock { $0 = true }
        }
    }

    func waitFor(_ what: String, seconds: Double = 15, _ condition: @Sendable () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("timed out waiting for \(what)")
        throw CancellationError()
    }
}
