import Foundation
import Synchronization
import TributaryChaos

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
        let fresh = handedOutPorts.withLock { used in
            guard !ports.contains(where: used.contains) else { return false }
            used.formUnion(ports)
            return true
        }
        guard fresh else { continue }
        if ports.allSatisfy(canBind) { return ports }
        handedOutPorts.withLock { $0.subtract(ports) }  // held elsewhere for now: free to try later
    }
    throw TimedOut(what: "\(count) free loopback port(s) outside the ephemeral range \(range)")
}

