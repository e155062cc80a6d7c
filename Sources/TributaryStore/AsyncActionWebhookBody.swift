import TributaryCore

/// The webhook an async action sends when it ends, with Nango's body:
///
/// ```json
/// {"connectionId": "c-1", "from": "nango", "payload": {"id": "…", "statusUrl": "/action/…"},
///  "providerConfigKey": "shop", "type": "async_action"}
/// ```
///
/// Like Nango it carries no result: the app fetches it with `GET /action/{id}`. Written in
/// JavaScript's form (``JavaScriptJSON``) so `X-Nango-Signature` verifies.
public enum AsyncActionWebhookBody {
    public static func body(for run: ActionRun) -> [UInt8] {
        JavaScriptJSON.bytes([
            "from": "nango",
            "type": "async_action",
            "connectionId": .string(run.connection.connectionId),
            "providerConfigKey": .string(run.connection.providerConfigKey),
            "payload": ["id": .string(run.id), "statusUrl": .string(run.statusURL)],
        ])
    }
}
