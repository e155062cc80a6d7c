#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import ServiceLifecycle
import Synchronization
import TributaryCore
import TributaryStore

/// Prints the demo's runs as they finish, read back from the store (so it shows what any worker
/// did): one line per run with per-model changes and record counts. Once every variant has run it
/// prints `readMe` (how to read the records). Returns after `duration`, or runs until shutdown.
final class DemoRunReporter: Service, Sendable {
    let store: any Store
    let variants: [VariantRef]
    let duration: Duration?
    let output: CLIOutput
    let readMe: [String]
    private let state = Mutex(State())

    struct State {
        var printed = Set<Int64>()
        var succeeded = Set<VariantRef>()
        var ran = Set<VariantRef>()
        var toldHowToRead = false
    }

    init(store: any Store, variants: [VariantRef], duration: Duration?, output: CLIOutput, readMe: [String]) {
        self.store = store
        self.variants = variants
        self.duration = duration
        self.output = output
        self.readMe = readMe
    }

    func run() async throws {
        let since = Timestamp.now()
        let clock = ContinuousClock()
        let deadline = duration.map { clock.now + $0 }
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await self.report(finishedAfter: since)
                if let deadline, clock.now >= deadline { return }
                try? await Task.sleep(for: .milliseconds(500))
            }
        }
    }

    /// The variants that have not finished a successful run since the reporter started.
    func variantsWithoutSuccess() -> [VariantRef] {
        let succeeded = state.withLock { $0.succeeded }
        return variants.filter { !succeeded.contains($0) }
    }

    func report(finishedAfter since: Timestamp) async throws {
        var finished: [(RunRecord, [String: Int])] = []
        for variant in variants {
            for run in try await store.runs(of: variant, limit: 5).reversed() {
                guard run.status.isFinished, let end = run.finishedAt, end >= since, !state.withLock({ $0.printed.contains(run.id) }) else { continue }
                finished.append((run, try await store.recordCounts(of: variant)))
            }
        }
        for (run, counts) in finished.sorted(by: { ($0.0.finishedAt ?? $0.0.startedAt) < ($1.0.finishedAt ?? $1.0.startedAt) }) {
            output.line(Self.line(run, counts: counts))
            if let error = run.error { output.line("    error: \(error)") }
            let tellNow = state.withLock { s -> Bool in
                s.printed.insert(run.id)
                s.ran.insert(run.variant)
                if run.status == .succeeded { s.succeeded.insert(run.variant) }
                guard !s.toldHowToRead, s.ran.count == variants.count else { return false }
                s.toldHowToRead = true
                return true
            }
            if tellNow {
                output.line("")
                readMe.forEach { output.line($0) }
                output.line("")
            }
        }
    }

    /// `12:00:01  orders::store-eu  succeeded  INITIAL  Order +120 ~0 -0 (120 records)  0.31 s`
    static func line(_ run: RunRecord, counts: [String: Int]) -> String {
        let end = run.finishedAt ?? run.startedAt
        let clock = String(end.iso8601.dropFirst(11).prefix(8))
        let seconds = Double((end.microseconds - run.startedAt.microseconds) / 10_000) / 100
        let models = Set(run.results.keys).union(counts.keys).sorted().map { model -> String in
            let r = run.results[model] ?? ModelResult()
            return "\(model) +\(r.added) ~\(r.updated) -\(r.deleted) (\(counts[model] ?? 0) records)"
        }.joined(separator: ", ")
        func pad(_ text: String, _ width: Int) -> String { text + String(repeating: " ", count: max(0, width - text.count)) }
        return "\(clock)  \(pad("\(run.variant.syncName)::\(run.variant.variant)", 24)) \(pad(run.status.rawValue, 10)) \(pad(run.kind.rawValue, 11)) \(models)  \(seconds) s"
    }
}
