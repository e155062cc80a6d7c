import Foundation
import Testing
import TributaryCore
import TributaryServer
import TributaryStore

/// The main flow over real HTTP on a loopback port.
@Suite("API over loopback")
struct LiveAPITests {
    @Test func connectionToVariantsToRecords() async throws {
        let f = try await ServerFixture()
        try await f.withLiveServer { api in
            let created = try await api.connect("acme")
            #expect(created.status == .created)
            let status = try await api.send(.get, "/sync/status?syncs=*&provider_config_key=shop&connection_id=acme")
            #expect(status.json["syncs"]?.arrayValue?.compactMap { $0["variant"]?.stringValue } == ["base", "base"], "base variant of each sync")

            let stores = ["store-eu", "store-us"]
            for store in stores {
                let response = try await api.send(.post, "/sync/items/variant/\(store)", body: ["provider_config_key": "shop", "connection_id": "acme"])
                #expect(response.status == .ok)
            }
            _ = try await api.send(
                .post, "/connections/metadata",
                body: ["connection_id": "acme", "provider_config_key": "shop", "metadata": ["store-eu.count": 7, "store-eu.label": "eu", "store-us.count": 4, "store-us.label": "us"]])
            _ = try await api.send(
                .post, "/sync/trigger", body: ["provider_config_key": "shop", "connection_id": "acme", "syncs": ["items", "items::store-eu", ["name": "items", "variant": "store-us"]]])
            let acme = ConnectionRef(environment: "dev", providerConfigKey: "shop", connectionId: "acme")
            for name in ["base", "store-eu", "store-us"] {
                #expect(try await f.waitForRuns(VariantRef(connection: acme, syncName: "items", variant: name)).status == .succeeded)
            }
            let base = try await api.allRecords(connection: "acme", model: "Item", pageSize: 2)
            let eu = try await api.allRecords(connection: "acme", model: "Item", variant: "store-eu", pageSize: 3)
            let us = try await api.allRecords(connection: "acme", model: "Item", variant: "store-us", pageSize: 3)
            #expect(base.count == 3)
            #expect(eu.count == 7)
            #expect(us.count == 4)
            #expect(eu.allSatisfy { $0["label"] == "eu" && $0["id"]?.stringValue?.hasPrefix("store-eu-") == true })
            #expect(us.allSatisfy { $0["label"] == "us" })
            let final = try await api.send(.get, "/sync/status?syncs=items::store-eu&provider_config_key=shop&connection_id=acme")
            #expect(final.json["syncs"]?[0]?["recordCount"] == ["Item": 7])
        }
    }
}

/// A client that writes its whole request before it reads (Python's urllib and `requests`, many SDKs).
@Suite("Oversized bodies over loopback")
struct OversizedBodyTests {
    /// Sends `bodyBytes` of JSON with a blocking socket (its writes time out after 5 s instead of
    /// hanging), then reads the status line. Runs on a thread of its own, not the cooperative pool.
    static func writeAllThenRead(port: Int, path: String, bodyBytes: Int) async -> String {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(returning: blockingExchange(port: port, path: path, bodyBytes: bodyBytes))
            }
        }
    }

    static func blockingExchange(port: Int, path: String, bodyBytes: Int) -> String {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return "socket failed" }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return "connect failed" }
        let head = "POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: Bearer \(devKey)\r\nContent-Type: application/json\r\nContent-Length: \(bodyBytes)\r\n\r\n"
        var request = Array(head.utf8)
        request += Array(repeating: UInt8(ascii: " "), count: bodyBytes)
        var sent = 0
        while sent < request.count {
            let n = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { return "the write blocked after \(sent) bytes: the server stopped reading" }
            sent += n
        }
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !answer.contains(UInt8(ascii: "\n")) {
            let n = recv(fd, &buffer, buffer.count, 0)
            guard n > 0 else { break }
            answer += buffer[..<n]
        }
        return String(decoding: answer, as: UTF8.self).split(separator: "\r\n").first.map(String.init) ?? "no answer"
    }

    @Test func aClientThatWritesItsWholeBodyFirstStillGetsThe413() async throws {
        let f = try await ServerFixture()
        try await f.withLiveServer { api in
            let port = try #require(api.client.port)
            let started = ContinuousClock.now
            // 20 MiB against the default 1 MiB limit: far more than the socket buffers hold (with `Connection:
            // close`, as urllib sends it, the server would otherwise stop reading and never answer).
            let status = await Self.writeAllThenRead(port: port, path: "/connections", bodyBytes: 20 << 20)
            #expect(status.hasPrefix("HTTP/1.1 413"), "\(status)")
            #expect(ContinuousClock.now - started < .seconds(3))
            // The server is fine afterwards.
            #expect(try await api.send(.get, "/health", key: nil).status == .ok)
        }
    }
}
