import TributaryCLI

/// The stock `tributary` binary: the built-in demo functions and nothing else.
@main
struct TributaryMain {
    static func main() async {
        await TributaryCLI.main(functions: [])
    }
}
