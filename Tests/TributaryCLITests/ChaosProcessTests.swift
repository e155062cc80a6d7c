import Foundation
import Testing
import TributaryChaos
import TributaryTestSupport

/// The chaos run, short (`TRIBUTARY_CHAOS_SECONDS`, default 40 s of faults per mode): real processes
/// killed, frozen past their lease and cut off by a restarted PostgreSQL while the API changes
/// everything; afterwards every invariant is checked against the provider's truth. The seed is
/// printed; `swift run -c release tributary-bench chaos --seed N --mode M` replays a round, and
/// `tributary-bench chaos --minutes 60` soaks.
@Suite("Chaos with real processes")
struct ChaosProcessTests {
    static var seconds: Int { Int(ProcessInfo.processInfo.environment["TRIBUTARY_CHAOS_SECONDS"] ?? "") ?? 40 }

    @Test(arguments: ChaosOptions.Mode.allCases) func invariantsHoldUnderFaults(_ mode: ChaosOptions.Mode) async throws {
        try #require(FileManager.default.isExecutableFile(atPath: ServeProcessTests.binary.path), "build the tributary product first")
        if mode == .postgres {
            try #require(FileManager.default.fileExists(atPath: "/usr/lib/postgresql"), "PostgreSQL is installed (the chaos run starts its own cluster)")
        }
        let seed = ProcessInfo.processInfo.environment["TRIBUTARY_CHAOS_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 1...UInt64(UInt32.max))
        print("chaos \(mode.rawValue) seed \(seed)")
        let report = try await ChaosRun.run(
            ChaosOptions(mode: mode, seed: seed, duration: .seconds(Self.seconds), binary: ServeProcessTests.binary) { print($0) })
        print(report.summary)
        #expect(report.failures.isEmpty, "seed \(seed): \(report.failures.joined(separator: "; "))")
        #expect(report.runs >= 9 && report.recordsChecked > 0 && report.changesFollowed > 0, "the run did work: \(report.summary)")
        #expect((report.actions["SIGKILL"] ?? 0) > 0 && (report.actions["SIGSTOP past the lease"] ?? 0) > 0, "faults happened: \(report.summary)")
    }
}
