import Yams

/// The webhook parts of `tributary.yaml`:
///
/// ```yaml
/// webhook_delivery:                   # webhooks to the app
///   timeout_seconds: 20               # per attempt
///   retry_base_seconds: 5             # first wait after a failure; doubles, ±20% jitter
///   retry_max_seconds: 900
///   give_up_after_hours: 72           # then the delivery is 'failed' (retry it through the API)
///   concurrency: 8                    # receivers served at once; one receiver gets its webhooks in order
/// environments:
///   dev:
///     secret_key: ...
///     webhooks:
///       urls: [https://app.example.com/tributary-webhooks]   # one or two (primary, secondary)
///       signing_key: ${TRIBUTARY_DEV_WEBHOOK_SIGNING_KEY}    # X-Nango-Hmac-Sha256; not the secret key
///       on_sync_completion_always: false                      # also send when a model had no changes
///       on_sync_error: true                                   # send failure webhooks
///       on_auth_creation: true                                # auth webhook when Connect makes a connection
///       on_auth_refresh_error: true                           # auth webhook when a token refresh is refused
/// integrations:
///   my-shop:
///     webhooks:                       # provider webhooks in: POST /webhook/dev/my-shop
///       secret: ${SHOP_WEBHOOK_SECRET}         # required (or `secrets`, or `unsigned: true`)
///       # secrets: { dev: ${DEV_SECRET}, prod: ${PROD_SECRET} }   # one per environment instead
///       scheme: hmac_sha256           # or stripe (Stripe-Signature), slack (X-Slack-Signature)
///       signature_header: X-Shop-Hmac-Sha256   # hmac_sha256 only (default X-Signature-Sha256)
///       tolerance_seconds: 300        # stripe/slack: replay window
///       # unsigned: true              # accept unsigned webhooks, knowingly (serve warns)
///       connection_path: store.id     # or connection_header: X-Shop-Domain
///       connection_match: metadata.store_id    # default connection_id; or connection_config.KEY
///       type_path: event              # or type_header: X-Shop-Topic
///     syncs:
///       orders:
///         webhook_subscriptions: [order.updated, order.deleted]   # or ['*']
///         webhook:                    # optional declarative handler (else the function's onWebhook)
///           records_path: order
///           id_field: id
///           delete_types: [order.deleted]
/// ```
extension ConfigLoader.Parser {
    /// A number of seconds (or other unit) in `range`.
    mutating func number(_ node: Node, _ what: String, in range: ClosedRange<Double>, unit: String = "seconds") -> Double? {
        guard let text = string(node, what) else { return nil }
        guard let value = Double(text), range.contains(value) else {
            issue(node, "\(what) must be a number of \(unit) from \(Self.format(range.lowerBound)) to \(Self.format(range.upperBound)), not '\(text)'")
            return nil
        }
        return value
    }

    static func format(_ value: Double) -> String {
        value == value.rounded() ? String(Int64(value)) : String(value)
    }

    mutating func parseWebhookDelivery(_ node: Node) -> WebhookDeliveryConfig? {
        let allowed = ["timeout_seconds", "retry_base_seconds", "retry_max_seconds", "give_up_after_hours", "concurrency", "poll_seconds"]
        guard let entries = mapping(node, "'webhook_delivery'", allowed: allowed) else { return nil }
        var config = WebhookDeliveryConfig()
        for entry in entries {
            let what = "webhook_delivery.\(entry.key)"
            switch entry.key {
            case "timeout_seconds": if let value = number(entry.value, what, in: 0.1...600) { config.timeoutSeconds = value }
            case "retry_base_seconds": if let value = number(entry.value, what, in: 0.01...86_400) { config.retryBaseSeconds = value }
            case "retry_max_seconds": if let value = number(entry.value, what, in: 0.01...86_400) { config.retryMaxSeconds = value }
            case "give_up_after_hours":
                if let value = number(entry.value, what, in: 0.001...8760, unit: "hours") { config.giveUpAfterSeconds = value * 3600 }
            case "concurrency": if let value = integer(entry.value, what, in: 1...1000) { config.concurrency = value }
            case "poll_seconds": if let value = number(entry.value, what, in: 0.01...60) { config.pollSeconds = value }
            default: break
            }
        }
        if config.retryMaxSeconds < config.retryBaseSeconds {
            issue(node, "webhook_delivery.retry_max_seconds (\(Self.format(config.retryMaxSeconds))) is below retry_base_seconds (\(Self.format(config.retryBaseSeconds)))")
        }
        return config
    }

    mutating func parseEnvironmentWebhooks(_ node: Node, _ owner: String) -> EnvironmentWebhooks? {
        let what = "\(owner).webhooks"
        guard let entries = mapping(node, what, allowed: ["urls", "signing_key", "sign_with_secret_key", "on_sync_completion_always", "on_sync_error", "on_auth_creation", "on_auth_refresh_error"]) else { return nil }
        var webhooks = EnvironmentWebhooks()
        var valid = true
        for entry in entries {
            switch entry.key {
            case "urls":
                let urls = stringList(entry.value, "\(what).urls") ?? []
                for url in urls where !EnvironmentWebhooks.isValidURL(url) {
                    issue(entry.value, "\(what).urls: '\(url)' is not an http:// or https:// URL")
                    valid = false
                }
                webhooks.urls = urls
            case "signing_key":
                if let key = nonEmptyString(entry.value, "\(what).signing_key") {
                    if key.count < 16 {
                        issue(entry.value, "\(what).signing_key is shorter than 16 characters; use a long random value (e.g. `openssl rand -hex 32`)")
                        valid = false
                    }
                    webhooks.signingKey = Secret(key)
                }
            case "sign_with_secret_key":
                webhooks.signsWithSecretKey = bool(entry.value, "\(what).sign_with_secret_key") ?? false
                if webhooks.signsWithSecretKey, entries.contains(where: { $0.key == "signing_key" }) {
                    issue(entry.value, "\(what): give either 'signing_key' or 'sign_with_secret_key: true', not both")
                    valid = false
                }
            case "on_sync_completion_always":
                webhooks.sendOnZeroChanges = bool(entry.value, "\(what).on_sync_completion_always") ?? false
            case "on_sync_error":
                webhooks.sendOnFailure = bool(entry.value, "\(what).on_sync_error") ?? true
            case "on_auth_creation":
                webhooks.sendOnAuthCreation = bool(entry.value, "\(what).on_auth_creation") ?? true
            case "on_auth_refresh_error":
                webhooks.sendOnAuthRefreshError = bool(entry.value, "\(what).on_auth_refresh_error") ?? true
            default: break
            }
        }
        if !webhooks.urls.isEmpty, webhooks.signingKey == nil, !webhooks.signsWithSecretKey, !entries.contains(where: { $0.key == "signing_key" }) {
            issue(node, "\(what) needs a 'signing_key' to sign the webhooks it sends (separate from the secret key; or 'sign_with_secret_key: true' for apps that verify with the secret key)")
            valid = false
        }
        return valid ? webhooks : nil
    }

    mutating func parseProviderWebhooks(_ node: Node, _ owner: String) -> ProviderWebhookConfig? {
        let what = "\(owner).webhooks"
        let allowed = [
            "secret", "secrets", "unsigned", "scheme", "signature_header", "tolerance_seconds", "connection_path", "connection_header",
            "connection_match", "type_path", "type_header",
        ]
        guard let entries = mapping(node, what, allowed: allowed) else { return nil }
        var values: [String: (String, Node)] = [:]
        var environmentSecrets: [String: Secret] = [:]
        var secretsNode: Node? = nil
        var scalarCount = 0
        for entry in entries {
            if entry.key == "secrets" {
                secretsNode = entry.value
                guard let perEnvironment = mapping(entry.value, "\(what).secrets", allowed: []) else { return nil }
                for secret in perEnvironment {
                    guard let value = nonEmptyString(secret.value, "\(what).secrets.\(secret.key)") else { return nil }
                    if value.count < 8 {
                        issue(secret.value, "\(what).secrets.\(secret.key) is shorter than 8 characters")
                        return nil
                    }
                    environmentSecrets[secret.key] = Secret(value)
                }
                continue
            }
            scalarCount += 1
            if let value = nonEmptyString(entry.value, "\(what).\(entry.key)") { values[entry.key] = (value, entry.value) }
        }
        guard values.count == scalarCount else { return nil }
        func source(_ pathKey: String, _ headerKey: String) -> (ProviderWebhookConfig.Source?, conflict: Bool) {
            switch (values[pathKey]?.0, values[headerKey]?.0) {
            case (let path?, nil): (.bodyPath(path), false)
            case (nil, let header?): (.header(header), false)
            case (nil, nil): (nil, false)
            default: (nil, true)
            }
        }
        let (connection, connectionConflict) = source("connection_path", "connection_header")
        let (type, typeConflict) = source("type_path", "type_header")
        var valid = true
        if connectionConflict {
            issue(node, "\(what): give 'connection_path' or 'connection_header', not both")
            valid = false
        } else if connection == nil {
            issue(node, "\(what) needs 'connection_path' (a dot path into the body) or 'connection_header': where a webhook names its connection")
            valid = false
        }
        if typeConflict {
            issue(node, "\(what): give 'type_path' or 'type_header', not both")
            valid = false
        }
        var match = ProviderWebhookConfig.Match.connectionId
        if let (text, matchNode) = values["connection_match"] {
            if text == "connection_id" {
                match = .connectionId
            } else if text.hasPrefix("metadata."), text.count > "metadata.".count {
                match = .metadata(String(text.dropFirst("metadata.".count)))
            } else if text.hasPrefix("connection_config."), text.count > "connection_config.".count {
                match = .connectionConfig(String(text.dropFirst("connection_config.".count)))
            } else {
                issue(matchNode, "\(what).connection_match must be connection_id, metadata.KEY or connection_config.KEY, not '\(text)'")
                valid = false
            }
        }
        if let (secret, secretNode) = values["secret"], secret.count < 8 {
            issue(secretNode, "\(what).secret is shorter than 8 characters")
            valid = false
        }
        var unsigned = false
        if let (_, unsignedNode) = values["unsigned"] {
            if let flag = bool(unsignedNode, "\(what).unsigned") { unsigned = flag } else { valid = false }
        }
        let hasSecret = values["secret"] != nil || !environmentSecrets.isEmpty
        if unsigned && hasSecret {
            issue(values["unsigned"]?.1 ?? node, "\(what): 'unsigned: true' and a secret contradict each other; keep one")
            valid = false
        } else if !unsigned && !hasSecret && valid {
            issue(
                node,
                "\(what) needs 'secret' (or per-environment 'secrets') to verify the provider's signatures, or 'unsigned: true' to accept unsigned webhooks knowingly (anyone who can reach the endpoint could then feed records to its syncs)"
            )
            valid = false
        }
        var scheme = ProviderWebhookConfig.Scheme.hmacSHA256
        if let (text, schemeNode) = values["scheme"] {
            if let known = ProviderWebhookConfig.Scheme(rawValue: text) {
                scheme = known
            } else {
                issue(schemeNode, "\(what).scheme must be one of \(ProviderWebhookConfig.Scheme.allCases.map(\.rawValue).joined(separator: ", ")), not '\(text)'")
                valid = false
            }
        }
        if let (_, headerNode) = values["signature_header"], scheme != .hmacSHA256 {
            issue(headerNode, "\(what).signature_header applies to scheme hmac_sha256 only (\(scheme.rawValue) has its own headers)")
            valid = false
        }
        var tolerance: Int64 = 300
        if let (_, toleranceNode) = values["tolerance_seconds"] {
            if let seconds = number(toleranceNode, "\(what).tolerance_seconds", in: 1...86_400) { tolerance = Int64(seconds.rounded()) } else { valid = false }
        }
        if secretsNode != nil, let secretNode = values["secret"]?.1 {
            issue(secretNode, "\(what): give 'secret' (every environment) or 'secrets' (per environment), not both")
            valid = false
        }
        guard valid, let connection else { return nil }
        var config = ProviderWebhookConfig(
            secret: values["secret"].map { Secret($0.0) }, environmentSecrets: environmentSecrets, unsigned: unsigned, scheme: scheme,
            toleranceSeconds: tolerance, connection: connection, match: match, type: type)
        if let header = values["signature_header"]?.0 { config.signatureHeader = header }
        return config
    }

    mutating func parseWebhookHandler(_ node: Node, _ what: String, models: [String]?, declarative: DeclarativeSpec?) -> DeclarativeWebhookHandler? {
        let allowed = ["model", "records_path", "id_field", "delete_types", "deleted_field"]
        guard let entries = mapping(node, what, allowed: allowed) else { return nil }
        var model: String? = nil
        var handler = DeclarativeWebhookHandler(model: "", idField: declarative?.idField ?? "id")
        var valid = true
        for entry in entries {
            switch entry.key {
            case "model":
                model = nonEmptyString(entry.value, "\(what).model")
                if let model, let models, !models.contains(model) {
                    issue(entry.value, "\(what).model '\(model)' is not one of the sync's models (\(models.joined(separator: ", ")))")
                    valid = false
                }
            case "records_path": handler.recordsPath = nonEmptyString(entry.value, "\(what).records_path")
            case "id_field": if let field = nonEmptyString(entry.value, "\(what).id_field") { handler.idField = field }
            case "delete_types": handler.deleteTypes = stringList(entry.value, "\(what).delete_types") ?? []
            case "deleted_field": handler.deletedField = nonEmptyString(entry.value, "\(what).deleted_field")
            default: break
            }
        }
        if model == nil {
            if let models, models.count == 1 {
                model = models[0]
            } else if let models, models.count > 1 {
                issue(node, "\(what) needs a 'model': the sync writes several (\(models.joined(separator: ", ")))")
                valid = false
            }
        }
        guard valid, let model else { return nil }
        handler.model = model
        return handler
    }
}
