import ArgumentParser
import TributaryCore

/// `tributary validate`: checks a configuration file and summarises it.
struct ValidateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate", abstract: "Check tributary.yaml and list what it declares.")

    @Option(name: .long, help: "Configuration file.")
    var config: String = "tributary.yaml"

    func run() async throws {
        let output = CLIContext.current.output
        let functions = CLIContext.current.functions
        let loaded: TributaryConfig
        do {
            loaded = try ConfigFile.load(config)
        } catch let error as ConfigError {
            for issue in error.issues { output.line(issue.description) }
            throw ExitCode(1)
        }
        output.line("\(config) is valid.")
        output.line("environments: \(loaded.environments.map(\.name).joined(separator: ", "))")
        var missing: [String] = []
        for integration in loaded.integrations {
            output.line("integration \(integration.providerConfigKey) (auth: \(integration.auth.typeName))")
            if integration.oauthAuthorization != nil {
                // What the integration's OAuth client must list as its redirect URI.
                let callback = loaded.server.publicURL.map { ConnectCallback.url(publicURL: $0) } ?? "(set server.public_url: the callback is <public_url>/oauth/callback)"
                output.line("  connect: OAuth 2 authorization code with \(integration.oauthAuthorization?.usesPKCE == true ? "PKCE" : "no PKCE"); callback URL \(callback)")
            } else if integration.isConnectable {
                output.line("  connect: a form for \(integration.auth.typeName == "basic" ? "a user name and password" : "an API key")\(integration.verification.map { ", verified with \($0.method) \($0.path)" } ?? "")")
            }
            for sync in integration.syncs {
                // A declarative sync runs the engine's own function.
                let known = sync.declarative != nil || functions.function(named: sync.function) != nil
                if !known { missing.append("\(integration.providerConfigKey)/\(sync.name) → \(sync.function)") }
                let runs = sync.declarative != nil ? "declarative" : "function \(sync.function)\(known ? "" : " (NOT REGISTERED)")"
                output.line(
                    "  sync \(sync.name): \(runs), models \(sync.models.joined(separator: ", ")), \(sync.syncType.rawValue), \(sync.frequency.text)\(sync.trackDeletes ? ", tracks deletes" : "")")
                if let note = Self.paginationNote(sync) { output.line("    \(note)") }
            }
            for action in integration.actions {
                let known = action.declarative != nil || functions.action(named: action.function) != nil
                if !known { missing.append("\(integration.providerConfigKey)/\(action.name) → \(action.function)") }
                let runs = action.declarative.map { "declarative \($0.method.rawValue) \($0.endpoint)" } ?? "function \(action.function)\(known ? "" : " (NOT REGISTERED)")"
                output.line("  action \(action.name): \(runs), time limit \(action.timeoutSeconds) s, output up to \(action.maxOutputBytes) bytes")
            }
            for event in ConnectionEvent.allCases {
                guard let names = integration.onEvents[event], !names.isEmpty else { continue }
                let shown = names.map { functions.event(named: $0) == nil ? "\($0) (NOT REGISTERED)" : $0 }
                for name in names where functions.event(named: name) == nil { missing.append("\(integration.providerConfigKey)/\(event.rawValue) → \(name)") }
                output.line("  on \(event.rawValue): \(shown.joined(separator: ", "))")
            }
        }
        if !missing.isEmpty {
            output.line("These syncs, actions and on-event functions use functions this binary does not register: \(missing.joined(separator: "; ")).")
            throw ExitCode(1)
        }
    }

    /// What a declarative sync that detects deletions does with offset or page pagination.
    static func paginationNote(_ sync: SyncConfig) -> String? {
        guard sync.detectsDeletes, let style = sync.declarative?.pagination?.style else { return nil }
        switch style {
        case .offset, .page:
            return "pages until an empty page: it detects deletions, so a short page (a provider capping its page size) does not end its listing"
        case .cursor, .link:
            return nil
        }
    }
}
