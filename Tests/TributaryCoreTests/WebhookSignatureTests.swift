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
