/// Where and how an environment's sync webhooks go (`environments.<name>.webhooks`).
///
/// After every run, one webhook per model goes to each URL (a connection's
/// `connection_config.webhook_url` / `webhook_url_secondary` replace them for that connection),
/// signed with ``signingKey`` (`X-Nango-Hmac-Sha256`).
public struct EnvironmentWebhooks: Sendable, Hashable {
    /// Receivers, in order (Nango's primary and secondary URL). Empty: no sync webhooks.
    public var urls: [String]
    /// Signs every body: hex HMAC-SHA256 in `X-Nango-Hmac-Sha256`. Separate from the secret API
    /// key; rotating it (change it, restart) re-signs deliveries still waiting, since signing
    /// happens at each attempt.
    public var signingKey: Secret?
    /// Send a webhook also for models with zero changes (Nango's `on_sync_completion_always`).
    public var sendOnZeroChanges: Bool
    /// Send a webhook when a run fails (Nango's `on_sync_error`).
    public var sendOnFailure: Bool
    /// `sign_with_secret_key: true`: ``signingKey`` is the environment's (first) secret key, for apps
    /// written before Nango had a separate signing key (its SDK verifies with `webhookSigningKey ??
    /// secretKey`). Every receiver then learns the API key's HMAC — `serve` warns at start.
    public var signsWithSecretKey: Bool = false
    /// Send an `auth` webhook when a connection is created or its credentials replaced on the
    /// Connect page (Nango's `on_auth_creation`).
    public var sendOnAuthCreation: Bool = true
    /// Send an `auth` webhook when refreshing a connection's token is refused, so the app can ask
    /// its user to reconnect (Nango's `on_auth_refresh_error`).
    public var sendOnAuthRefreshError: Bool = true

    public init(urls: [String] = [], signingKey: Secret? = nil, sendOnZeroChanges: Bool = false, sendOnFailure: Bool = true) {
        self.urls = urls
        self.signingKey = signingKey
        self.sendOnZeroChanges = sendOnZeroChanges
        self.sendOnFailure = sendOnFailure
    }

    /// The connection-level override keys (Nango's names) in a connection's `connection_config`.
    public static let connectionOverrideKeys = ["webhook_url", "webhook_url_secondary"]

    /// The receivers for one connection: its `connection_config` override when it sets one, else ``urls``.
    public func urls(for connectionConfig: JSONObject) -> [String] {
        let override = Self.connectionOverrideKeys.compactMap { connectionConfig[$0]?.stringValue }.filter { !$0.isEmpty }
        return override.isEmpty ? urls : override
    }

    /// `url` without user information (`https://user:pass@host/…` → `https://***@host/…`), for logs and listings.
    public static func redacted(_ url: String) -> String {
        guard let schemeEnd = url.range(of: "://") else { return url }
        let rest = url[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
        guard let at = rest[..<authorityEnd].lastIndex(of: "@") else { return url }
        return String(url[..<schemeEnd.upperBound]) + "***" + String(rest[at...])
    }

    /// Whether `text` is an absolute `http` or `https` URL with a host — what a receiver URL must be.
    public static func isValidURL(_ text: String) -> Bool {
        let lower = text.lowercased()
        guard let schemeEnd = lower.range(of: "://"), ["http", "https"].contains(String(lower[..<schemeEnd.lowerBound])) else { return false }
        let rest = lower[schemeEnd.upperBound...]
        let host = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        return !host.isEmpty && !text.contains(where: { $0 == " " || $0 == "\n" || $0 == "\r" || $0 == "\t" })
    }
}

/// How webhooks to the app are delivered (the `webhook_delivery` section).
public struct WebhookDeliveryConfig: Sendable, Hashable {
    /// One attempt, from connecting to the receiver's answer, in seconds.
    public var timeoutSeconds: Double
    /// The wait after the first failed attempt; it doubles with each further failure (±20% jitter).
    public var retryBaseSeconds: Double
    /// The longest wait between two attempts.
    public var retryMaxSeconds: Double
    /// A delivery still failing this long after it was queued is given up (status `failed`,
    /// visible with its last error; `POST /webhooks/deliveries/{id}/retry` sends it again).
    public var giveUpAfterSeconds: Double
    /// Receivers served at once (deliveries to one receiver go one after the other, in run order).
    public var concurrency: Int
    /// How often the delivery service looks for due deliveries when nothing wakes it.
    public var pollSeconds: Double

    public init(
        timeoutSeconds: Double = 20, retryBaseSeconds: Double = 5, retryMaxSeconds: Double = 900, giveUpAfterSeconds: Double = 72 * 3600,
        concurrency: Int = 8, pollSeconds: Double = 1
    ) {
        self.timeoutSeconds = timeoutSeconds
        self.retryBaseSeconds = retryBaseSeconds
        self.retryMaxSeconds = retryMaxSeconds
        self.giveUpAfterSeconds = giveUpAfterSeconds
        self.concurrency = max(1, concurrency)
        self.pollSeconds = pollSeconds
    }

    /// The backoff between attempts: the same doubling-with-jitter rule as run retries, with no
    /// attempt limit (``giveUpAfterSeconds`` ends a delivery instead).
    public var backoff: RetryPolicy {
        RetryPolicy(maxAttempts: Int.max, baseSeconds: retryBaseSeconds, maxSeconds: retryMaxSeconds)
    }
}

/// Webhooks a provider sends to `POST /webhook/{environment}/{provider_config_key}`
/// (an integration's `webhooks` section).
public struct ProviderWebhookConfig: Sendable, Hashable {
    /// Where a value is read from the provider's request.
    public enum Source: Sendable, Hashable {
        /// A dot path into the JSON body.
        case bodyPath(String)
        /// A request header.
        case header(String)
    }

    /// Which connection field the value found by ``connection`` is compared with.
    public enum Match: Sendable, Hashable {
        case connectionId
        /// A dot path into the connection's metadata.
        case metadata(String)
        /// A dot path into the connection's `connection_config`.
        case connectionConfig(String)
    }

    /// How a provider signs its webhooks.
    public enum Scheme: String, Sendable, Hashable, CaseIterable {
        /// HMAC-SHA256 of the raw body in ``ProviderWebhookConfig/signatureHeader`` (hex or base64, an
        /// optional `sha256=` prefix): Shopify, GitHub, most providers.
        case hmacSHA256 = "hmac_sha256"
        /// Stripe: `Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">`, within the
        /// replay window.
        case stripe
        /// Slack: `X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:ts:body">` with
        /// `X-Slack-Request-Timestamp: ts`, within the replay window.
        case slack
    }

    /// The secret that verifies every environment's webhooks (nil: see ``environmentSecrets``).
    public var secret: Secret?
    /// Secrets per environment name, each verifying that environment's webhooks only; they take
    /// precedence over ``secret``.
    public var environmentSecrets: [String: Secret]
    /// Webhooks are accepted without a signature: set only by an explicit `unsigned: true`
    /// (anyone who can reach the endpoint can then feed records to the integration's syncs).
    public var unsigned: Bool
    public var scheme: Scheme
    /// The header of the ``Scheme/hmacSHA256`` scheme.
    public var signatureHeader: String
    /// How far a timestamped signature (Stripe, Slack) may be from the server's clock.
    public var toleranceSeconds: Int64
    /// Where the value identifying the connection(s) is.
    public var connection: Source
    public var match: Match
    /// Where the webhook's type is, matched against the syncs' `webhook_subscriptions` (`*` matches every type).
    public var type: Source?

    public init(
        secret: Secret? = nil, environmentSecrets: [String: Secret] = [:], unsigned: Bool = false, scheme: Scheme = .hmacSHA256,
        signatureHeader: String = "X-Signature-Sha256", toleranceSeconds: Int64 = 300, connection: Source, match: Match = .connectionId,
        type: Source? = nil
    ) {
        self.secret = secret
        self.environmentSecrets = environmentSecrets
        self.unsigned = unsigned
        self.scheme = scheme
        self.signatureHeader = signatureHeader
        self.toleranceSeconds = toleranceSeconds
        self.connection = connection
        self.match = match
        self.type = type
    }

    /// The secret that verifies `environment`'s webhooks.
    public func secret(for environment: String) -> Secret? { environmentSecrets[environment] ?? secret }
}

/// A sync's declarative handling of provider webhooks (a sync's `webhook` section): the records in
/// the payload are saved to the **base** variant, or deleted.
public struct DeclarativeWebhookHandler: Sendable, Hashable {
    /// The model the records belong to (the sync's only model unless named).
    public var model: String
    /// Where the record or records are in the payload (dot path; nil: the payload itself). An
    /// object is one record, an array many.
    public var recordsPath: String?
    /// The field that identifies a record (dot path).
    public var idField: String
    /// Webhook types whose records are deleted instead of saved.
    public var deleteTypes: [String]
    /// A record field that, when `true`, marks the record deleted.
    public var deletedField: String?

    public init(model: String, recordsPath: String? = nil, idField: String = "id", deleteTypes: [String] = [], deletedField: String? = nil) {
        self.model = model
        self.recordsPath = recordsPath
        self.idField = idField
        self.deleteTypes = deleteTypes
        self.deletedField = deletedField
    }
}
