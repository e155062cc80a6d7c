/// The tracing exporter's settings, resolved from `tributary.yaml`'s `tracing:` section and the
/// OpenTelemetry environment variables (which win, as OpenTelemetry specifies). Tributary reads the
/// variables itself — the exporter library is handed only these checked values — so a variable the
/// build cannot honour is refused with its name instead of stopping the process, and no value
/// (a collector's API key in `OTEL_EXPORTER_OTLP_HEADERS`) is ever logged.
///
/// Read: `OTEL_SERVICE_NAME`; `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as it is) or
/// `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/traces` appended); `…_PROTOCOL`, `…_HEADERS`, `…_TIMEOUT`,
/// `…_CERTIFICATE`, `…_CLIENT_KEY`, `…_CLIENT_CERTIFICATE` (each `OTEL_EXPORTER_OTLP_TRACES_*` before
/// `OTEL_EXPORTER_OTLP_*`); `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`; `OTEL_BSP_*`.
/// Not read: `OTEL_PROPAGATORS` (Tributary neither receives nor sends trace context) and
/// `OTEL_RESOURCE_ATTRIBUTES`.
public struct TracingSettings: Sendable, Equatable {
    /// One header sent with every export (a collector's API key, say).
    public struct Header: Sendable, Equatable {
        public var name: String
        public var value: Secret

        public init(name: String, value: Secret) {
            self.name = name
            self.value = value
        }
    }

    /// The OTLP/HTTP traces URL spans are posted to.
    public var endpoint: String
    public var wireProtocol: TracingConfig.WireProtocol
    public var serviceName: String
    /// The share of runs traced, 0 to 1 (their spans kept or dropped together).
    public var sampleRatio: Double
    public var headers: [Header]
    /// How long an export request may take (`OTEL_EXPORTER_OTLP_TIMEOUT`, default 5 s).
    public var timeoutMilliseconds: Int
    /// How often spans are sent (`OTEL_BSP_SCHEDULE_DELAY`, default 5 s).
    public var scheduleDelayMilliseconds: Int
    /// How long one batch's export may take before it is given up (`OTEL_BSP_EXPORT_TIMEOUT`, default
    /// 5 s — also what a shutdown waits for the last spans).
    public var exportTimeoutMilliseconds: Int
    /// Spans kept waiting for export; more are dropped (`OTEL_BSP_MAX_QUEUE_SIZE`, default 2,048).
    public var maxQueueSize: Int
    /// Spans per export request (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, default 512).
    public var maxExportBatchSize: Int
    /// TLS files for the collector's connection (paths).
    public var certificatePath: String?
    public var clientKeyPath: String?
    public var clientCertificatePath: String?

    /// Where spans go when nothing says otherwise: a collector on this machine.
    public static let defaultEndpoint = "http://localhost:4318/v1/traces"

    /// Why the settings cannot be used; names the variable or key, never its value when it may be a secret.
    public struct Invalid: Error, Sendable, Equatable, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    /// Resolves `config` with `environment`'s `OTEL_*` variables.
    public static func resolve(_ config: TracingConfig, environment: [String: String]) throws(Invalid) -> TracingSettings {
        func variable(_ suffix: String) -> (name: String, value: String)? {
            for name in ["OTEL_EXPORTER_OTLP_TRACES_\(suffix)", "OTEL_EXPORTER_OTLP_\(suffix)"] {
                if let value = environment[name], !value.isEmpty { return (name, value) }
            }
            return nil
        }

        var settings = TracingSettings(
            endpoint: defaultEndpoint, wireProtocol: config.wireProtocol, serviceName: config.serviceName, sampleRatio: config.sampleRatio, headers: [],
            timeoutMilliseconds: 5_000, scheduleDelayMilliseconds: 5_000, exportTimeoutMilliseconds: 5_000, maxQueueSize: 2_048, maxExportBatchSize: 512)

        if let name = environment["OTEL_SERVICE_NAME"], !name.isEmpty { settings.serviceName = name }

        if let (name, value) = environment["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"].flatMap({ $0.isEmpty ? nil : ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", $0) }) {
            settings.endpoint = try checkedURL(value, from: name)
        } else if let value = environment["OTEL_EXPORTER_OTLP_ENDPOINT"], !value.isEmpty {
            // The general variable is a base URL: each signal appends its own path.
            let base = try checkedURL(value, from: "OTEL_EXPORTER_OTLP_ENDPOINT")
            settings.endpoint = withTracesPath(base)
        } else if let endpoint = config.endpoint {
            // A collector's address without a path gets the traces path, as the general variable does.
            settings.endpoint = try checkedURL(endpoint, from: "tracing.endpoint")
            if pathOf(settings.endpoint).isEmpty || pathOf(settings.endpoint) == "/" {
                settings.endpoint = withTracesPath(settings.endpoint)
            }
        }

        if let (name, value) = variable("PROTOCOL") {
            switch value.lowercased() {
            case "http/protobuf": settings.wireProtocol = .httpProtobuf
            case "http/json": settings.wireProtocol = .httpJSON
            case "grpc": throw Invalid(message: "\(name)=grpc: this build exports over OTLP/HTTP only; use http/protobuf (a collector's port 4318)")
            default: throw Invalid(message: "\(name) must be http/protobuf or http/json, not '\(value.prefix(40))'")
            }
        }

        if let (name, value) = variable("HEADERS") {
            // `key1=value1,key2=value2`, values percent-encoded (W3C baggage's format, as the specification says).
            for entry in value.split(separator: ",", omittingEmptySubsequences: true) {
                let parts = entry.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let key = parts.first.map { String($0).trimmingSpaces } ?? ""
                guard parts.count == 2, !key.isEmpty, key.utf8.allSatisfy(Self.isTokenByte) else {
                    throw Invalid(message: "\(name) must be a comma-separated list of name=value pairs with header names (its values are not shown)")
                }
                guard let decoded = percentDecoded(String(parts[1]).trimmingSpaces), !decoded.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) else {
                    throw Invalid(message: "\(name): the value of header '\(key)' is not valid percent-encoded text (its value is not shown)")
                }
                settings.headers.append(Header(name: key, value: Secret(decoded)))
            }
        }

        if let sampler = environment["OTEL_TRACES_SAMPLER"], !sampler.isEmpty {
            switch sampler.lowercased() {
            case "always_on", "parentbased_always_on": settings.sampleRatio = 1
            case "always_off", "parentbased_always_off": settings.sampleRatio = 0
            case "traceidratio", "parentbased_traceidratio":
                if let argument = environment["OTEL_TRACES_SAMPLER_ARG"], !argument.isEmpty {
                    guard let ratio = Double(argument.trimmingSpaces), ratio >= 0, ratio <= 1 else {
                        throw Invalid(message: "OTEL_TRACES_SAMPLER_ARG must be a number from 0 to 1, not '\(argument.prefix(40))'")
                    }
                    settings.sampleRatio = ratio
                } else {
                    settings.sampleRatio = 1
                }
            default:
                throw Invalid(
                    message:
                        "OTEL_TRACES_SAMPLER '\(sampler.prefix(40))' is not supported; use always_on, always_off, traceidratio or their parentbased_ forms")
            }
        }

        let timeout = variable("TIMEOUT")?.name ?? "OTEL_EXPORTER_OTLP_TIMEOUT"
        settings.timeoutMilliseconds = try integer(timeout, in: environment, default: 5_000, in: 100...600_000, unit: " of milliseconds")
        settings.scheduleDelayMilliseconds = try integer("OTEL_BSP_SCHEDULE_DELAY", in: environment, default: 5_000, in: 10...600_000, unit: " of milliseconds")
        settings.exportTimeoutMilliseconds = try integer("OTEL_BSP_EXPORT_TIMEOUT", in: environment, default: 5_000, in: 100...600_000, unit: " of milliseconds")
        settings.maxQueueSize = try integer("OTEL_BSP_MAX_QUEUE_SIZE", in: environment, default: 2_048, in: 1...65_536)
        settings.maxExportBatchSize = try integer(
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", in: environment, default: min(512, settings.maxQueueSize), in: 1...settings.maxQueueSize)
        settings.certificatePath = variable("CERTIFICATE")?.value
        settings.clientKeyPath = variable("CLIENT_KEY")?.value
        settings.clientCertificatePath = variable("CLIENT_CERTIFICATE")?.value
        return settings
    }

    /// The variable `name` as a whole number in `range` (`unit` reads after "a whole number"), or `value` when unset.
    static func integer(
        _ name: String, in environment: [String: String], default value: Int, in range: ClosedRange<Int>, unit: String = ""
    ) throws(Invalid) -> Int {
        guard let text = environment[name], !text.isEmpty else { return value }
        guard let number = Int(text.trimmingSpaces), range.contains(number) else {
            throw Invalid(message: "\(name) must be a whole number\(unit) from \(range.lowerBound) to \(range.upperBound), not '\(text.prefix(40))'")
        }
        return number
    }

    /// An http(s) URL with a host and no user info, query or fragment; the message never shows user info.
    static func checkedURL(_ text: String, from name: String) throws(Invalid) -> String {
        let shown = URLText.removingUserInfo(from: String(text.prefix(200)))
        let scheme = text.hasPrefix("http://") ? "http://" : (text.hasPrefix("https://") ? "https://" : nil)
        guard let scheme else { throw Invalid(message: "\(name) must be an http:// or https:// URL, got '\(shown)'") }
        let authority = text.dropFirst(scheme.count).prefix { $0 != "/" }
        guard !authority.isEmpty, !authority.contains("@"), !text.contains("?"), !text.contains("#"), !text.contains(where: { $0 == " " || $0.isNewline }) else {
            throw Invalid(message: "\(name) must be an http:// or https:// URL with a host and without user info, query or fragment, got '\(shown)'")
        }
        return text
    }

    /// A collector's base URL with OTLP's traces path.
    static func withTracesPath(_ base: String) -> String {
        (base.hasSuffix("/") ? String(base.dropLast()) : base) + "/v1/traces"
    }

    /// The path of a URL `checkedURL` accepted ("" when it has none).
    static func pathOf(_ url: String) -> Substring {
        let afterScheme = url.drop { $0 != ":" }.dropFirst(3)
        return afterScheme.drop { $0 != "/" }
    }

    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): return true
        default: return Array("!#$%&'*+-.^_`|~".utf8).contains(byte)
        }
    }

    /// `%XX` sequences decoded; nil when one is malformed or the result is not UTF-8.
    static func percentDecoded(_ text: String) -> String? {
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8)[...]
        while let byte = iterator.popFirst() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard iterator.count >= 2, let high = hexValue(iterator.removeFirst()), let low = hexValue(iterator.removeFirst()) else { return nil }
            bytes.append(high << 4 | low)
        }
        return String(validating: bytes, as: UTF8.self)
    }

    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

extension String {
    /// Without leading and trailing spaces and tabs.
    fileprivate var trimmingSpaces: String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}
