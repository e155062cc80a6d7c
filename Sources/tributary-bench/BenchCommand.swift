import ArgumentParser

/// `tributary-bench`: release-build benchmarks, one subcommand per suite. Each prints a table and,
/// with `--json`, writes its figures; `--database postgres://…` adds a PostgreSQL run beside
/// SQLite. Figures and how to reproduce them: docs/BENCHMARKS.md.
@main
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tributary-bench", abstract: "Tributary benchmarks (build with -c release).",
        subcommands: [IngestBench.self, FeedBench.self, DeletesBench.self, EndToEndBench.self, SchedulerBench.self, ChaosCommand.self, OrdersProviderCommand.self, SchedulerWorkerCommand.self])
}
