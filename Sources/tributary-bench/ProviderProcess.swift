import ArgumentParser
import Foundation
import TributaryEngine

/// The `orders-provider` subcommand of this same executable, run as a child process.
final class ProviderProcess: Sendable {
    let process: Process
    let port: Int

    /// Starts the provider with `records` orders and waits until it listens.
    init(records: Int) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        process.arguments = ["orders-provider", "--records", String(records)]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        var line: [UInt8] = []
        while true {
            let byte = output.fileHandleForReading.readData(ofLength: 1)
            guard let first = byte.first else { throw ValidationError("the orders provider exited before listening") }
            if first == UInt8(ascii: "\n") { break }
            line.append(first)
        }
        let text = String(decoding: line, as: UTF8.self)
        guard text.hasPrefix("listening on "), let port = Int(text.dropFirst("listening on ".count)) else {
            process.terminate()
            throw ValidationError("unexpected output from the orders provider: \(text)")
        }
        self.process = process
        self.port = port
    }

    var baseURL: String { "http://127.0.0.1:\(port)" }

    /// CPU seconds the provider has used.
    var cpuSeconds: Double { ProcessStats.cpuSeconds(pid: process.processIdentifier) }

    func stop() {
        process.terminate()
        process.waitUntilExit()
    }
}
