import ArgumentParser
import Foundation
import TributaryCore
import TributaryDemo
import TributaryEngine

/// Entry point of the `tributary` command line, for the stock binary and for user packages.
///
/// A user package starts Tributary with its own sync functions in a few lines:
///
/// ```swift
/// import Tributary
///
/// @main struct App {
///     static func main() async {
///         await TributaryCLI.main(functions: [OrdersSync(), TicketsSync()], actions: [CreateTicket()])
///     }
/// }
/// ```
public enum TributaryCLI {
    /// Parses `arguments` (default: the process's), runs the command and exits on error.
    ///
    /// - Parameters:
    ///   - functions: the sync functions this binary offers, in addition to the built-in demo ones.
    ///   - actions: the action functions it offers (`POST /action/trigger`).
    ///   - events: the on-event functions it offers (an integration's `on_events`).
    ///   - tracing: how `serve` exports spans when the configuration turns tracing on
    ///     (`OTelTracing.backend` from the `TributaryTracing` product); nil: a configuration that asks
    ///     for tracing is refused.
    public static func main(
        functions: [any SyncFunction], actions: [any ActionFunction] = [], events: [any ConnectionEventFunction] = [], arguments: [String]? = nil,
        tracing: TracingBootstrap? = nil
    ) async {
        let arguments = arguments ?? Array(CommandLine.arguments.dropFirst())
        do {
            try await run(functions: functions, actions: actions, events: events, arguments: arguments, tracing: tracing)
        } catch {
            TributaryCommand.exit(withError: error)
        }
    }

    /// Runs one command and returns, throwing what it throws (`ExitCode` included) — for tests and embedding.
    public static func run(
        functions: [any SyncFunction], actions: [any ActionFunction] = [], events: [any ConnectionEventFunction] = [], arguments: [String],
        output: CLIOutput = .standardOutput, tracing: TracingBootstrap? = nil
    ) async throws {
        var all = DemoSyncs.all
        let userNames = Set(functions.map(\.name))
        all.removeAll { userNames.contains($0.name) }
        all.append(contentsOf: functions)
        let registry = try SyncFunctionRegistry(all, actions: actions, events: events)
        try await CLIContext.$current.withValue(CLIContext(functions: registry, output: output, tracing: tracing)) {
            var command = try TributaryCommand.parseAsRoot(arguments)
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        }
    }
}

/// Where commands print.
public struct CLIOutput: Sendable {
    let write: @Sendable (String) -> Void

    /// Prints each line to standard output, flushed at once: a pipe or a file (a log collector,
    /// `tributary demo | tee`) gets every line as it happens, not when a buffer fills.
    public static let standardOutput = CLIOutput { line in
        print(line)
        fflush(nil)  // every output stream: stdout without touching the global
    }

    /// Sends each line to `write`.
    public init(_ write: @escaping @Sendable (String) -> Void) { self.write = write }

    func line(_ text: String = "") { write(text) }
}

/// What a command needs from the process that runs it.
struct CLIContext: Sendable {
    var functions: SyncFunctionRegistry
    var output: CLIOutput
    /// The binary's span exporter, if it has one.
    var tracing: TracingBootstrap? = nil

    @TaskLocal static var current = CLIContext(functions: try! SyncFunctionRegistry(DemoSyncs.all), output: .standardOutput)
}
