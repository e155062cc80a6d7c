#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Synchronization

// Loopback ports for servers told their port before they listen: the chaos run's API processes,
// and the tests' child processes (Tests/Support/ChildProcessPorts.swift).

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

/// The loopback ports handed out in this process (``takeFreePort(_:)``, the tests'
/// `childProcessPorts`): none twice, though the server told one may be down for a while (a
/// restart) and the port free to bind meanwhile.
public let handedOutPorts = Mutex<Set<Int>>([])

/// Takes the first of `candidates` not handed out in this process before that 127.0.0.1 can bind
/// now, or nil. What remains is the gap between this check and the server's own bind, in which only
/// another process picking the same port can take it.
public func takeFreePort(_ candidates: some Sequence<Int>) -> Int? {
    for port in candidates {
        guard handedOutPorts.withLock({ $0.insert(port).inserted }) else { continue }
        if canBind(port) { return port }
        _ = handedOutPorts.withLock { $0.remove(port) }  // held elsewhere for now: free to try later
    }
    return nil
}
