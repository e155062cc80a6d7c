import Testing
import TributaryCore

/// The exporter's settings from `tracing:` and the `OTEL_*` variables: the variables win, every value
/// is checked, and a value that would stop the exporter (or that it cannot honour) is refused by name.
@Suite("Tracing settings")
struct TracingSettingsTests {
    func resolve(_ environment: [String: String]) throws -> TracingSettings {
        try resolve(TracingConfig(enabled: true), environment)
    }

    func resolve(_ config: TracingConfig, _ environment: [String: String]) throws -> TracingSettings {
        try TracingSettings.resolve(config, environment: environment)
    }

    func refusal(_ environment: [String: String], config: TracingConfig = TracingConfig(enabled: true)) -> String {
        do {
            _ = try TracingSettings.resolve(config, environment: environment)
            return ""
        } catch {
            return error.message
        }
    }

    @Test func defaultsAndTheFileAreUsedWhenNoVariableIsSet() throws {
        let plain = try resolve([:])
        #expect(plain.endpoint == "http://localhost:4318/v1/traces")
        #expect(plain.wireProtocol == .httpProtobuf && plain.serviceName == "tributary" && plain.sampleRatio == 1 && plain.headers.isEmpty)
        #expect(plain.scheduleDelayMilliseconds == 5_000 && plain.exportTimeoutMilliseconds == 5_000 && plain.timeoutMilliseconds == 5_000)
        #expect(plain.maxQueueSize == 2_048 && plain.maxExportBatchSize == 512)
        let file = try resolve(
            TracingConfig(enabled: true, endpoint: "https://otel.example.com:4318/v1/traces", wireProtocol: .httpJSON, serviceName: "sync", sampleRatio: 0.5), [:])
        #expect(file.endpoint == "https://otel.example.com:4318/v1/traces" && file.wireProtocol == .httpJSON)
        #expect(file.serviceName == "sync" && file.sampleRatio == 0.5)
        // A collector's address without a path gets the traces path.
        #expect(try resolve(TracingConfig(enabled: true, endpoint: "http://collector:4318"), [:]).endpoint == "http://collector:4318/v1/traces")
        #expect(try resolve(TracingConfig(enabled: true, endpoint: "http://collector:4318/"), [:]).endpoint == "http://collector:4318/v1/traces")
        #expect(try resolve(TracingConfig(enabled: true, endpoint: "http://collector:4318/custom"), [:]).endpoint == "http://collector:4318/custom")
    }

    @Test func theVariablesWinOverTheFile() throws {
        let config = TracingConfig(enabled: true, endpoint: "http://file:4318/v1/traces", wireProtocol: .httpJSON, serviceName: "file", sampleRatio: 0.5)
        let settings = try resolve(
            config,
            [
                "OTEL_SERVICE_NAME": "from-env", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=abc%3D%3D,  tenant = eu ", "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": "0.25", "OTEL_BSP_SCHEDULE_DELAY": "200", "OTEL_BSP_MAX_QUEUE_SIZE": "100",
                "OTEL_EXPORTER_OTLP_CERTIFICATE": "/etc/ca.pem", "OTEL_PROPAGATORS": "tracecontext,baggage,b3",
            ])
        #expect(settings.serviceName == "from-env")
        #expect(settings.endpoint == "http://collector:4318/v1/traces", "the general variable is a base URL")
        #expect(settings.wireProtocol == .httpProtobuf)
        #expect(settings.headers == [.init(name: "x-api-key", value: Secret("abc==")), .init(name: "tenant", value: Secret("eu"))])
        #expect(settings.sampleRatio == 0.25)
        #expect(settings.scheduleDelayMilliseconds == 200)
        #expect(settings.maxQueueSize == 100 && settings.maxExportBatchSize == 100, "a batch is never larger than the queue")
        #expect(settings.certificatePath == "/etc/ca.pem")
        // The traces-specific variables win over the general ones, and are used as they are.
        let specific = try resolve(
            config,
            [
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://general:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:9999/ingest",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "1500",
            ])
        #expect(specific.endpoint == "http://traces:9999/ingest" && specific.wireProtocol == .httpJSON && specific.timeoutMilliseconds == 1_500)
        for (sampler, ratio) in [("always_on", 1.0), ("always_off", 0.0), ("parentbased_always_off", 0.0), ("traceidratio", 1.0)] {
            #expect(try resolve(TracingConfig(enabled: true, sampleRatio: 0.5), ["OTEL_TRACES_SAMPLER": sampler]).sampleRatio == ratio, "\(sampler)")
        }
    }

    /// Values the exporter cannot honour, would stop on, or would spin or grow without bound on: refused
    /// with the variable's name — and never with a header's value.
    @Test func unusableValuesAreRefusedByName() {
        #expect(refusal(["OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"]).contains("OTEL_EXPORTER_OTLP_PROTOCOL=grpc: this build exports over OTLP/HTTP only"))
        #expect(refusal(["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "thrift"]).contains("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL must be http/protobuf or http/json"))
        #expect(refusal(["OTEL_TRACES_SAMPLER": "jaeger_remote"]).contains("OTEL_TRACES_SAMPLER 'jaeger_remote' is not supported"))
        #expect(refusal(["OTEL_TRACES_SAMPLER": "xray"]).contains("is not supported"))
        #expect(refusal(["OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"]).contains("OTEL_TRACES_SAMPLER_ARG must be a number from 0 to 1"))
        #expect(refusal(["OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "nan"]).contains("OTEL_TRACES_SAMPLER_ARG"))
        #expect(refusal(["OTEL_BSP_MAX_QUEUE_SIZE": "99999999999"]).contains("OTEL_BSP_MAX_QUEUE_SIZE must be a whole number from 1 to 65536"))
        #expect(refusal(["OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "0"]).contains("OTEL_BSP_MAX_EXPORT_BATCH_SIZE must be a whole number from 1 to 2048"))
        #expect(refusal(["OTEL_BSP_MAX_QUEUE_SIZE": "10", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "11"]).contains("from 1 to 10"))
        #expect(refusal(["OTEL_BSP_SCHEDULE_DELAY": "0"]).contains("OTEL_BSP_SCHEDULE_DELAY must be a whole number of milliseconds from 10"))
        #expect(refusal(["OTEL_BSP_EXPORT_TIMEOUT": "-5"]).contains("OTEL_BSP_EXPORT_TIMEOUT"))
        #expect(refusal(["OTEL_EXPORTER_OTLP_TIMEOUT": "soon"]).contains("OTEL_EXPORTER_OTLP_TIMEOUT"))
        let endpoint = refusal(["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://user:hunter2@collector:4318/v1/traces"])
        #expect(endpoint.contains("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT must be an http:// or https:// URL") && !endpoint.contains("hunter2"))
        #expect(refusal(["OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"]).contains("OTEL_EXPORTER_OTLP_ENDPOINT must be an http:// or https:// URL"))
        #expect(refusal(["OTEL_EXPORTER_OTLP_ENDPOINT": "http:///v1/traces"]).contains("with a host"))
        let badHeader = refusal(["OTEL_EXPORTER_OTLP_HEADERS": "api-key=s3cr%ZZet"])
        #expect(badHeader.contains("header 'api-key' is not valid percent-encoded text") && !badHeader.contains("s3cr"))
        let noName = refusal(["OTEL_EXPORTER_OTLP_HEADERS": "s3cret-without-a-name"])
        #expect(noName.contains("OTEL_EXPORTER_OTLP_HEADERS must be a comma-separated list") && !noName.contains("s3cret"))
        #expect(refusal(["OTEL_EXPORTER_OTLP_HEADERS": "x-key=line%0Abreak"]).contains("not valid percent-encoded text"), "no control characters in a header")
        #expect(refusal(["OTEL_PROPAGATORS": "baggage,b3multi,xray"]).isEmpty, "propagators are not read: Tributary passes no context on")
    }
}
