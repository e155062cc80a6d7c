#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import TributaryCore
import TributaryDemo

/// Loading `tributary.yaml` from disk.
enum ConfigFile {
    /// Reads and validates the file at `path`.
    static func load(_ path: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> TributaryConfig {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw CLIError("Cannot read configuration file \(path): \(error.localizedDescription)")
        }
        return try ConfigLoader.parse(yaml: String(decoding: data, as: UTF8.self), file: path, environment: environment)
    }

    /// The file at `path`; when `path` is the default and no such file exists, the built-in demo configuration.
    static func loadOrDemo(_ path: String, isDefault: Bool, output: CLIOutput) throws -> TributaryConfig {
        if isDefault, !FileManager.default.fileExists(atPath: path) {
            output.line(
                "No \(path) here: using the built-in demo configuration, which syncs from the demo shop API at $TRIBUTARY_DEMO_PROVIDER_URL (default http://127.0.0.1:\(DemoConfiguration.providerPort); start it with `tributary demo-provider`, or run everything with `tributary demo`).")
            return try ConfigLoader.parse(
                yaml: DemoConfiguration.yaml, file: "<built-in demo configuration>", environment: ProcessInfo.processInfo.environment)
        }
        return try load(path)
    }

    /// The environment to use: the named one, or the first.
    static func environment(_ name: String?, in config: TributaryConfig) throws -> EnvironmentConfig {
        if let name {
            guard let environment = config.environment(named: name) else {
                throw CLIError("Environment '\(name)' is not in the configuration (known: \(config.environments.map(\.name).joined(separator: ", "))).")
            }
            return environment
        }
        guard let first = config.environments.first else { throw CLIError("The configuration declares no environment.") }
        return first
    }
}

/// A command-line failure with a message for the user.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
