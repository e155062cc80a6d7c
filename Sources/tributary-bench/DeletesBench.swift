import ArgumentParser
import TributaryCore

/// `deletes`: a full refresh (`track_deletes`) over N records where 1% disappeared at the provider:
/// the save pass (and its `batchSave` calls alone) against the deletion detection that follows it
/// when the run succeeds.
struct DeletesBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deletes", abstract: "Full refresh with deletes: deletion detection time relative to the save pass.")

    @OptionGroup var options: BenchOptions

    func run() async throws {
        let stores = try BenchStores(options: options)
        defer { stores.removeFiles() }
        let n = options.records
        var report = BenchReport(
            suite: "deletes: full refresh of \(n) orders, 1% gone at the provider",
            header: ["step", "store", "seconds", "records/s", "of save pass", "result"])
        for kind in stores.kinds {
            let (load, refresh) = try await stores.withStore(kind, name: "deletes") { store, _ in
                let sync = OrdersSync(store: store, records: n, pageSize: options.pageSize, trackDeletes: true, logger: stores.logger)
                let load = try await sync.run(OrderGenerator())
                let refresh = try await sync.run(OrderGenerator(missingEvery: 100))
                return (load, refresh)
            }
            let expected = (0..<n).lazy.filter { $0 % 100 == 50 }.count
            let deleted = refresh.run.results["Order"]?.deleted ?? 0
            guard refresh.run.status == .succeeded, deleted == expected else {
                throw ValidationError("the refresh should delete \(expected) records: \(refresh.result)")
            }
            let save = refresh.seconds - refresh.finishSeconds
            let store = kind.rawValue
            report.add(["first load", store, seconds(load.seconds), "\(rate(n, load.seconds))", "", load.result])
            report.add(["refresh: save pass (99% unchanged)", store, seconds(save), "\(rate(n - expected, save))", "100%", ""])
            // The save pass's `batchSave` calls alone (what the ingest suite times): the provider's
            // pages, their parsing and the run around them are the rest of the pass.
            report.add(["refresh: its batchSave calls", store, seconds(refresh.saveSeconds), "\(rate(n - expected, refresh.saveSeconds))",
                        percent(refresh.saveSeconds, of: save), ""])
            report.add(["refresh: deletion detection + finish", store, seconds(refresh.finishSeconds), "", percent(refresh.finishSeconds, of: save), refresh.result])
            report.figure(kind, "save_pass_s", save)
            report.figure(kind, "save_calls_s", refresh.saveSeconds)
            report.figure(kind, "deletion_detection_s", refresh.finishSeconds)
            report.figure(kind, "deletion_vs_save", refresh.finishSeconds / max(save, 1e-9))
        }
        try report.print(options: options)
    }
}
