import Testing
import TributaryCore

@Suite("tributary.yaml")
struct ConfigLoaderTests {
    let valid = """
        database:
          path: data/t.sqlite
        environments:
          dev:
            secret_key: ${DEV_KEY}
          prod:
            secret_keys: ["prod-key-0000000001", "prod-key-0000000002"]
        integrations:
          my-shop:
            provider: shopify
            base_url: https://shop.example.com/api
            auth: { type: api_key, header: X-Api-Key }
            syncs:
              sync-orders:
                function: orders
                models: [Order, LineItem]
                frequency: every 5 minutes
                sync_type: full
                track_deletes: true
                auto_start: false
                webhook_subscriptions: [orders/updated]
            webhooks: { connection_path: shop.id, type_header: X-Shop-Topic, unsigned: true }
          crm:
            environments: [prod]
            auth: { type: oauth2, token_url: "https://crm.example.com/token", client_id: crm-client, client_secret: "${CRM_SECRET:-s3cret}" }
            syncs:
              contacts:
                models: [Contact]
                frequency: 1h
                sync_type: incremental
        """

    @Test func parsesAValidFile() throws {
        let config = try ConfigLoader.parse(yaml: valid, file: "t.yaml", environment: ["DEV_KEY": "dev-key-0123456789abcdef"])
        #expect(config.database.path == "data/t.sqlite")
        #expect(config.environments.map(\.name) == ["dev", "prod"])
        #expect(config.environment(named: "dev")?.secretKeys == [Secret("dev-key-0123456789abcdef")])
        #expect(config.environment(named: "prod")?.secretKeys.count == 2)
        let shop = try #require(config.integration("my-shop", in: "dev"))
        #expect(shop.auth == .apiKey(header: "X-Api-Key", queryParameter: nil))
        let sync = try #require(shop.sync(named: "sync-orders"))
        #expect(sync.function == "orders")
        #expect(sync.models == ["Order", "LineItem"])
        #expect(sync.frequency.intervalSeconds == 300)
        #expect(sync.trackDeletes)
        #expect(!sync.autoStart)
        #expect(sync.webhookSubscriptions == ["orders/updated"])
        #expect(config.integration("crm", in: "dev") == nil, "crm is offered in prod only")
        let contacts = try #require(config.integration("crm", in: "prod")?.sync(named: "contacts"))
        #expect(contacts.function == "contacts")
        #expect(contacts.syncType == .incremental)
        #expect(contacts.autoStart)
        #expect("\(Secret("x"))" == "<secret>")
    }

    func issues(_ yaml: String, env: [String: String] = [:]) -> [ConfigIssue] {
        do {
            _ = try ConfigLoader.parse(yaml: yaml, file: "bad.yaml", environment: env)
            return []
        } catch {
            return error.issues
        }
    }

    @Test func unknownKeyIsReportedWithLineAndSuggestion() {
        let found = issues(valid.replacingOccurrences(of: "frequency: every 5 minutes", with: "frequncy: every 5 minutes"), env: ["DEV_KEY": "dev-key-0123456789abcdef"])
        let issue = found.first { $0.message.contains("frequncy") }
        #expect(issue?.line == 17)
        #expect(issue?.column == 9)
        #expect(issue?.message.contains("did you mean 'frequency'") == true)
        #expect(issue?.description.hasPrefix("bad.yaml:17:9: unknown key 'frequncy'") == true)
    }

    @Test func badValuesAreReportedAtTheirLine() {
        let yaml = """
            environments:
              dev:
                secret_key: short
            integrations:
              shop:
                syncs:
                  orders:
                    models: [order]
                    frequency: every 10 seconds
                  items:
                    models: [Item]
                    frequency: every fortnight
                  changes:
                    models: [Change]
                    frequency: 1h
                    sync_type: incremental
                    track_deletes: true
            """
        let found = issues(yaml)
        #expect(found.contains { $0.line == 3 && $0.message.contains("shorter than 16") })
        #expect(found.contains { $0.line == 8 && $0.message.contains("model name 'order' is invalid") })
        #expect(found.contains { $0.line == 9 && $0.message.contains("minimum of 30 seconds") })
        #expect(found.contains { $0.line == 12 && $0.message.contains("not understood") })
        #expect(found.contains { $0.line == 17 && $0.message.contains("track_deletes only works with sync_type full") })
    }

    @Test func cronJitterAndOverlapAreReadAndCheckedWithTheirLine() throws {
        let key = ["DEV_KEY": "dev-key-0123456789abcdef"]
        let cron = valid.replacingOccurrences(
            of: "frequency: every 5 minutes", with: "frequency: cron 0 2 * * * Europe/Paris\n        jitter_seconds: 300\n        overlap: run_after")
        let sync = try #require(try ConfigLoader.parse(yaml: cron, file: "t.yaml", environment: key).integration("my-shop", in: "dev")?.sync(named: "sync-orders"))
        #expect(sync.frequency.compact == "cron 0 2 * * * Europe/Paris")
        #expect(sync.schedule == SchedulePolicy(jitterSeconds: 300, overlap: .runAfter))
        #expect(try ConfigLoader.parse(yaml: valid, file: "t.yaml", environment: key).integration("my-shop", in: "dev")?.sync(named: "sync-orders")?.schedule
            == SchedulePolicy(), "no jitter and skip by default")
        let bad = issues(
            valid.replacingOccurrences(
                of: "frequency: every 5 minutes", with: "frequency: cron 0 2 * * * Europe/Pariss\n        jitter_seconds: 90000\n        overlap: queue"),
            env: key)
        #expect(bad.contains { $0.line == 17 && $0.message.contains("Europe/Pariss") && $0.message.contains("time zone") })
        #expect(bad.contains { $0.line == 18 && $0.message.contains("jitter_seconds must be a whole number from 0 to 86400") })
        #expect(bad.contains { $0.line == 19 && $0.message.contains("overlap must be 'skip' or 'run_after', not 'queue'") })
    }

    @Test func metricsSettingsAreReadAndCheckedWithTheirLine() throws {
        let key = ["DEV_KEY": "dev-key-0123456789abcdef", "METRICS_TOKEN": "scrape-0123456789abcdef"]
        let good = try ConfigLoader.parse(yaml: "metrics:\n  token: ${METRICS_TOKEN}\n  port: 9464\n" + valid, file: "t.yaml", environment: key)
        #expect(good.metrics == MetricsConfig(enabled: true, token: Secret("scrape-0123456789abcdef"), port: 9464))
        #expect(try ConfigLoader.parse(yaml: valid, file: "t.yaml", environment: key).metrics == MetricsConfig(), "on, open, on the API port by default")
        let bad = issues("metrics:\n  token: short\n  port: 70000\n  enabled: maybe\n" + valid, env: key)
        #expect(bad.contains { $0.line == 2 && $0.message.contains("metrics.token is shorter than 16") })
        #expect(bad.contains { $0.line == 3 && $0.message.contains("metrics.port must be a whole number from 1 to 65535") })
        #expect(bad.contains { $0.line == 4 && $0.message.contains("metrics.enabled") })
    }

    @Test func tracingSettingsAreReadAndCheckedWithTheirLine() throws {
        let key = ["DEV_KEY": "dev-key-0123456789abcdef"]
        #expect(try ConfigLoader.parse(yaml: valid, file: "t.yaml", environment: key).tracing == TracingConfig(), "off by default")
        let yaml = "tracing:\n  enabled: true\n  endpoint: http://collector:4318/v1/traces\n  protocol: http/json\n  service_name: sync-eu\n  sample_ratio: 0.25\n"
        let good = try ConfigLoader.parse(yaml: yaml + valid, file: "t.yaml", environment: key)
        #expect(
            good.tracing
                == TracingConfig(enabled: true, endpoint: "http://collector:4318/v1/traces", wireProtocol: .httpJSON, serviceName: "sync-eu", sampleRatio: 0.25))
        let bad = issues(
            "tracing:\n  enabled: sometimes\n  endpoint: http://user:pw@collector:4318/v1/traces?k=1\n  protocol: grpc\n  sample_ratio: 2\n  exporter: zipkin\n"
                + valid, env: key)
        #expect(bad.contains { $0.line == 2 && $0.message.contains("tracing.enabled must be true or false") })
        #expect(bad.contains { $0.line == 3 && $0.message.contains("tracing.endpoint must be an http:// or https:// URL") && !$0.message.contains("pw") })
        #expect(bad.contains { $0.line == 4 && $0.message.contains("tracing.protocol must be http/protobuf or http/json, not 'grpc'") })
        #expect(bad.contains { $0.line == 5 && $0.message.contains("tracing.sample_ratio must be a number of runs traced from 0 to 1") })
        #expect(bad.contains { $0.line == 6 && $0.message.contains("unknown key 'exporter' in 'tracing'") })
    }

    /// Tracing is on when the file says so or OpenTelemetry's own variable asks for OTLP, and off when
    /// OpenTelemetry's variables turn it off, whatever the file says.
    @Test func tracingIsOnWhenTheFileOrTheOTelVariablesSaySo() {
        let off = TracingConfig()
        let on = TracingConfig(enabled: true)
        #expect(!off.isOn(environment: [:]))
        #expect(on.isOn(environment: [:]))
        #expect(off.isOn(environment: ["OTEL_TRACES_EXPORTER": "otlp"]))
        #expect(!on.isOn(environment: ["OTEL_TRACES_EXPORTER": "none"]))
        #expect(!on.isOn(environment: ["OTEL_SDK_DISABLED": "true"]))
        #expect(!off.isOn(environment: ["OTEL_SDK_DISABLED": "TRUE", "OTEL_TRACES_EXPORTER": "otlp"]))
        #expect(!off.isOn(environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"]), "an endpoint alone does not turn tracing on")
    }

    @Test func outboundSettingsAreReadAndCheckedWithTheirLine() throws {
        let key = ["DEV_KEY": "dev-key-0123456789abcdef"]
        #expect(try ConfigLoader.parse(yaml: valid, file: "t.yaml", environment: key).outbound == OutboundConfig(), "defaults")
        let tuned = "outbound:\n  timeout_seconds: 5\n  retries: 0\n  max_retry_after_seconds: 10\n  max_response_bytes: 4096\n  max_page_bytes: 2048\n" + valid
        let config = try ConfigLoader.parse(yaml: tuned, file: "t.yaml", environment: key)
        #expect(config.outbound == OutboundConfig(timeoutSeconds: 5, retries: 0, maxRetryAfterSeconds: 10, maxResponseBytes: 4096, maxPageBytes: 2048))
        let bad = issues("outbound:\n  timeout_seconds: 0\n  retries: lots\n  max_response_bytes: 10\n  timeout: 3\n" + valid, env: key)
        #expect(bad.contains { $0.line == 2 && $0.message.contains("outbound.timeout_seconds") })
        #expect(bad.contains { $0.line == 3 && $0.message.contains("outbound.retries") })
        #expect(bad.contains { $0.line == 4 && $0.message.contains("outbound.max_response_bytes") })
        #expect(bad.contains { $0.line == 5 && $0.message.contains("unknown key 'timeout'") })
    }

    @Test func databaseURLSelectsPostgreSQLAndBadOnesAreReportedWithoutThePassword() throws {
        let key = ["DEV_KEY": "dev-key-0123456789abcdef", "DATABASE_URL": "postgres://app:s3cret@db.internal:6432/tributary?sslmode=require"]
        let withURL = valid.replacingOccurrences(
            of: "  path: data/t.sqlite", with: "  path: data/t.sqlite\n  url: ${DATABASE_URL}\n  max_connections: 24")
        let config = try ConfigLoader.parse(yaml: withURL, file: "t.yaml", environment: key)
        #expect(config.database.url == PostgresURL(host: "db.internal", port: 6432, username: "app", password: "s3cret", database: "tributary", tls: .require))
        #expect(config.database.maxConnections == 24)
        #expect(config.database.url?.redacted == "postgres://app:***@db.internal:6432/tributary")
        #expect(try ConfigLoader.parse(yaml: valid, file: "t.yaml", environment: key).database.url == nil, "SQLite stays the default")

        for (url, reason) in [
            ("mysql://app:s3cret@db/x", "scheme"), ("postgres://app:s3cret@db.internal", "no database"), ("postgres://db.internal/x", "no user"),
            ("postgres://app:s3cret@db/x?sslmode=sometimes", "sslmode"), ("postgres://app:s3cret@db/x?pool=3", "unknown parameter"),
        ] {
            let bad = issues(withURL, env: key.merging(["DATABASE_URL": url]) { _, new in new })
            #expect(bad.contains { $0.line == 3 && $0.message.contains("database.url") && $0.message.contains(reason) }, "\(url): \(bad)")
            #expect(!bad.contains { $0.message.contains("s3cret") }, "the password is never repeated")
        }
        #expect(issues(withURL.replacingOccurrences(of: "max_connections: 24", with: "max_connections: 0"), env: key).contains { $0.line == 4 })
    }

    @Test func missingEnvironmentVariableAndYAMLSyntaxErrors() {
        let missing = issues(valid)
        #expect(missing.contains { $0.line == 5 && $0.message.contains("DEV_KEY") })
        let withDefault = issues(valid.replacingOccurrences(of: "${DEV_KEY}", with: "${DEV_KEY:-fallback-key-0123456789}"))
        #expect(withDefault.isEmpty)
        let syntax = issues("environments:\n  dev: [unclosed\n")
        #expect(syntax.count == 1)
        #expect(syntax.first?.line ?? 0 > 0)
        #expect(syntax.first?.message.hasPrefix("YAML syntax error") == true)
        #expect(issues("").first?.message.contains("empty") == true)
    }

    @Test func structuralMistakes() {
        let yaml = """
            environments:
              dev: { secret_key: "k-0123456789abcdef" }
              prod: { secret_key: "k-0123456789abcdef" }
            integrations:
              shop:
                environments: [staging]
                auth: { type: api_key }
                syncs:
                  a: { models: [Order], frequency: 1h }
                  b: { models: [Order], frequency: 1h }
                  c: { frequency: 1h }
            """
        let found = issues(yaml).map(\.message)
        #expect(found.contains { $0.contains("share a secret key") })
        #expect(found.contains { $0.contains("environment 'staging'") })
        #expect(found.contains { $0.contains("needs exactly one of 'header' or 'query_parameter'") })
        #expect(found.contains { $0.contains("model 'Order' is written by both 'a' and 'b'") })
        #expect(found.contains { $0.contains("sync 'c' of integration 'shop' needs 'models'") })
    }

    @Test func retentionIsReadAndBounded() throws {
        let base = "environments:\n  dev: { secret_key: dev-key-0123456789abcdef }\n"
        #expect(try ConfigLoader.parse(yaml: base, file: "r.yaml", environment: [:]).retention == RetentionConfig(), "30 days each by default")
        let set = try ConfigLoader.parse(yaml: base + "retention: { runs_days: 7, webhook_deliveries_days: 3, webhook_tasks_days: 1 }\n", file: "r.yaml", environment: [:])
        #expect(set.retention == RetentionConfig(runsDays: 7, webhookDeliveriesDays: 3, webhookTasksDays: 1))
        let bad = issues(base + "retention:\n  runs_days: 0\n  forever: true\n")
        #expect(bad.contains { $0.line == 4 && $0.message.contains("retention.runs_days must be a whole number from 1 to 36500, not '0'") })
        #expect(bad.contains { $0.line == 5 && $0.message.contains("unknown key 'forever' in 'retention'") })
    }

    /// Provider webhooks are verified unless the configuration says otherwise out loud.
    @Test func providerWebhooksNeedASecretOrAnExplicitUnsigned() throws {
        func shop(_ webhooks: String) -> String {
            """
            environments:
              dev: { secret_key: dev-key-0123456789abcdef }
              prod: { secret_key: prod-key-0123456789abcdef }
            integrations:
              shop:
                webhooks: \(webhooks)
                syncs:
                  orders: { models: [Order], frequency: 1h, webhook_subscriptions: ["*"] }
            """
        }
        let missing = issues(shop("{ connection_path: store }"))
        #expect(missing.contains { $0.line == 6 && $0.message.contains("needs 'secret' (or per-environment 'secrets')") && $0.message.contains("'unsigned: true'") })
        let both = issues(shop("{ connection_path: store, secret: s3cret-s3cret, unsigned: true }"))
        #expect(both.contains { $0.message.contains("contradict") })
        let twoKinds = issues(shop("{ connection_path: store, secret: s3cret-s3cret, secrets: { dev: dev-s3cret-1 } }"))
        #expect(twoKinds.contains { $0.message.contains("not both") })
        let typo = issues(shop("{ connection_path: store, secrets: { dev: dev-s3cret-1, prd: prod-s3cret-1 } }"))
        #expect(typo.contains { $0.message.contains("webhooks.secrets for environment 'prd', which is not declared") })
        let badScheme = issues(shop("{ connection_path: store, secret: s3cret-s3cret, scheme: md5 }"))
        #expect(badScheme.contains { $0.message.contains("scheme must be one of hmac_sha256, stripe, slack, not 'md5'") })
        let headerElsewhere = issues(shop("{ connection_path: store, secret: s3cret-s3cret, scheme: slack, signature_header: X-Sig }"))
        #expect(headerElsewhere.contains { $0.message.contains("signature_header applies to scheme hmac_sha256 only") })

        let perEnvironment = try ConfigLoader.parse(
            yaml: shop("{ connection_path: store, scheme: stripe, tolerance_seconds: 60, secrets: { dev: dev-s3cret-1, prod: prod-s3cret-1 } }"),
            file: "s.yaml", environment: [:])
        let settings = try #require(perEnvironment.integration("shop", in: "dev")?.webhooks)
        #expect(settings.scheme == .stripe && settings.toleranceSeconds == 60 && !settings.unsigned)
        #expect(settings.secret(for: "dev")?.value == "dev-s3cret-1")
        #expect(settings.secret(for: "prod")?.value == "prod-s3cret-1")
        #expect(settings.secret(for: "staging") == nil)
    }

    @Test func webhookSettingsAreReadAndCheckedWithTheirLine() throws {
        let key = ["DEV_KEY": "dev-key-0123456789abcdef"]
        let config = try ConfigLoader.parse(yaml: valid, file: "t.yaml", environment: key)
        #expect(config.webhookDelivery == WebhookDeliveryConfig(), "defaults")
        #expect(config.environment(named: "dev")?.webhooks == EnvironmentWebhooks(), "no receivers unless configured")
        let shop = try #require(config.integration("my-shop", in: "dev"))
        #expect(shop.webhooks == ProviderWebhookConfig(unsigned: true, connection: .bodyPath("shop.id"), type: .header("X-Shop-Topic")))
        #expect(shop.sync(named: "sync-orders")?.subscribes(to: "orders/updated") == true)
        #expect(shop.sync(named: "sync-orders")?.subscribes(to: "orders/created") == false)

        let full = """
            webhook_delivery: { timeout_seconds: 2, retry_base_seconds: 0.5, retry_max_seconds: 60, give_up_after_hours: 2, concurrency: 3 }
            environments:
              dev:
                secret_key: dev-key-0123456789abcdef
                webhooks:
                  urls: [https://app.example.com/hooks, "https://backup.example.com/hooks"]
                  signing_key: signing-0123456789abcdef
                  on_sync_completion_always: true
                  on_sync_error: false
            integrations:
              shop:
                webhooks:
                  secret: shop-webhook-secret
                  signature_header: X-Shop-Hmac
                  connection_header: X-Shop-Domain
                  connection_match: metadata.shop.domain
                  type_path: event
                syncs:
                  orders:
                    models: [Order]
                    frequency: every hour
                    webhook_subscriptions: ["*"]
                    webhook: { records_path: order, delete_types: [order.deleted], deleted_field: archived }
            """
        let parsed = try ConfigLoader.parse(yaml: full, file: "w.yaml", environment: [:])
        #expect(
            parsed.webhookDelivery
                == WebhookDeliveryConfig(timeoutSeconds: 2, retryBaseSeconds: 0.5, retryMaxSeconds: 60, giveUpAfterSeconds: 7200, concurrency: 3))
        #expect(
            parsed.environment(named: "dev")?.webhooks
                == EnvironmentWebhooks(
                    urls: ["https://app.example.com/hooks", "https://backup.example.com/hooks"], signingKey: Secret("signing-0123456789abcdef"),
                    sendOnZeroChanges: true, sendOnFailure: false))
        let integration = try #require(parsed.integration("shop", in: "dev"))
        #expect(
            integration.webhooks
                == ProviderWebhookConfig(
                    secret: Secret("shop-webhook-secret"), signatureHeader: "X-Shop-Hmac", connection: .header("X-Shop-Domain"),
                    match: .metadata("shop.domain"), type: .bodyPath("event")))
        #expect(
            integration.sync(named: "orders")?.webhookHandler
                == DeclarativeWebhookHandler(model: "Order", recordsPath: "order", deleteTypes: ["order.deleted"], deletedField: "archived"))

        let bad = issues(
            """
            webhook_delivery: { retry_base_seconds: 0 }
            environments:
              dev:
                secret_key: dev-key-0123456789abcdef
                webhooks: { urls: [ftp://nope] }
            integrations:
              shop:
                webhooks: { connection_path: a, connection_header: B, connection_match: email }
                syncs:
                  orders: { models: [Order], frequency: 1h, webhook: { records_path: x } }
              other:
                syncs:
                  items: { models: [Item], frequency: 1h, webhook_subscriptions: [item.updated] }
            """)
        #expect(bad.contains { $0.line == 1 && $0.message.contains("webhook_delivery.retry_base_seconds") })
        #expect(bad.contains { $0.line == 5 && $0.message.contains("'ftp://nope' is not an http:// or https:// URL") })
        #expect(bad.contains { $0.line == 5 && $0.message.contains("needs a 'signing_key'") })
        #expect(bad.contains { $0.line == 8 && $0.message.contains("'connection_path' or 'connection_header', not both") })
        #expect(!bad.contains { $0.message.contains("unsigned") }, "one problem at a time: the connection first")
        #expect(bad.contains { $0.line == 8 && $0.message.contains("connection_match must be connection_id, metadata.KEY or connection_config.KEY") })
        #expect(bad.contains { $0.line == 10 && $0.message.contains("has a 'webhook' handler but no 'webhook_subscriptions'") })
        #expect(bad.contains { $0.line == 12 && $0.message.contains("sync 'items' has webhook_subscriptions, but the integration has no 'webhooks' section") })
        let sameKey = issues("environments:\n  dev:\n    secret_key: same-0123456789abcdef\n    webhooks: { urls: [http://a.test/h], signing_key: same-0123456789abcdef }\n")
        #expect(sameKey.contains { $0.message.contains("signing_key must differ from the secret key") })
        #expect(sameKey.contains { $0.message.contains("sign_with_secret_key: true") }, "the message names the explicit way")
        // Said explicitly: the secret key signs (apps that verify with it, as Nango's older SDKs do).
        let explicit = try ConfigLoader.parse(
            yaml: "environments:\n  dev:\n    secret_key: same-0123456789abcdef\n    expose_credentials: false\n    webhooks: { urls: [http://a.test/h], sign_with_secret_key: true }\n",
            file: "t.yaml", environment: [:])
        #expect(explicit.environments.first?.webhooks.signingKey?.value == "same-0123456789abcdef")
        #expect(explicit.environments.first?.exposesCredentials == false)
        let both = issues("environments:\n  dev:\n    secret_key: same-0123456789abcdef\n    webhooks: { urls: [http://a.test/h], signing_key: other-0123456789abcdef, sign_with_secret_key: true }\n")
        #expect(both.contains { $0.line == 4 && $0.message.contains("not both") })
        #expect(try ConfigLoader.parse(yaml: "environments:\n  dev: { secret_key: same-0123456789abcdef }\n", file: "t.yaml", environment: [:])
            .environments.first?.exposesCredentials == true, "credentials reach the app by default, as with Nango")
    }
}

@Suite("Declarative syncs in tributary.yaml")
struct DeclarativeConfigTests {
    @Test func aDeclarativeSyncIsReadWithItsPaginationAndMapping() throws {
        let config = try ConfigLoader.parse(
            yaml: """
                environments:
                  dev: { secret_key: dev-key-0123456789abcdef }
                integrations:
                  shop:
                    base_url: https://shop.example.com/api
                    rate_limit_per_second: 5
                    syncs:
                      orders:
                        models: [Order]
                        frequency: every hour
                        endpoint: /stores/{variant}/orders
                        params: { status: any }
                        pagination: { type: page, page_param: p, first_page: 0, limit_param: per_page, limit: 50 }
                        records_path: data
                        id_field: order.id
                        fields: [order.id, total]
                        rename: { total: amount }
                """,
            file: "d.yaml", environment: [:])
        let integration = try #require(config.integrations.first)
        #expect(integration.rateLimitPerSecond == 5)
        let spec = try #require(integration.syncs.first?.declarative)
        #expect(spec.endpoint == "/stores/{variant}/orders")
        #expect(spec.params == [.init("status", "any")])
        #expect(spec.pagination == Pagination(.page(pageParameter: "p", firstPage: 0), recordsPath: "data", limitParameter: "per_page", limit: 50))
        #expect(spec.idField == "order.id")
        #expect(try spec.transform(["order": ["id": 7], "total": "9.50", "secret": "x"]) == ["order.id": 7, "amount": "9.50", "id": "7"])
        #expect(try DeclarativeSpec.fill("/s/{metadata.{variant}.store}?v={variant}", variant: "eu", metadata: ["eu.store": "s-1"]) == "/s/s-1?v=eu")
    }

    @Test func badDeclarativeSyncsAreReportedWithTheirLine() {
        let yaml = """
            environments:
              dev: { secret_key: dev-key-0123456789abcdef }
            integrations:
              shop:
                base_url: https://shop.example.com
                syncs:
                  a: { models: [A], frequency: every hour, function: f, endpoint: /a }
                  b: { models: [B], frequency: every hour, endpoint: /b, pagination: { type: scroll } }
                  c: { models: [C], frequency: every hour, records_path: items }
                  d: { models: [D], frequency: every hour, endpoint: /d, pagination: { type: cursor, cursor_param: c } }
            """
        let error = #expect(throws: ConfigError.self) { try ConfigLoader.parse(yaml: yaml, file: "bad.yaml", environment: [:]) }
        let text = error?.issues.map(\.description) ?? []
        #expect(text.contains { $0.hasPrefix("bad.yaml:7:") && $0.contains("both a 'function' and an 'endpoint'") }, "\(text)")
        #expect(text.contains { $0.hasPrefix("bad.yaml:8:") && $0.contains("'scroll' is unknown") }, "\(text)")
        #expect(text.contains { $0.hasPrefix("bad.yaml:9:") && $0.contains("needs an 'endpoint'") }, "\(text)")
        #expect(text.contains { $0.hasPrefix("bad.yaml:10:") && $0.contains("needs 'cursor_path'") }, "\(text)")
    }

}
