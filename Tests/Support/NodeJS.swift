import Foundation

/// Node.js for tests that check what JavaScript (and so Nango's SDK) does with what Tributary sends:
/// `TRIBUTARY_TEST_NODE` (CI sets it, so those tests fail rather than skip when Node is missing), else
/// `node` on `PATH`.
public enum NodeJS {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// The executable, if there is one.
    public static let executable: String? = {
        if let named = ProcessInfo.processInfo.environment["TRIBUTARY_TEST_NODE"], !named.isEmpty { return named }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/node" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }()

    /// Runs `script` with `input` on standard input; its standard output.
    /// - Throws: when Node is missing or the script exits with a failure.
    public static func run(_ script: String, input: String) throws -> String {
        guard let executable else { throw Failure(description: "Node.js is not installed (set TRIBUTARY_TEST_NODE or put node on PATH).") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["-e", script]
        let stdin = Pipe()
        let stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        try process.run()
        // Written from another thread: both pipes have bounded buffers.
        let data = Data(input.utf8)
        let writer = Thread {
            stdin.fileHandleForWriting.write(data)
            try? stdin.fileHandleForWriting.close()
        }
        writer.start()
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw Failure(description: "node exited with status \(process.terminationStatus)") }
        return String(decoding: output, as: UTF8.self)
    }

    /// Nango's SDK `verifyWebhookSignature`, done in Node the way the SDK does it: hex SHA-256 of the
    /// key followed by `JSON.stringify` of the parsed body, compared with `X-Nango-Signature`.
    public static func verifiesLegacySignature(_ signature: String, body: [UInt8], key: String) throws -> Bool {
        let script = """
            const crypto = require('crypto');
            const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
            const expected = crypto.createHash('sha256').update(input.key + JSON.stringify(JSON.parse(input.body))).digest('hex');
            process.stdout.write(expected === input.signature ? 'valid' : 'invalid');
            """
        let input: [String: String] = ["key": key, "body": String(decoding: body, as: UTF8.self), "signature": signature]
        let json = String(decoding: try JSONSerialization.data(withJSONObject: input), as: UTF8.self)
        return try run(script, input: json) == "valid"
    }
}

/// SplitMix64: reproducible random input for tests.
public struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
