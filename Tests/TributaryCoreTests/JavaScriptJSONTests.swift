import Foundation
import Testing
import TributaryCore
import TributaryTestSupport

/// Webhook bodies must survive `JSON.stringify(JSON.parse(body))` unchanged, or Nango's SDK fails to
/// verify `X-Nango-Signature` (it hashes the re-stringified body, not the bytes it got).
@Suite("JavaScript's JSON form")
struct JavaScriptJSONTests {
    func text(_ literal: String) throws -> String {
        String(decoding: JavaScriptJSON.bytes(try JSONParser.parse(literal)), as: UTF8.self)
    }

    /// Known answers: what `JSON.stringify(JSON.parse(x))` prints in Node 20.
    @Test func numbersAreWrittenAsECMAScriptWritesThem() throws {
        let cases: [(String, String)] = [
            ("0", "0"), ("-0", "0"), ("1.0", "1"), ("1E5", "100000"), ("1e21", "1e+21"), ("1e20", "100000000000000000000"),
            ("123456789012345678901", "123456789012345680000"), ("0.000001", "0.000001"), ("0.0000001", "1e-7"),
            ("1.5e-7", "1.5e-7"), ("-2.5E+300", "-2.5e+300"), ("0.1", "0.1"), ("100.25", "100.25"), ("9007199254740993", "9007199254740992"),
            ("-9007199254740991", "-9007199254740991"), ("1e400", "null"), ("-1e400", "null"), ("5e-324", "5e-324"), ("1e-400", "0"),
            ("1.7976931348623157e308", "1.7976931348623157e+308"), ("123.456e2", "12345.6"),
        ]
        for (input, expected) in cases {
            #expect(try text(input) == expected, "\(input)")
        }
    }

    @Test func arrayIndexKeysComeFirstInNumericOrder() throws {
        #expect(try text(#"{"b":1,"10":2,"a":3,"2":4,"01":5,"4294967295":6,"4294967294":7,"-1":8,"0":9}"#)
            == #"{"0":9,"2":4,"10":2,"4294967294":7,"-1":8,"01":5,"4294967295":6,"a":3,"b":1}"#)
        #expect(try text(#"{"x":{"1":[1.0,{"z":true,"y":null}]}}"#) == #"{"x":{"1":[1,{"y":null,"z":true}]}}"#)
    }

    @Test func stringsAreEscapedAsJavaScriptEscapesThem() throws {
        #expect(try text(#"["\u0001\b\t\n\f\r\"\\/\u007f é \u2028 😀"]"#) == "[\"\\u0001\\b\\t\\n\\f\\r\\\"\\\\/\u{7f} é \u{2028} 😀\"]")
    }

    /// Random values of every awkward kind, written by ``JavaScriptJSON`` and re-stringified by a
    /// real Node.js: every line must come back byte for byte, and `X-Nango-Signature` computed there
    /// the way the SDK computes it must equal ours.
    @Test(.enabled(if: NodeJS.executable != nil, "needs Node.js (TRIBUTARY_TEST_NODE, or node on PATH)"))
    func nodeReStringifiesEveryBodyToTheSameBytes() throws {
        var random = SeededGenerator(seed: 0x5EED_2026_1204)
        var lines: [String] = []
        for _ in 0..<3000 { lines.append(String(decoding: JavaScriptJSON.bytes(.object(Self.object(&random, depth: 0))), as: UTF8.self)) }
        let script = """
            const crypto = require('crypto');
            const lines = require('fs').readFileSync(0, 'utf8').split('\\n').filter((l) => l.length > 0);
            for (const line of lines) {
              const again = JSON.stringify(JSON.parse(line));
              const signature = crypto.createHash('sha256').update('k-1' + again).digest('hex');
              process.stdout.write((again === line ? 'ok ' : 'changed ' + again + ' ') + signature + '\\n');
            }
            """
        let output = try NodeJS.run(script, input: lines.joined(separator: "\n") + "\n")
        let answers = output.split(separator: "\n")
        #expect(answers.count == lines.count)
        for (line, answer) in zip(lines, answers) {
            #expect(answer == "ok " + WebhookSignature.legacySign(Array(line.utf8), key: "k-1"), "\(line) → \(answer)")
        }
    }

    static let keys = ["0", "1", "2", "10", "01", "-1", "1.5", "4294967294", "4294967295", "a", "B", "é", "\u{1}", " ", "next", "😀", "__proto__x"]
    static let numbers = [
        "0", "-0", "1", "-1", "1.0", "1E5", "1e21", "1e-7", "0.1", "0.30000000000000004", "9007199254740993", "-9223372036854775808",
        "18446744073709551616", "1e400", "1e-400", "123.456e-10", "2.5E+300",
    ]
    static let characters: [Character] = Array("aZ09 \"\\/\u{0}\u{1f}\u{7f}\n\té€😀\u{2028}\u{2029}{}[],:")

    static func value(_ random: inout SeededGenerator, depth: Int) -> JSONValue {
        switch Int.random(in: 0..<(depth < 3 ? 8 : 6), using: &random) {
        case 0: return .null
        case 1: return .bool(Bool.random(using: &random))
        case 2: return (try? JSONParser.parse(numbers.randomElement(using: &random)!)) ?? .null
        case 3:
            // Any double, by its bits.
            let double = Double(bitPattern: UInt64.random(in: 0...UInt64.max, using: &random))
            return .number(JSONNumber(double.isFinite ? double : 0.5))
        case 4: return .number(JSONNumber(Int64.random(in: Int64.min...Int64.max, using: &random)))
        case 5: return .string(String((0..<Int.random(in: 0...12, using: &random)).map { _ in characters.randomElement(using: &random)! }))
        case 6: return .array((0..<Int.random(in: 0...4, using: &random)).map { _ in value(&random, depth: depth + 1) })
        default: return .object(object(&random, depth: depth + 1))
        }
    }

    static func object(_ random: inout SeededGenerator, depth: Int) -> JSONObject {
        var object = JSONObject()
        for _ in 0..<Int.random(in: 0...6, using: &random) { object[keys.randomElement(using: &random)!] = value(&random, depth: depth) }
        return object
    }
}
