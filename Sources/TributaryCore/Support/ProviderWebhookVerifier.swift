import Foundation

/// Checks a provider webhook's signature against an integration's settings (``ProviderWebhookConfig``):
/// a pure rule, given the request's headers, raw body and the time.
public enum ProviderWebhookVerifier {
    /// Why a webhook was refused: an API error code and a message that names the header, never a secret.
    public struct Refusal: Error, Sendable, Hashable {
        public var code: String
        public var message: String
    }

    /// - Parameters:
    ///   - header: the request's header of that name (case-insensitive), if any.
    ///   - now: Unix time in seconds.
    /// - Throws: ``Refusal`` when the signature is missing, malformed, wrong, or outside the replay window.
    public static func verify(
        _ settings: ProviderWebhookConfig, environment: String, header: (String) -> String?, body: [UInt8], now: Int64
    ) throws(Refusal) {
        if settings.unsigned { return }
        guard let secret = settings.secret(for: environment)?.value else {
            throw Refusal(code: "webhooks_not_configured", message: "No webhook secret is configured for environment '\(environment)'.")
        }
        switch settings.scheme {
        case .hmacSHA256:
            guard let signature = header(settings.signatureHeader) else {
                throw Refusal(code: "missing_signature", message: "The \(settings.signatureHeader) header with the body's HMAC-SHA256 is required.")
            }
            guard WebhookSignature.verify(signature, body: body, secret: secret) else {
                throw Refusal(code: "invalid_signature", message: "The \(settings.signatureHeader) signature does not match the body.")
            }
        case .stripe:
            guard let value = header("Stripe-Signature") else {
                throw Refusal(code: "missing_signature", message: "The Stripe-Signature header is required.")
            }
            var timestamp: Int64?
            var candidates: [String] = []
            for part in value.split(separator: ",") {
                let pair = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                guard pair.count == 2 else { continue }
                if pair[0] == "t" { timestamp = Int64(pair[1]) } else if pair[0] == "v1" { candidates.append(pair[1]) }
            }
            guard let timestamp, !candidates.isEmpty else {
                throw Refusal(code: "invalid_signature", message: "The Stripe-Signature header needs t=<timestamp> and v1=<signature>.")
            }
            try checkWindow(timestamp, now: now, tolerance: settings.toleranceSeconds, header: "Stripe-Signature")
            let signed = Array("\(timestamp).".utf8) + body
            guard candidates.contains(where: { WebhookSignature.verify($0, body: signed, secret: secret) }) else {
                throw Refusal(code: "invalid_signature", message: "The Stripe-Signature signature does not match the body.")
            }
        case .slack:
            guard let signature = header("X-Slack-Signature"), let stamp = header("X-Slack-Request-Timestamp") else {
                throw Refusal(code: "missing_signature", message: "The X-Slack-Signature and X-Slack-Request-Timestamp headers are required.")
            }
            guard let timestamp = Int64(stamp.trimmingCharacters(in: .whitespaces)), signature.hasPrefix("v0=") else {
                throw Refusal(code: "invalid_signature", message: "X-Slack-Request-Timestamp must be a Unix time and X-Slack-Signature start with v0=.")
            }
            try checkWindow(timestamp, now: now, tolerance: settings.toleranceSeconds, header: "X-Slack-Request-Timestamp")
            let signed = Array("v0:\(timestamp):".utf8) + body
            guard WebhookSignature.verify(String(signature.dropFirst(3)), body: signed, secret: secret) else {
                throw Refusal(code: "invalid_signature", message: "The X-Slack-Signature signature does not match the body.")
            }
        }
    }

    /// A replayed (or badly clocked) webhook is refused.
    private static func checkWindow(_ timestamp: Int64, now: Int64, tolerance: Int64, header: String) throws(Refusal) {
        let (difference, overflow) = now.subtractingReportingOverflow(timestamp)
        guard !overflow, difference.magnitude <= UInt64(max(0, tolerance)) else {
            throw Refusal(
                code: "invalid_signature", message: "The \(header) timestamp is more than \(tolerance) seconds from this server's clock (a replay, or a clock that is off).")
        }
    }
}
