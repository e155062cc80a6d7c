import Yams

/// Parses and validates `tributary.yaml`.
///
/// ```yaml
/// database:
///   path: tributary.sqlite            # SQLite file of the embedded store (the default)
///   url: ${DATABASE_URL}              # or: PostgreSQL, shared by API and worker processes
///   max_connections: 10               # PostgreSQL connections of this process at most
/// server:
///   host: 127.0.0.1
///   port: 3003
///   max_variants_per_sync: 100        # base included
///   max_body_bytes: 1048576
///   max_variants_per_request: 1000    # a trigger/reset/pause over more variants is refused (never split)
/// scheduler:
///   max_concurrent_runs: 16
///   max_runs_per_connection: 4
///   tick_seconds: 1
///   drain_seconds: 30                 # on SIGTERM, time running runs get to finish
///   retry_max_attempts: 3             # retries after temporary failures (RetryableError)
///   retry_base_seconds: 10            # first retry delay; doubles each time, ±20% jitter
///   retry_max_seconds: 900
///   lease_seconds: 120                # a run's lease; after a crash its variant resumes when it runs out
///   max_run_attempts: 5               # a run interrupted this often (its process kept dying) is given up
/// outbound:                           # provider calls
///   timeout_seconds: 30               # per attempt
///   retries: 3                        # on network errors, 5xx and 429, with backoff + jitter
///   max_retry_after_seconds: 60       # a longer Retry-After fails the call as temporary
///   max_response_bytes: 52428800
///   max_page_bytes: 16777216
/// retention:                          # finished history kept (days, at least 1; cleaned hourly by workers)
///   runs_days: 30                     # finished runs and their logs (a variant's latest run stays)
///   webhook_deliveries_days: 30       # delivered or failed webhooks to the app
///   webhook_tasks_days: 30            # handled provider webhook tasks
/// tracing:                            # OpenTelemetry spans over OTLP/HTTP (off by default; OTEL_* variables override)
///   enabled: true
///   endpoint: http://localhost:4318/v1/traces
///   protocol: http/protobuf           # or http/json
///   service_name: tributary
///   sample_ratio: 1.0                 # share of runs traced, 0 to 1
/// environments:
///   dev:
///     secret_key: ${TRIBUTARY_DEV_SECRET_KEY}   # or secret_keys: [..] for rotation
///     connect:                        # the Connect page (needs server.public_url)
///       redirect_url: https://app.example.com/connected   # optional; else the page tells its opener
///       session_minutes: 30           # session token lifetime (1–1440)
/// integrations:
///   my-shop:                          # the provider_config_key
///     provider: shop                  # optional label
///     base_url: https://api.example.com
///     auth: { type: api_key, header: X-Api-Key }
///     # auth: { type: api_key, header: X-Api-Key, verification: { method: GET, path: /me } }
///     #   verification: checked with what an end user types on the Connect page before saving
///     # auth:                         # OAuth 2; with authorization_url, end users connect on the Connect page
///     #   type: oauth2
///     #   authorization_url: https://provider.example.com/oauth/authorize
///     #   token_url: https://provider.example.com/oauth/token
///     #   client_id: abc
///     #   client_secret: ${PROVIDER_CLIENT_SECRET}
///     #   scopes: [read, write]       # scope_separator: " " (default)
///     #   authorization_params: { access_type: offline }   # extra authorize parameters
///     #   disable_pkce: false         # PKCE (S256) is sent unless disabled
///     environments: [dev]             # optional; default: every environment
///     on_events:                      # registered ConnectionEventFunctions, run in order
///       validate-connection: [check-scopes]        # a failure refuses the connection
///       post-connection-creation: [fetch-account]
///       pre-connection-deletion: [revoke-token]
///     syncs:
///       sync-orders:
///         function: orders            # registered SyncFunction name (default: the sync name)
///         models: [Order]
///         frequency: every 5 minutes
///         sync_type: full             # full | incremental
///         track_deletes: true         # full syncs only
///         auto_start: true
///         webhook_subscriptions: [order.updated]
/// ```
///
/// Webhook settings (`webhook_delivery`, `environments.*.webhooks`, `integrations.*.webhooks`, a
/// sync's `webhook`) are described in `ConfigLoader+Webhooks.swift`.
///
/// Any string value may use `${VAR}` or `${VAR:-default}` to read an environment variable.
/// Every problem is reported with file, line and column; unknown keys are errors (with a
/// suggestion when the key looks like a typo of a known one).
public enum ConfigLoader {
    /// Parses configuration text.
    ///
    /// - Parameters:
    ///   - yaml: The file's contents.
    ///   - file: The name used in error messages.
    ///   - environment: Variables available to `${VAR}` (usually the process environment).
    /// - Throws: ``ConfigError`` listing every problem.
    public static func parse(yaml: String, file: String, environment: [String: String]) throws(ConfigError) -> TributaryConfig {
        var parser = Parser(file: file, env: environment)
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch {
            throw ConfigError(issues: [parser.yamlIssue(error)])
        }
        guard let root else {
            throw ConfigError(issues: [ConfigIssue(file: file, line: 0, column: 0, message: "the file is empty; it needs at least 'environments' and 'integrations'")])
        }
        let config = parser.parseRoot(root)
        if !parser.issues.isEmpty || config == nil {
            throw ConfigError(issues: parser.issues)
        }
        return config!
    }

    struct Entry {
        let key: String
        let keyNode: Node
        let value: Node
    }

    struct Parser {
        let file: String
        let env: [String: String]
        var issues: [ConfigIssue] = []

        init(file: String, env: [String: String]) {
            self.file = file
            self.env = env
        }

        mutating func issue(_ node: Node?, _ message: String) {
            issues.append(ConfigIssue(file: file, line: node?.mark?.line ?? 0, column: node?.mark?.column ?? 0, message: message))
        }

        func yamlIssue(_ error: any Error) -> ConfigIssue {
            if let yamlError = error as? YamlError {
                switch yamlError {
                case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _), .composer(_, let problem, let mark, _):
                    return ConfigIssue(file: file, line: mark.line, column: mark.column, message: "YAML syntax error: \(problem)")
                case .duplicatedKeysInMapping(let duplicates, let context):
                    return ConfigIssue(
                        file: file, line: context.mark.line, column: context.mark.column,
                        message: "duplicate key \(duplicates.map { "'\($0)'" }.joined(separator: ", "))")
                default:
                    break
                }
            }
            return ConfigIssue(file: file, line: 0, column: 0, message: "YAML error: \(error)")
        }

        // MARK: generic readers

        mutating func mapping(_ node: Node, _ what: String, allowed: [String]) -> [Entry]? {
            guard case .mapping(let mapping) = node else {
                issue(node, "\(what) must be a mapping of keys to values")
                return nil
            }
            var entries: [Entry] = []
            var seen: Set<String> = []
            for (keyNode, value) in mapping {
                guard case .scalar(let scalar) = keyNode else {
                    issue(keyNode, "keys in \(what) must be plain strings")
                    continue
                }
                let key = scalar.string
                if !seen.insert(key).inserted {
                    issue(keyNode, "duplicate key '\(key)' in \(what)")
                    continue
                }
                if !allowed.isEmpty, !allowed.contains(key) {
                    var message = "unknown key '\(key)' in \(what)"
                    if let suggestion = Self.closest(to: key, in: allowed) { message += " (did you mean '\(suggestion)'?)" }
                    message += "; allowed keys: \(allowed.joined(separator: ", "))"
                    issue(keyNode, message)
                    continue
                }
                entries.append(Entry(key: key, keyNode: keyNode, value: value))
            }
            return entries
        }

        mutating func string(_ node: Node, _ what: String) -> String? {
            guard case .scalar(let scalar) = node else {
                issue(node, "\(what) must be a single value, not a list or mapping")
                return nil
            }
            return interpolate(scalar.string, node, what)
        }

        mutating func nonEmptyString(_ node: Node, _ what: String) -> String? {
            guard let s = string(node, what) else { return nil }
            if s.isEmpty {
                issue(node, "\(what) must not be empty")
                return nil
            }
            return s
        }

        mutating func bool(_ node: Node, _ what: String) -> Bool? {
            guard let s = string(node, what) else { return nil }
            switch s.lowercased() {
            case "true", "yes", "on": return true
            case "false", "no", "off": return false
            default:
                issue(node, "\(what) must be true or false, not '\(s)'")
                return nil
            }
        }

        mutating func stringList(_ node: Node, _ what: String) -> [String]? {
            switch node {
            case .sequence(let sequence):
                var result: [String] = []
                for element in sequence {
                    if let s = nonEmptyString(element, "each entry of \(what)") { result.append(s) }
                }
                return result
            case .scalar:
                return nonEmptyString(node, what).map { [$0] }
            default:
                issue(node, "\(what) must be a list of strings")
                return nil
            }
        }

        /// Replaces `${VAR}` and `${VAR:-default}`.
        mutating func interpolate(_ text: String, _ node: Node, _ what: String) -> String? {
            guard text.contains("${") else { return text }
            var result = ""
            var rest = Substring(text)
            while let start = rest.range(of: "${") {
                result += rest[rest.startIndex..<start.lowerBound]
                guard let end = rest[start.upperBound...].firstIndex(of: "}") else {
                    issue(node, "unterminated '${' in \(what)")
                    return nil
                }
                let expression = rest[start.upperBound..<end]
                let name: Substring
                var fallback: Substring? = nil
                if let dash = expression.range(of: ":-") {
                    name = expression[expression.startIndex..<dash.lowerBound]
                    fallback = expression[dash.upperBound...]
                } else {
                    name = expression
                }
                if let value = env[String(name)], !value.isEmpty {
                    result += value
                } else if let fallback {
                    result += fallback
                } else {
                    issue(node, "environment variable \(name) used in \(what) is not set (set it, or write ${\(name):-default})")
                    return nil
                }
                rest = rest[rest.index(after: end)...]
            }
            result += rest
            return result
        }

        static func closest(to key: String, in candidates: [String]) -> String? {
            let scored = candidates.map { ($0, editDistance(key.lowercased(), $0)) }
            guard let best = scored.min(by: { $0.1 < $1.1 }), best.1 <= max(2, key.count / 3) else { return nil }
            return best.0
        }

        static func editDistance(_ a: String, _ b: String) -> Int {
            let a = Array(a.utf8)
            let b = Array(b.utf8)
            if a.isEmpty { return b.count }
            if b.isEmpty { return a.count }
            var previous = Array(0...b.count)
            var current = Array(repeating: 0, count: b.count + 1)
            for i in 1...a.count {
                current[0] = i
                for j in 1...b.count {
                    current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
                }
                swap(&previous, &current)
            }
            return previous[b.count]
        }

        // MARK: the schema

        mutating func parseRoot(_ root: Node) -> TributaryConfig? {
            guard let entries = mapping(root, "the configuration file", allowed: [
                    "database", "server", "scheduler", "outbound", "retention", "metrics", "tracing", "webhook_delivery", "environments",
                    "integrations",
                ]) else {
                return nil
            }
            var database = DatabaseConfig()
            var server = ServerConfig()
            var scheduler = SchedulerConfig()
            var outbound = OutboundConfig()
            var retention = RetentionConfig()
            var metrics = MetricsConfig()
            var tracing = TracingConfig()
            var webhookDelivery = WebhookDeliveryConfig()
            var environments: [EnvironmentConfig] = []
            var integrations: [IntegrationConfig] = []
            var sawEnvironments = false
            for entry in entries {
                switch entry.key {
                case "database":
                    if let db = parseDatabase(entry.value) { database = db }
                case "server":
                    if let parsed = parseServer(entry.value) { server = parsed }
                case "scheduler":
                    if let parsed = parseScheduler(entry.value) { scheduler = parsed }
                case "outbound":
                    if let parsed = parseOutbound(entry.value) { outbound = parsed }
                case "retention":
                    if let parsed = parseRetention(entry.value) { retention = parsed }
                case "metrics":
                    if let parsed = parseMetrics(entry.value) { metrics = parsed }
                case "tracing":
                    if let parsed = parseTracing(entry.value) { tracing = parsed }
                case "webhook_delivery":
                    if let parsed = parseWebhookDelivery(entry.value) { webhookDelivery = parsed }
                case "environments":
                    sawEnvironments = true
                    environments = parseEnvironments(entry.value)
                case "integrations":
                    integrations = parseIntegrations(entry.value)
                default:
                    break
                }
            }
            if !sawEnvironments {
                issue(root, "missing 'environments': declare at least one environment with a secret_key")
            }
            let names = Set(environments.map(\.name))
            for integration in integrations {
                for env in (integration.webhooks?.environmentSecrets.keys).map(Array.init) ?? [] where !names.contains(env) {
                    issues.append(
                        ConfigIssue(
                            file: file, line: 0, column: 0,
                            message: "integration '\(integration.providerConfigKey)' has webhooks.secrets for environment '\(env)', which is not declared under 'environments'"))
                }
                for env in integration.environments ?? [] where !names.contains(env) {
                    issues.append(
                        ConfigIssue(
                            file: file, line: 0, column: 0,
                            message: "integration '\(integration.providerConfigKey)' names environment '\(env)', which is not declared under 'environments'"))
                }
            }
            var keyOwner: [String: String] = [:]
            for environment in environments {
                for key in environment.secretKeys {
                    if let other = keyOwner[key.value] {
                        issues.append(
                            ConfigIssue(
                                file: file, line: 0, column: 0,
                                message: "environments '\(other)' and '\(environment.name)' share a secret key; each environment needs its own"))
                    }
                    keyOwner[key.value] = environment.name
                }
            }
            var config = TributaryConfig(
                database: database, server: server, scheduler: scheduler, outbound: outbound, webhookDelivery: webhookDelivery, environments: environments,
                integrations: integrations)
            config.retention = retention
            config.metrics = metrics
            config.tracing = tracing
            if let port = metrics.port, port == server.port {
                issues.append(
                    ConfigIssue(
                        file: file, line: 0, column: 0,
                        message: "metrics.port \(port) is the API's server.port; give /metrics a port of its own or leave metrics.port unset"))
            }
            return config
        }

        mutating func parseDatabase(_ node: Node) -> DatabaseConfig? {
            guard let entries = mapping(node, "'database'", allowed: ["path", "url", "max_connections"]) else { return nil }
            var config = DatabaseConfig()
            for entry in entries {
                switch entry.key {
                case "path":
                    if let path = nonEmptyString(entry.value, "database.path") { config.path = path }
                case "url":
                    guard let text = nonEmptyString(entry.value, "database.url") else { continue }
                    do {
                        config.url = try PostgresURL(text)
                    } catch {
                        issue(entry.value, "database.url is \(error)")
                    }
                case "max_connections":
                    if let count = integer(entry.value, "database.max_connections", in: 1...1000) { config.maxConnections = count }
                default: break
                }
            }
            return config
        }

        mutating func integer(_ node: Node, _ what: String, in range: ClosedRange<Int>) -> Int? {
            guard let text = string(node, what) else { return nil }
            guard let value = Int(text), range.contains(value) else {
                issue(node, "\(what) must be a whole number from \(range.lowerBound) to \(range.upperBound), not '\(text)'")
                return nil
            }
            return value
        }

        mutating func parseServer(_ node: Node) -> ServerConfig? {
            guard let entries = mapping(node, "'server'", allowed: ["host", "port", "max_variants_per_sync", "max_body_bytes", "max_variants_per_request", "public_url"])
            else {
                return nil
            }
            var config = ServerConfig()
            for entry in entries {
                switch entry.key {
                case "host": if let host = nonEmptyString(entry.value, "server.host") { config.host = host }
                case "public_url":
                    if let url = nonEmptyString(entry.value, "server.public_url") {
                        let trimmed = url.hasSuffix("/") ? String(url.dropLast()) : url
                        if (trimmed.hasPrefix("http://") || trimmed.hasPrefix("https://")), URLText.removingUserInfo(from: trimmed) == trimmed,
                            !trimmed.contains("?"), !trimmed.contains("#")
                        {
                            config.publicURL = trimmed
                        } else {
                            issue(entry.value, "server.public_url must be an http:// or https:// URL without user info, query or fragment, got '\(URLText.removingUserInfo(from: url))'")
                        }
                    }
                case "port": if let port = integer(entry.value, "server.port", in: 0...65535) { config.port = port }
                case "max_variants_per_sync":
                    if let max = integer(entry.value, "server.max_variants_per_sync", in: 1...100_000) { config.maxVariantsPerSync = max }
                case "max_body_bytes":
                    if let max = integer(entry.value, "server.max_body_bytes", in: 1024...1_073_741_824) { config.maxBodyBytes = max }
                case "max_variants_per_request":
                    if let max = integer(entry.value, "server.max_variants_per_request", in: 1...100_000) { config.maxVariantsPerRequest = max }
                default: break
                }
            }
            return config
        }

        mutating func parseScheduler(_ node: Node) -> SchedulerConfig? {
            let allowed = [
                "max_concurrent_runs", "max_runs_per_connection", "tick_seconds", "drain_seconds", "retry_max_attempts", "retry_base_seconds",
                "retry_max_seconds", "lease_seconds", "max_run_attempts", "cancel_timeout_seconds",
            ]
            guard let entries = mapping(node, "'scheduler'", allowed: allowed) else { return nil }
            var config = SchedulerConfig()
            for entry in entries {
                switch entry.key {
                case "max_concurrent_runs":
                    if let value = integer(entry.value, "scheduler.max_concurrent_runs", in: 1...10_000) { config.maxConcurrentRuns = value }
                case "max_runs_per_connection":
                    if let value = integer(entry.value, "scheduler.max_runs_per_connection", in: 1...10_000) { config.maxRunsPerConnection = value }
                case "retry_max_attempts":
                    if let value = integer(entry.value, "scheduler.retry_max_attempts", in: 0...20) { config.retry.maxAttempts = value }
                case "retry_base_seconds":
                    if let value = integer(entry.value, "scheduler.retry_base_seconds", in: 1...86_400) { config.retry.baseSeconds = Double(value) }
                case "retry_max_seconds":
                    if let value = integer(entry.value, "scheduler.retry_max_seconds", in: 1...86_400) { config.retry.maxSeconds = Double(value) }
                case "lease_seconds":
                    if let value = integer(entry.value, "scheduler.lease_seconds", in: 1...3600) { config.leaseSeconds = value }
                case "max_run_attempts":
                    if let value = integer(entry.value, "scheduler.max_run_attempts", in: 1...100) { config.maxRunAttempts = value }
                case "cancel_timeout_seconds":
                    // Accepted for old files, no longer used: a cancel ends the run in the store at once and fences its writes.
                    _ = integer(entry.value, "scheduler.cancel_timeout_seconds", in: 1...3600)
                case "drain_seconds":
                    if let value = integer(entry.value, "scheduler.drain_seconds", in: 0...3600) { config.drainSeconds = value }
                case "tick_seconds":
                    if let text = string(entry.value, "scheduler.tick_seconds") {
                        if let value = Double(text), value >= 0.05, value <= 60 {
                            config.tickSeconds = value
                        } else {
                            issue(entry.value, "scheduler.tick_seconds must be a number of seconds from 0.05 to 60, not '\(text)'")
                        }
                    }
                default: break
                }
            }
            return config
        }

        mutating func parseMetrics(_ node: Node) -> MetricsConfig? {
            guard let entries = mapping(node, "'metrics'", allowed: ["enabled", "token", "port"]) else { return nil }
            var config = MetricsConfig()
            for entry in entries {
                switch entry.key {
                case "enabled":
                    config.enabled = bool(entry.value, "metrics.enabled") ?? true
                case "token":
                    guard let token = nonEmptyString(entry.value, "metrics.token") else { continue }
                    if token.count < 16 { issue(entry.value, "metrics.token is shorter than 16 characters; use a long random value") }
                    config.token = Secret(token)
                case "port":
                    config.port = integer(entry.value, "metrics.port", in: 1...65535)
                default:
                    break
                }
            }
            return config
        }

        mutating func parseTracing(_ node: Node) -> TracingConfig? {
            guard let entries = mapping(node, "'tracing'", allowed: ["enabled", "endpoint", "protocol", "service_name", "sample_ratio"]) else { return nil }
            var config = TracingConfig()
            for entry in entries {
                switch entry.key {
                case "enabled":
                    config.enabled = bool(entry.value, "tracing.enabled") ?? false
                case "endpoint":
                    guard let url = nonEmptyString(entry.value, "tracing.endpoint") else { continue }
                    if (url.hasPrefix("http://") || url.hasPrefix("https://")), URLText.removingUserInfo(from: url) == url, !url.contains("?"), !url.contains("#") {
                        config.endpoint = url
                    } else {
                        issue(
                            entry.value,
                            "tracing.endpoint must be an http:// or https:// URL without user info, query or fragment (an OTLP/HTTP traces endpoint such as http://localhost:4318/v1/traces), got '\(URLText.removingUserInfo(from: url))'")
                    }
                case "protocol":
                    guard let text = nonEmptyString(entry.value, "tracing.protocol") else { continue }
                    if let wire = TracingConfig.WireProtocol(rawValue: text) {
                        config.wireProtocol = wire
                    } else {
                        issue(entry.value, "tracing.protocol must be http/protobuf or http/json, not '\(text)'")
                    }
                case "service_name":
                    if let name = nonEmptyString(entry.value, "tracing.service_name") { config.serviceName = name }
                case "sample_ratio":
                    if let ratio = number(entry.value, "tracing.sample_ratio", in: 0...1, unit: "runs traced") { config.sampleRatio = ratio }
                default:
                    break
                }
            }
            return config
        }

        mutating func parseRetention(_ node: Node) -> RetentionConfig? {
            guard let entries = mapping(node, "'retention'", allowed: ["runs_days", "webhook_deliveries_days", "webhook_tasks_days"]) else { return nil }
            var config = RetentionConfig()
            for entry in entries {
                guard let days = integer(entry.value, "retention.\(entry.key)", in: 1...36_500) else { continue }
                switch entry.key {
                case "runs_days": config.runsDays = days
                case "webhook_deliveries_days": config.webhookDeliveriesDays = days
                case "webhook_tasks_days": config.webhookTasksDays = days
                default: break
                }
            }
            return config
        }

        mutating func parseOutbound(_ node: Node) -> OutboundConfig? {
            guard let entries = mapping(node, "'outbound'", allowed: ["timeout_seconds", "retries", "max_retry_after_seconds", "max_response_bytes", "max_page_bytes"]) else {
                return nil
            }
            var config = OutboundConfig()
            for entry in entries {
                switch entry.key {
                case "timeout_seconds":
                    if let value = integer(entry.value, "outbound.timeout_seconds", in: 1...3600) { config.timeoutSeconds = value }
                case "retries":
                    if let value = integer(entry.value, "outbound.retries", in: 0...20) { config.retries = value }
                case "max_retry_after_seconds":
                    if let value = integer(entry.value, "outbound.max_retry_after_seconds", in: 0...3600) { config.maxRetryAfterSeconds = value }
                case "max_response_bytes":
                    if let value = integer(entry.value, "outbound.max_response_bytes", in: 1024...1_073_741_824) { config.maxResponseBytes = value }
                case "max_page_bytes":
                    if let value = integer(entry.value, "outbound.max_page_bytes", in: 1024...1_073_741_824) { config.maxPageBytes = value }
                default: break
                }
            }
            return config
        }

        mutating func parseEnvironments(_ node: Node) -> [EnvironmentConfig] {
            guard let entries = mapping(node, "'environments'", allowed: []) else { return [] }
            if entries.isEmpty { issue(node, "'environments' is empty: declare at least one environment") }
            var result: [EnvironmentConfig] = []
            for entry in entries {
                guard Identifier.isValidKey(entry.key) else {
                    issue(entry.keyNode, "environment name '\(entry.key)' is invalid: use letters, digits, '-', '_' or '.'")
                    continue
                }
                let what = "environment '\(entry.key)'"
                guard let fields = mapping(entry.value, what, allowed: ["secret_key", "secret_keys", "webhooks", "expose_credentials", "variables", "connect"]) else { continue }
                var keys: [Secret] = []
                var connect = EnvironmentConnect()
                var webhooks = EnvironmentWebhooks()
                var exposesCredentials = true
                var variables: [(name: String, value: Secret)] = []
                for field in fields {
                    let values: [String]
                    if field.key == "variables" {
                        for variable in mapping(field.value, "\(what).variables", allowed: []) ?? [] {
                            guard variable.key.first.map({ $0 == "_" || ($0.isASCII && $0.isLetter) }) == true,
                                variable.key.allSatisfy({ $0 == "_" || ($0.isASCII && ($0.isLetter || $0.isNumber)) }), variable.key.count <= 255
                            else {
                                issue(variable.keyNode, "\(what).variables: '\(variable.key.prefix(80))' is not a variable name (a letter or '_', then letters, digits or '_')")
                                continue
                            }
                            if let value = string(variable.value, "\(what).variables.\(variable.key)") { variables.append((variable.key, Secret(value))) }
                        }
                        continue
                    } else if field.key == "connect" {
                        if let parsed = parseEnvironmentConnect(field.value, what) { connect = parsed }
                        continue
                    } else if field.key == "expose_credentials" {
                        exposesCredentials = bool(field.value, "\(what).expose_credentials") ?? true
                        continue
                    } else if field.key == "webhooks" {
                        if let parsed = parseEnvironmentWebhooks(field.value, what) { webhooks = parsed }
                        continue
                    } else if field.key == "secret_key" {
                        values = nonEmptyString(field.value, "\(what).secret_key").map { [$0] } ?? []
                    } else {
                        values = stringList(field.value, "\(what).secret_keys") ?? []
                    }
                    for value in values {
                        if value.count < 16 {
                            issue(field.value, "\(what) has a secret key shorter than 16 characters; use a long random value (e.g. a UUID)")
                        } else {
                            keys.append(Secret(value))
                        }
                    }
                }
                if keys.isEmpty, !fields.contains(where: { $0.key.hasPrefix("secret_key") }) {
                    issue(entry.keyNode, "\(what) needs a 'secret_key' (or 'secret_keys')")
                }
                if let signing = webhooks.signingKey, keys.contains(signing) {
                    issue(
                        entry.value,
                        "\(what): the webhook signing_key must differ from the secret key (receivers learn it; the API key must stay private) — for apps that verify with the secret key, say 'sign_with_secret_key: true' instead"
                    )
                }
                if webhooks.signsWithSecretKey { webhooks.signingKey = keys.first }
                var environment = EnvironmentConfig(name: entry.key, secretKeys: keys, webhooks: webhooks)
                environment.exposesCredentials = exposesCredentials
                environment.variables = variables
                environment.connect = connect
                result.append(environment)
            }
            return result
        }

        mutating func parseIntegrations(_ node: Node) -> [IntegrationConfig] {
            guard let entries = mapping(node, "'integrations'", allowed: []) else { return [] }
            var result: [IntegrationConfig] = []
            for entry in entries {
                guard Identifier.isValidKey(entry.key) else {
                    issue(entry.keyNode, "integration key '\(entry.key)' is invalid: use letters, digits, '-', '_' or '.'")
                    continue
                }
                if let integration = parseIntegration(entry.key, entry.value) { result.append(integration) }
            }
            return result
        }

        mutating func parseIntegration(_ key: String, _ node: Node) -> IntegrationConfig? {
            let what = "integration '\(key)'"
            guard let entries = mapping(node, what, allowed: ["provider", "base_url", "auth", "environments", "syncs", "actions", "rate_limit_per_second", "webhooks", "on_events"]) else {
                return nil
            }
            var integration = IntegrationConfig(providerConfigKey: key, syncs: [])
            for entry in entries {
                switch entry.key {
                case "provider":
                    if let p = nonEmptyString(entry.value, "\(what).provider") { integration.provider = p }
                case "base_url":
                    if let url = nonEmptyString(entry.value, "\(what).base_url") {
                        if URLText.removingUserInfo(from: url) != url {
                            // It would be stored in checkpoints, shown and logged with every link.
                            issue(entry.value, "\(what).base_url must not hold a 'user:password@'; put credentials in the connection (auth: basic), got '\(URLText.removingUserInfo(from: url))'")
                        } else if url.hasPrefix("http://") || url.hasPrefix("https://") {
                            integration.baseURL = url
                        } else {
                            issue(entry.value, "\(what).base_url must start with http:// or https://, got '\(url)'")
                        }
                    }
                case "auth":
                    if let parsed = parseAuth(entry.value, what) {
                        integration.auth = parsed.scheme
                        integration.oauthAuthorization = parsed.authorization
                        integration.verification = parsed.verification
                    }
                case "rate_limit_per_second":
                    if let text = string(entry.value, "\(what).rate_limit_per_second") {
                        if let rate = Double(text), rate > 0, rate <= 10_000 {
                            integration.rateLimitPerSecond = rate
                        } else {
                            issue(entry.value, "\(what).rate_limit_per_second must be a number of requests per second above 0 (up to 10000), not '\(text)'")
                        }
                    }
                case "environments":
                    integration.environments = stringList(entry.value, "\(what).environments")
                case "syncs":
                    integration.syncs = parseSyncs(entry.value, what)
                case "actions":
                    integration.actions = parseActions(entry.value, what)
                case "on_events":
                    let events = "\(what).on_events"
                    for event in mapping(entry.value, events, allowed: ConnectionEvent.allCases.map(\.rawValue)) ?? [] {
                        guard let kind = ConnectionEvent(rawValue: event.key) else { continue }
                        let names = stringList(event.value, "\(events).\(event.key)") ?? []
                        for name in names where !Identifier.isValidSyncName(name) {
                            issue(event.value, "\(events).\(event.key): '\(name.prefix(80))' is not a function name (letters, digits, '-' or '_')")
                        }
                        integration.onEvents[kind] = names
                    }
                case "webhooks":
                    integration.webhooks = parseProviderWebhooks(entry.value, what)
                default:
                    break
                }
            }
            if integration.webhooks == nil, !entries.contains(where: { $0.key == "webhooks" }) {
                for sync in integration.syncs where !sync.webhookSubscriptions.isEmpty {
                    issue(
                        node,
                        "\(what): sync '\(sync.name)' has webhook_subscriptions, but the integration has no 'webhooks' section saying how a provider webhook names its connection (connection_path or connection_header)"
                    )
                }
            }
            var modelOwner: [String: String] = [:]
            for sync in integration.syncs {
                for model in sync.models {
                    if let other = modelOwner[model] {
                        issue(node, "\(what): model '\(model)' is written by both '\(other)' and '\(sync.name)'; a model belongs to one sync")
                    }
                    modelOwner[model] = sync.name
                }
            }
            return integration
        }

        /// `environments.<name>.connect`: `redirect_url`, `session_minutes`.
        mutating func parseEnvironmentConnect(_ node: Node, _ owner: String) -> EnvironmentConnect? {
            let what = "\(owner).connect"
            guard let entries = mapping(node, what, allowed: ["redirect_url", "session_minutes"]) else { return nil }
            var connect = EnvironmentConnect()
            for entry in entries {
                if entry.key == "redirect_url", let url = nonEmptyString(entry.value, "\(what).redirect_url") {
                    if EnvironmentWebhooks.isValidURL(url), !url.contains("#") {
                        connect.redirectURL = url
                    } else {
                        issue(entry.value, "\(what).redirect_url must be an http:// or https:// URL without a fragment, got '\(URLText.removingUserInfo(from: url))'")
                    }
                } else if entry.key == "session_minutes", let minutes = integer(entry.value, "\(what).session_minutes", in: 1...1440) {
                    connect.sessionSeconds = minutes * 60
                }
            }
            return connect
        }

        /// An integration's `auth`: the scheme, and for Connect the OAuth authorization settings
        /// (`oauth2`) or the verification request (`api_key`, `bearer`, `basic`).
        mutating func parseAuth(_ node: Node, _ owner: String) -> (scheme: AuthScheme, authorization: OAuthAuthorization?, verification: ConnectVerification?)? {
            let what = "\(owner).auth"
            let connectKeys = ["authorization_url", "authorization_params", "scope_separator", "disable_pkce", "verification"]
            guard let entries = mapping(node, what, allowed: ["type", "header", "query_parameter", "token_url", "scopes", "client_id", "client_secret"] + connectKeys) else {
                return nil
            }
            var fields: [String: (String, Node)] = [:]
            var scopes: [String] = []
            var parameters: [OAuthAuthorization.Parameter] = []
            var usesPKCE = true
            var verification: ConnectVerification?
            var nodes: [String: Node] = [:]
            for entry in entries {
                nodes[entry.key] = entry.value
                switch entry.key {
                case "scopes":
                    scopes = stringList(entry.value, "\(what).scopes") ?? []
                case "disable_pkce":
                    usesPKCE = !(bool(entry.value, "\(what).disable_pkce") ?? false)
                case "authorization_params":
                    for parameter in mapping(entry.value, "\(what).authorization_params", allowed: []) ?? [] {
                        if OAuthAuthorization.reservedParameters.contains(parameter.key) {
                            issue(parameter.keyNode, "\(what).authorization_params: '\(parameter.key)' is set by the flow itself and cannot be given")
                        } else if let value = string(parameter.value, "\(what).authorization_params.\(parameter.key)") {
                            parameters.append(.init(name: parameter.key, value: value))
                        }
                    }
                case "verification":
                    guard let parts = mapping(entry.value, "\(what).verification", allowed: ["method", "path"]) else { continue }
                    var method = "GET"
                    var path: String?
                    for part in parts {
                        if part.key == "method", let value = nonEmptyString(part.value, "\(what).verification.method") {
                            if ["GET", "POST", "HEAD"].contains(value.uppercased()) {
                                method = value.uppercased()
                            } else {
                                issue(part.value, "\(what).verification.method must be GET, POST or HEAD, got '\(value.prefix(20))'")
                            }
                        } else if part.key == "path" {
                            path = nonEmptyString(part.value, "\(what).verification.path")
                        }
                    }
                    if let path { verification = ConnectVerification(method: method, path: path) } else { issue(entry.value, "\(what).verification needs a 'path'") }
                default:
                    if let value = nonEmptyString(entry.value, "\(what).\(entry.key)") { fields[entry.key] = (value, entry.value) }
                }
            }
            guard let (type, typeNode) = fields["type"] else {
                issue(node, "\(what) needs a 'type': none, api_key, bearer, basic, oauth2 or oauth2_client_credentials")
                return nil
            }
            func reject(_ keys: [String]) {
                for key in keys where nodes[key] != nil { issue(nodes[key]!, "\(what): '\(key)' does not apply to type \(type)") }
            }
            switch type {
            case "none", "bearer", "basic":
                reject(["header", "query_parameter", "token_url", "client_id", "client_secret", "scopes", "authorization_url", "authorization_params", "scope_separator", "disable_pkce"])
                if type == "none" { reject(["verification"]) }
                return (type == "none" ? AuthScheme.none : type == "bearer" ? .bearer : .basic, nil, verification)
            case "api_key":
                reject(["token_url", "client_id", "client_secret", "scopes", "authorization_url", "authorization_params", "scope_separator", "disable_pkce"])
                let header = fields["header"]?.0
                let query = fields["query_parameter"]?.0
                if (header == nil) == (query == nil) {
                    issue(node, "\(what): type api_key needs exactly one of 'header' or 'query_parameter'")
                    return nil
                }
                return (.apiKey(header: header, queryParameter: query), nil, verification)
            case "oauth2", "oauth2_client_credentials":
                reject(["header", "query_parameter", "verification"])
                guard let tokenURL = fields["token_url"]?.0 else {
                    issue(node, "\(what): type \(type) needs a 'token_url'")
                    return nil
                }
                if type == "oauth2" {
                    guard let clientID = fields["client_id"]?.0, let clientSecret = fields["client_secret"]?.0 else {
                        issue(node, "\(what): type oauth2 needs 'client_id' and 'client_secret' (to refresh tokens; use ${VAR} for the secret)")
                        return nil
                    }
                    var authorization: OAuthAuthorization?
                    if let (url, urlNode) = fields["authorization_url"] {
                        if EnvironmentWebhooks.isValidURL(url), !url.contains("#") {
                            authorization = OAuthAuthorization(
                                authorizationURL: url, scopes: scopes, scopeSeparator: fields["scope_separator"]?.0 ?? " ", parameters: parameters, usesPKCE: usesPKCE)
                        } else {
                            issue(urlNode, "\(what).authorization_url must be an http:// or https:// URL without a fragment, got '\(URLText.removingUserInfo(from: url))'")
                        }
                    } else {
                        reject(["authorization_params", "scope_separator", "disable_pkce"])
                    }
                    return (.oauth2(tokenURL: tokenURL, clientID: clientID, clientSecret: Secret(clientSecret)), authorization, nil)
                }
                reject(["client_id", "client_secret", "authorization_url", "authorization_params", "scope_separator", "disable_pkce"])  // a client-credentials connection carries its own
                return (.oauth2ClientCredentials(tokenURL: tokenURL, scopes: scopes), nil, nil)
            default:
                issue(typeNode, "\(what).type '\(type)' is unknown; use none, api_key, bearer, basic, oauth2 or oauth2_client_credentials")
                return nil
            }
        }

        mutating func parseSyncs(_ node: Node, _ owner: String) -> [SyncConfig] {
            guard let entries = mapping(node, "\(owner).syncs", allowed: []) else { return [] }
            var result: [SyncConfig] = []
            for entry in entries {
                guard Identifier.isValidSyncName(entry.key) else {
                    issue(entry.keyNode, "sync name '\(entry.key)' is invalid: use letters, digits, '-' or '_'")
                    continue
                }
                if let sync = parseSync(entry.key, entry.value, owner) { result.append(sync) }
            }
            return result
        }

        mutating func parseSync(_ name: String, _ node: Node, _ owner: String) -> SyncConfig? {
            let what = "sync '\(name)' of \(owner)"
            let allowed = [
                "function", "models", "frequency", "jitter_seconds", "overlap", "sync_type", "track_deletes", "auto_start", "webhook_subscriptions",
                "webhook", "description",
                "endpoint", "method", "params", "pagination", "records_path", "id_field", "incremental_param", "fields", "rename",
            ]
            guard let entries = mapping(node, what, allowed: allowed) else { return nil }
            var function: String? = nil
            var models: [String]? = nil
            var frequency: Frequency? = nil
            var syncType = SyncType.full
            var trackDeletes = false
            var trackDeletesNode: Node? = nil
            var autoStart = true
            var subscriptions: [String] = []
            var description: String? = nil
            var schedule = SchedulePolicy()
            var valid = true
            var declarative: DeclarativeSpec? = nil
            if let endpointEntry = entries.first(where: { $0.key == "endpoint" }) {
                declarative = parseDeclarative(entries, endpointEntry, what)
                if declarative == nil { valid = false }
            } else {
                for entry in entries where Self.declarativeKeys.contains(entry.key) {
                    issue(entry.keyNode, "\(what): '\(entry.key)' belongs to a declarative sync, which needs an 'endpoint'")
                    valid = false
                }
            }
            for entry in entries {
                switch entry.key {
                case "function":
                    function = nonEmptyString(entry.value, "\(what).function")
                case "models":
                    guard let list = stringList(entry.value, "\(what).models") else {
                        valid = false
                        continue
                    }
                    for model in list where !ModelName.isValid(model) {
                        issue(entry.value, "\(what): model name '\(model)' is invalid; it must match ^[A-Z][a-zA-Z0-9_]*$ (e.g. Order)")
                        valid = false
                    }
                    if Set(list).count != list.count { issue(entry.value, "\(what): models are listed twice") }
                    if list.isEmpty { issue(entry.value, "\(what).models is empty; list the models this sync writes") }
                    models = list
                case "frequency":
                    if let text = nonEmptyString(entry.value, "\(what).frequency") {
                        do {
                            frequency = try Frequency(text)
                        } catch {
                            issue(entry.value, "\(what): \(error.message)")
                            valid = false
                        }
                    }
                case "sync_type":
                    if let text = nonEmptyString(entry.value, "\(what).sync_type") {
                        if let type = SyncType(rawValue: text.lowercased()) {
                            syncType = type
                        } else {
                            issue(entry.value, "\(what).sync_type must be 'full' or 'incremental', not '\(text)'")
                        }
                    }
                case "track_deletes":
                    trackDeletes = bool(entry.value, "\(what).track_deletes") ?? false
                    trackDeletesNode = entry.value
                case "auto_start":
                    autoStart = bool(entry.value, "\(what).auto_start") ?? true
                case "jitter_seconds":
                    if let seconds = integer(entry.value, "\(what).jitter_seconds", in: 0...Int(SchedulePolicy.maximumJitterSeconds)) {
                        schedule.jitterSeconds = Int64(seconds)
                    } else {
                        valid = false
                    }
                case "overlap":
                    if let text = nonEmptyString(entry.value, "\(what).overlap") {
                        if let overlap = SchedulePolicy.Overlap(rawValue: text.lowercased()) {
                            schedule.overlap = overlap
                        } else {
                            issue(entry.value, "\(what).overlap must be 'skip' or 'run_after', not '\(text.prefix(40))'")
                            valid = false
                        }
                    }
                case "webhook_subscriptions":
                    subscriptions = stringList(entry.value, "\(what).webhook_subscriptions") ?? []
                case "description":
                    description = string(entry.value, "\(what).description")
                default:
                    break
                }
            }
            if models == nil {
                issue(node, "\(what) needs 'models': the list of models it writes (e.g. [Order])")
                valid = false
            }
            if frequency == nil, !entries.contains(where: { $0.key == "frequency" }) {
                issue(node, "\(what) needs a 'frequency' (e.g. 'every 5 minutes')")
                valid = false
            }
            if trackDeletes, syncType == .incremental {
                issue(trackDeletesNode, "\(what): track_deletes only works with sync_type full (an incremental run does not see every record)")
                valid = false
            }
            if declarative != nil {
                if let node = entries.first(where: { $0.key == "function" })?.keyNode {
                    issue(node, "\(what) has both a 'function' and an 'endpoint'; a declarative sync has no function")
                    valid = false
                }
                if let models, models.count != 1 {
                    issue(node, "\(what): a declarative sync writes exactly one model")
                    valid = false
                }
            }
            var webhookHandler: DeclarativeWebhookHandler? = nil
            if let entry = entries.first(where: { $0.key == "webhook" }) {
                webhookHandler = parseWebhookHandler(entry.value, "\(what).webhook", models: models, declarative: declarative)
                if webhookHandler == nil { valid = false }
                if subscriptions.isEmpty {
                    issue(entry.keyNode, "\(what) has a 'webhook' handler but no 'webhook_subscriptions' (list the webhook types it handles, or '*')")
                    valid = false
                }
            }
            guard valid, let models, let frequency else { return nil }
            var sync = SyncConfig(
                name: name, function: function, models: models, frequency: frequency, syncType: syncType,
                trackDeletes: trackDeletes, autoStart: autoStart, webhookSubscriptions: subscriptions, description: description)
            sync.declarative = declarative
            sync.webhookHandler = webhookHandler
            sync.schedule = schedule
            return sync
        }

        static let declarativeKeys: Set<String> = ["method", "params", "pagination", "records_path", "id_field", "incremental_param", "fields", "rename"]

        mutating func parseDeclarative(_ entries: [Entry], _ endpointEntry: Entry, _ what: String) -> DeclarativeSpec? {
            guard let endpoint = nonEmptyString(endpointEntry.value, "\(what).endpoint") else { return nil }
            var spec = DeclarativeSpec(endpoint: endpoint)
            var valid = true
            for entry in entries {
                switch entry.key {
                case "method":
                    if let method = method(entry.value, "\(what).method") { spec.method = method } else { valid = false }
                case "params", "rename":
                    guard let list = parameters(entry.value, "\(what).\(entry.key)") else {
                        valid = false
                        continue
                    }
                    if entry.key == "params" { spec.params = list } else { spec.rename = list }
                case "records_path":
                    spec.recordsPath = nonEmptyString(entry.value, "\(what).records_path")
                case "id_field":
                    if let field = nonEmptyString(entry.value, "\(what).id_field") { spec.idField = field }
                case "incremental_param":
                    spec.incrementalParam = nonEmptyString(entry.value, "\(what).incremental_param")
                case "fields":
                    spec.fields = stringList(entry.value, "\(what).fields")
                case "pagination":
                    spec.pagination = parsePagination(entry.value, "\(what).pagination")
                    if spec.pagination == nil { valid = false }
                default:
                    break
                }
            }
            spec.pagination?.recordsPath = spec.recordsPath
            return valid ? spec : nil
        }

        /// An HTTP method of a provider request (any case).
        mutating func method(_ node: Node, _ what: String) -> ProviderRequest.Method? {
            guard let text = nonEmptyString(node, what) else { return nil }
            guard let method = ProviderRequest.Method(rawValue: text.uppercased()) else {
                issue(node, "\(what) must be GET, POST, PUT, PATCH or DELETE, not '\(text)'")
                return nil
            }
            return method
        }

        /// A mapping of names to single values (request parameters, headers, renames); nil when any is not.
        mutating func parameters(_ node: Node, _ what: String) -> [DeclarativeSpec.Parameter]? {
            guard let pairs = mapping(node, what, allowed: []) else { return nil }
            var list: [DeclarativeSpec.Parameter] = []
            var valid = true
            for pair in pairs {
                if let value = string(pair.value, "\(what).\(pair.key)") { list.append(.init(pair.key, value)) } else { valid = false }
            }
            return valid ? list : nil
        }

        mutating func parsePagination(_ node: Node, _ what: String) -> Pagination? {
            let allowed = ["type", "cursor_path", "cursor_param", "next_url_path", "offset_param", "page_param", "first_page", "limit_param", "limit"]
            guard let entries = mapping(node, what, allowed: allowed) else { return nil }
            var fields: [String: (String, Node)] = [:]
            for entry in entries {
                if let value = nonEmptyString(entry.value, "\(what).\(entry.key)") { fields[entry.key] = (value, entry.value) }
            }
            func required(_ key: String, for type: String) -> String? {
                guard let value = fields[key]?.0 else {
                    issue(node, "\(what): type \(type) needs '\(key)'")
                    return nil
                }
                return value
            }
            var limit: Int? = nil
            if let (text, limitNode) = fields["limit"] {
                guard let value = Int(text), (1...100_000).contains(value) else {
                    issue(limitNode, "\(what).limit must be a whole number from 1 to 100000, not '\(text)'")
                    return nil
                }
                limit = value
                if fields["limit_param"] == nil { issue(limitNode, "\(what).limit needs 'limit_param': the query parameter that sets the page size") }
            }
            let style: Pagination.Style
            switch fields["type"]?.0 {
            case "cursor":
                guard let path = required("cursor_path", for: "cursor"), let parameter = required("cursor_param", for: "cursor") else { return nil }
                style = .cursor(nextCursorPath: path, cursorParameter: parameter)
            case "link":
                style = .link(nextURLPath: fields["next_url_path"]?.0)
            case "offset":
                guard let parameter = required("offset_param", for: "offset") else { return nil }
                style = .offset(offsetParameter: parameter)
            case "page":
                guard let parameter = required("page_param", for: "page") else { return nil }
                var first = 1
                if let (text, firstNode) = fields["first_page"] {
                    guard let value = Int(text), value >= 0 else {
                        issue(firstNode, "\(what).first_page must be a whole number, not '\(text)'")
                        return nil
                    }
                    first = value
                }
                style = .page(pageParameter: parameter, firstPage: first)
            case let other?:
                issue(fields["type"]?.1 ?? node, "\(what).type '\(other)' is unknown; use cursor, link, offset or page")
                return nil
            case nil:
                issue(node, "\(what) needs a 'type': cursor, link, offset or page")
                return nil
            }
            return Pagination(style, limitParameter: fields["limit_param"]?.0, limit: limit)
        }
    }
}
