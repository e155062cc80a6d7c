/// The built-in demo configuration: the integration `demo-shop` reads ``DemoShopAPI`` over HTTP with
/// two **declarative** syncs (no Swift code), authenticated with an API key header.
///
/// `tributary demo` uses it with its own demo provider; `tributary serve` uses it when there is no
/// `tributary.yaml`, with the provider at `TRIBUTARY_DEMO_PROVIDER_URL` (default
/// `http://127.0.0.1:3010`, where `tributary demo-provider` listens).
public enum DemoConfiguration {
    /// The demo provider's default port.
    public static let providerPort = 3010
    /// The demo integration.
    public static let integration = "demo-shop"
    /// The connection `tributary demo` creates.
    public static let connection = "demo-connection"
    /// The variants `tributary demo` creates besides `base` (each reads the store of its name).
    public static let variants = ["store-eu", "store-us"]

    public static let yaml = """
        database:
          path: tributary-demo.sqlite
        environments:
          dev:
            secret_key: ${TRIBUTARY_DEV_SECRET_KEY:-dev-secret-key-change-me}
        integrations:
          demo-shop:
            provider: demo
            base_url: ${TRIBUTARY_DEMO_PROVIDER_URL:-http://127.0.0.1:3010}
            auth: { type: api_key, header: X-Api-Key }
            syncs:
              # Full refresh: every run lists the variant's store; orders the shop no longer lists
              # are marked deleted.
              orders:
                models: [Order]
                frequency: every 30 seconds
                sync_type: full
                track_deletes: true
                endpoint: /stores/{variant}/orders
                pagination: { type: cursor, cursor_path: next_cursor, cursor_param: cursor, limit_param: limit, limit: 50 }
                records_path: orders
              # Incremental: only what changed since the last successful run (lastSyncDate).
              order-changes:
                models: [OrderChange]
                frequency: every 30 seconds
                sync_type: incremental
                endpoint: /stores/{variant}/orders
                pagination: { type: cursor, cursor_path: next_cursor, cursor_param: cursor, limit_param: limit, limit: 50 }
                records_path: orders
                incremental_param: updated_after
                fields: [id, number, status, total, currency, updated_at]
        """
}
