import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `count` consecutive loopback ports for servers that must be told their port before they listen:
/// child processes (a port-0 listener would have to report its port back), and servers whose port
/// is written into a configuration first or that a test stops and starts again on the same port.
///
/// The ports lie outside the kernel's ephemeral range (Linux: `ip_local_port_range`, 32768–60999 by
/// default) — from 20000 up to it, and above it. A port in that range can be
/// the local end of any outgoing connection of the run — a PostgreSQL client's, say — and a child
/// told to listen there then exits with "port … is already in use" (CI saw a demo provider do so).
/// No port is handed out twice in one test process (tests may run in parallel), and each is bound
/// once here and released, so one still held by another process is passed over. What remains is
/// the gap between this check and the child's own bind, in which only another process picking the
/// same port can take it.
public func childProcessPorts(_ count: Int = 1) throws -> [Int] {
    let count = min(max(1, count), 100)
    let range = ephemeralRange()
    // Below the range (from 20000) and above it, wherever there is room for `count` ports.
    var candidates: [ClosedRange<Int>] = []
    if range.lowerBound - count >= 20_000 { candidates.append(20_000...(range.lowerBound - count)) }
    if range.upperBound + count <= 65_535 { candidates.append((range.upperBound + 1)...(65_536 - count)) }
    for _ in 0..<200 {
        guard let candidate = candidates.randomElement() else { break }
        let base = Int.random(in: candidate)
        let ports = Array(base..<(base + count))
        let fresh = handedOut.withLock { used in
            guard !ports.contains(where: used.contains) else { return false }
            used.formUnion(ports)
            return true
        }
        guard fresh else { continue }
        if ports.allSatisfy(canBind) { return ports }
        handedOut.withLock { $0.subtract(ports) }  // held elsewhere for now: free to try later
    }
    throw TimedOut(what: "\(count) free loopback port(s) outside the ephemeral range \(range)")
}

/// The ports ``childProcessPorts(_:)`` handed out in this process.
private let handedOut = Mutex<Set<Int>>([])

/// The kernel's ephemeral port range (32768...60999 when it cannot be read).
public func ephemeralRange() -> ClosedRange<Int> {
    if let text = try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8) {
        let numbers = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).compactMap { Int($0) }
        if numbers.count == 2, 1...65_535 ~= numbers[0], numbers[0]...65_535 ~= numbers[1] { return numbers[0]...numbers[1] }
    }
    return 32_768...60_999
}

/// Whether 127.0.0.1:`port` can be bound now (it is released again at once).
public func canBind(_ port: Int) -> Bool {
    guard let socket = loopbackSocket(boundTo: port) else { return false }
    close(socket)
    return true
}

/// A TCP socket bound to 127.0.0.1:`port` (the caller closes it), or nil when the port is taken.
public func loopbackSocket(boundTo port: Int) -> Int32? {
    guard let port16 = UInt16(exactly: port) else { return nil }
    #if os(Linux)
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    #else
    let fd = socket(AF_INET, SOCK_STREAM, 0)
    #endif
    guard fd >= 0 else { return nil }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = port16.bigEndian
    let bound = withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
    guard bound else {
        close(fd)
        return nil
    }
    return fd
}
