import ArgumentParser
import Foundation
import TributaryChaos
import TributaryCore

/// `chaos`: the chaos soak — real `tributary serve` processes killed, frozen past their lease and
/// (PostgreSQL) cut off by a restarted database while the API changes everything, then checked
/// against the provider's truth (see `ChaosRun`). The test suite runs a short one of each mode; this
/// runs them for as long as asked, repeating with new seeds.
struct ChaosCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chaos", abstract: "Chaos soak with real processes on SQLite and PostgreSQL, checked against the provider's truth.")

    @Option(help: "Minutes to keep going (rounds of --round-seconds each, alternating the modes).")
    var minutes: Double = 10

    @Option(help: "Seconds of faults per round.")
    var roundSeconds: Int = 60

    @Option(help: "The first round's seed (each round after it uses the next); default: random.")
    var seed: UInt64?

    @Option(help: "sqlite, postgres or both.")
    var mode: String = "both"

    @Option(help: "The tributary executable (default: the one beside this binary).")
    var tributary: String?

    @Option(help: "Worker processes in PostgreSQL mode.")
    var workers: Int = 3

    func run() async throws {
        let binary = tributary.map { URL(fileURLWithPath: $0) }
            ?? URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent().appendingPathComponent("tributary")
        guard FileManager.default.isExecutableFile(atPath: binary.path) else {
            throw ValidationError("no tributary executable at \(binary.path): build it (swift build -c release --product tributary) or pass --tributary")
        }
        let modes: [ChaosOptions.Mode] = mode == "both" ? [.sqlite, .postgres] : try [ChaosOptions.Mode(rawValue: mode).orThrow("--mode: sqlite, postgres or both")]
        var next = seed ?? UInt64.random(in: 1...UInt64(UInt32.max))
        let end = ContinuousClock.now + .seconds(minutes * 60)
        var failed: [ChaosReport] = []
        var rounds = 0
        repeat {
            for mode in modes {
                let report = try await ChaosRun.run(
                    ChaosOptions(mode: mode, seed: next, duration: .seconds(roundSeconds), binary: binary, workers: workers) { line in
                        FileHandle.standardError.write(Data("\(Timestamp.now().iso8601) \(line)\n".utf8))
                    })
                print(report.summary)
                if !report.passed { failed.append(report) }
                next += 1
                rounds += 1
            }
        } while ContinuousClock.now < end
        print("\(rounds) rounds, \(failed.count) failed\(failed.isEmpty ? "" : ": seeds " + failed.map { "\($0.mode.rawValue) \($0.seed)" }.joined(separator: ", "))")
        if !failed.isEmpty { throw ExitCode(1) }
    }
}

extension Optional {
    func orThrow(_ message: String) throws -> Wrapped {
        guard let value = self else { throw ValidationError(message) }
        return value
    }
}
