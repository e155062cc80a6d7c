import TributaryCLI
import TributaryTracing

/// The stock `tributary` binary: the built-in demo functions, and OpenTelemetry export of spans when
/// the configuration turns tracing on.
@main
struct TributaryMain {
    static func main() async {
        await TributaryCLI.main(functions: [], tracing: OTelTracing.backend)
    }
}
