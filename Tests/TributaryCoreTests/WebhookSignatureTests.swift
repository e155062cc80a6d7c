import PropertyBased
import Testing
import TributaryCore

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

@Suite("Webhook signatures")
struct WebhookSignatureTests {
    /// RFC 4231, test case 2.
    let key = "Jefe"
    let body = Array("what do ya want for nothing?".utf8)
    let expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"

    /// Nango's older `X-Nango-Signature`: hex SHA-256 of the key followed by the body (a known answer,
    /// computed independently: `hashlib.sha256(b'k' + b'{"a":1}').hexdigest()`).
    @Test func signsNangosOlderSignature() {
        #expect(WebhookSignature.legacySign(Array(#"{"a":1}"#.utf8), key: "k") == "4b0dc82e07edcdc53d791124dab7f9d4515ae1cc96a2098ec15b3e444b3b19df")
    }

    @Test func signsWithHexHMACSHA256() {
        #expect(WebhookSignature.sign(body, key: key) == expected)
        #expect(WebhookSignature.sign(body, key: "jefe") != expected)
    }

    @Test func verifiesTheFormsProvidersSend() {
        #expect(WebhookSignature.verify(expected, body: body, secret: key))
        #expect(WebhookSignature.verify(expected.uppercased(), body: body, secret: key))
        #expect(WebhookSignature.verify("sha256=\(expected)", body: body, secret: key))
        let base64 = Data(stride(from: 0, to: expected.count, by: 2).map { offset -> UInt8 in
            let start = expected.index(expected.startIndex, offsetBy: offset)
            return UInt8(expected[start..<expected.index(start, offsetBy: 2)], radix: 16)!
        }).base64EncodedString()
        #expect(WebhookSignature.verify(base64, body: body, secret: key))
    }

    @Test func rejectsAnyChange() {
        #expect(!WebhookSignature.verify(expected, body: body + [0x20], secret: key))
        #expect(!WebhookSignature.verify(expected, body: body, secret: "Jeff"))
        #expect(!WebhookSignature.verify(String(expected.dropLast()), body: body, secret: key))
        #expect(!WebhookSignature.verify("", body: body, secret: key))
        #expect(!WebhookSignature.verify("not a signature", body: body, secret: key))
    }

    @Test func receiverURLsAreCheckedAndRedacted() {
        #expect(EnvironmentWebhooks.isValidURL("https://app.example.com/hooks?x=1"))
        #expect(EnvironmentWebhooks.isValidURL("http://127.0.0.1:8080"))
        #expect(!EnvironmentWebhooks.isValidURL("ftp://app.example.com"))
        #expect(!EnvironmentWebhooks.isValidURL("https:///path"))
        #expect(!EnvironmentWebhooks.isValidURL("app.example.com/hooks"))
        #expect(EnvironmentWebhooks.redacted("https://user:pa55@app.example.com/h?a=b@c") == "https://***@app.example.com/h?a=b@c")
        #expect(EnvironmentWebhooks.redacted("https://app.example.com/h?a=b@c") == "https://app.example.com/h?a=b@c")
        let settings = EnvironmentWebhooks(urls: ["https://env.example.com/h"], signingKey: Secret("k"))
        #expect(settings.urls(for: [:]) == ["https://env.example.com/h"])
        #expect(settings.urls(for: ["webhook_url": "https://mine.example.com/h"]) == ["https://mine.example.com/h"])
    }
}

/// Provider webhook verification per scheme, secret per environment, and the replay window.
@Suite("Provider webhook verification")
struct ProviderWebhookVerifierTests {
    let body = Array(#"{"event":"order.updated","store":"c1"}"#.utf8)
    let now: Int64 = 1_800_000_000

    func check(_ settings: ProviderWebhookConfig, environment: String = "dev", _ headers: [String: String]) -> String? {
        do {
            try ProviderWebhookVerifier.verify(
                settings, environment: environment, header: { name in headers.first { $0.key.lowercased() == name.lowercased() }?.value }, body: body,
                now: now)
            return nil
        } catch {
            return error.code
        }
    }

    @Test func hmacOfTheBodyWithTheEnvironmentsSecret() {
        let settings = ProviderWebhookConfig(
            environmentSecrets: ["dev": Secret("dev-secret-1"), "prod": Secret("prod-secret-1")], signatureHeader: "X-Sig", connection: .bodyPath("store"))
        let devSignature = WebhookSignature.sign(body, key: "dev-secret-1")
        #expect(check(settings, ["X-Sig": devSignature]) == nil)
        #expect(check(settings, ["x-sig": "sha256=" + devSignature]) == nil, "header case and prefix do not matter")
        #expect(check(settings, environment: "prod", ["X-Sig": devSignature]) == "invalid_signature", "one environment's secret does not open another")
        #expect(check(settings, environment: "staging", ["X-Sig": devSignature]) == "webhooks_not_configured")
        #expect(check(settings, [:]) == "missing_signature")
        #expect(check(ProviderWebhookConfig(unsigned: true, connection: .bodyPath("store")), [:]) == nil)
    }

    @Test func stripeSignsTheTimestampAndBodyWithinTheWindow() {
        let settings = ProviderWebhookConfig(secret: Secret("whsec_test_1"), scheme: .stripe, toleranceSeconds: 300, connection: .bodyPath("store"))
        func header(at t: Int64, key: String = "whsec_test_1") -> String {
            "t=\(t),v1=\(WebhookSignature.sign(Array("\(t).".utf8) + body, key: key)),v0=deadbeef"
        }
        #expect(check(settings, ["Stripe-Signature": header(at: now - 10)]) == nil)
        #expect(check(settings, ["Stripe-Signature": "t=\(now),v1=00ff,v1=" + WebhookSignature.sign(Array("\(now).".utf8) + body, key: "whsec_test_1")]) == nil, "any v1 may match (secret rotation)")
        #expect(check(settings, ["Stripe-Signature": header(at: now - 301)]) == "invalid_signature", "a replay after the window")
        #expect(check(settings, ["Stripe-Signature": header(at: now + 400)]) == "invalid_signature")
        #expect(check(settings, ["Stripe-Signature": header(at: now, key: "other")]) == "invalid_signature")
        #expect(check(settings, ["Stripe-Signature": "t=\(Int64.min),v1=00"]) == "invalid_signature", "no overflow on a hostile timestamp")
        #expect(check(settings, ["Stripe-Signature": "v1=00"]) == "invalid_signature")
        #expect(check(settings, [:]) == "missing_signature")
    }

    @Test func slackSignsAVersionedBaseStringWithinTheWindow() {
        let settings = ProviderWebhookConfig(secret: Secret("slack-signing-1"), scheme: .slack, connection: .bodyPath("store"))
        func headers(at t: Int64) -> [String: String] {
            ["X-Slack-Request-Timestamp": "\(t)", "X-Slack-Signature": "v0=" + WebhookSignature.sign(Array("v0:\(t):".utf8) + body, key: "slack-signing-1")]
        }
        #expect(check(settings, headers(at: now)) == nil)
        #expect(check(settings, headers(at: now - 600)) == "invalid_signature")
        var wrongStamp = headers(at: now)
        wrongStamp["X-Slack-Request-Timestamp"] = "\(now - 1)"
        #expect(check(settings, wrongStamp) == "invalid_signature", "the timestamp is signed")
        #expect(check(settings, ["X-Slack-Signature": "v0=00"]) == "missing_signature")
    }

    /// Whatever a sender puts in the signature headers and the body, every scheme answers accept or a
    /// refusal code — no trap, no other outcome — and a forged signature is never accepted.
    @Test func anyHeadersAndBodyAreRefusedClearly() async {
        let pieces = ["t=", "v1=", "v0=", "sha256=", ",", "=", ":", "-", "0", "9223372036854775807", "-9223372036854775808", "99999999999999999999",
                      "1e400", "ff", "00", "zz", " ", "é", "\u{0}", String(repeating: "a", count: 64), "\(now)"]
        let text = Gen<String?>.element(of: pieces).map { $0 ?? "" }.array(of: 0...6).map { $0.joined() }
        let bytes = Gen<Int>.int(in: 0...255).array(of: 0...64).map { $0.map { UInt8($0) } }
        let schemes: [ProviderWebhookConfig] = [
            ProviderWebhookConfig(secret: Secret("s-1"), signatureHeader: "X-Sig", connection: .bodyPath("store")),
            ProviderWebhookConfig(secret: Secret("s-1"), scheme: .stripe, toleranceSeconds: 300, connection: .bodyPath("store")),
            ProviderWebhookConfig(secret: Secret("s-1"), scheme: .slack, connection: .bodyPath("store")),
        ]
        await propertyCheck(count: 400, input: text, text, bytes, Gen<Int>.int(in: 0..<3)) { signature, timestamp, body, scheme in
            let headers = [
                "X-Sig": signature, "Stripe-Signature": signature.isEmpty ? "t=\(timestamp),v1=" : signature,
                "X-Slack-Signature": signature, "X-Slack-Request-Timestamp": timestamp,
            ]
            do {
                try ProviderWebhookVerifier.verify(
                    schemes[scheme], environment: "dev", header: { name in headers.first { $0.key.lowercased() == name.lowercased() }?.value }, body: body,
                    now: now)
                Issue.record("a forged signature was accepted: \(headers) \(body)")
            } catch let refusal as ProviderWebhookVerifier.Refusal {
                #expect(["missing_signature", "invalid_signature"].contains(refusal.code), "\(refusal.code): \(refusal.message)")
                #expect(!refusal.message.contains("s-1"), "the secret in a refusal")
            }
        }
    }

    /// Real signatures that must still be refused: for another body, another secret, or a timestamp
    /// outside the replay window — at random offsets and bodies.
    @Test func aValidSignatureForAnythingElseIsRefused() async {
        let stripe = ProviderWebhookConfig(secret: Secret("s-1"), scheme: .stripe, toleranceSeconds: 300, connection: .bodyPath("store"))
        let slack = ProviderWebhookConfig(secret: Secret("s-1"), scheme: .slack, toleranceSeconds: 300, connection: .bodyPath("store"))
        let hmac = ProviderWebhookConfig(secret: Secret("s-1"), signatureHeader: "X-Sig", connection: .bodyPath("store"))
        let bytes = Gen<Int>.int(in: 0...255).array(of: 1...48).map { $0.map { UInt8($0) } }
        await propertyCheck(count: 300, input: bytes, Gen<Int>.int(in: -100_000...100_000), Gen<Int>.int(in: 0...2)) { signed, offset, wrong in
            // wrong 0: the signature is for another body; 1: with another secret; 2: the time is off by `offset` (refused beyond 300 s).
            let sent = wrong == 0 ? signed + [0x20] : signed
            let key = wrong == 1 ? "s-2" : "s-1"
            let t = now + Int64(wrong == 2 ? offset : 0)
            let accepted = { (settings: ProviderWebhookConfig, headers: [String: String]) -> Bool in
                (try? ProviderWebhookVerifier.verify(
                    settings, environment: "dev", header: { name in headers.first { $0.key.lowercased() == name.lowercased() }?.value }, body: sent,
                    now: now)) != nil
            }
            let fresh = wrong == 2 && abs(offset) <= 300
            #expect(accepted(stripe, ["Stripe-Signature": "t=\(t),v1=\(WebhookSignature.sign(Array("\(t).".utf8) + signed, key: key))"]) == fresh)
            #expect(accepted(slack, ["X-Slack-Request-Timestamp": "\(t)", "X-Slack-Signature": "v0=" + WebhookSignature.sign(Array("v0:\(t):".utf8) + signed, key: key)]) == fresh)
            if wrong != 2 { #expect(!accepted(hmac, ["X-Sig": WebhookSignature.sign(signed, key: key)])) }
        }
    }
}
