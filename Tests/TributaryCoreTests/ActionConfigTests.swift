import Testing
import TributaryCore

/// Actions in `tributary.yaml` and the one-pass template a declarative action's request is filled with.
@Suite("Action configuration and templates")
struct ActionConfigTests {
    static func yaml(_ actions: String) -> String {
        """
        environments:
          dev:
            secret_key: dev-key-0123456789abcdef
        integrations:
          shop:
            base_url: https://shop.example.test/api
            actions:
        \(actions)
        """
    }

    func issues(_ actions: String) -> [ConfigIssue] {
        do {
            _ = try ConfigLoader.parse(yaml: Self.yaml(actions), file: "a.yaml", environment: [:])
            return []
        } catch {
            return error.issues
        }
    }

    @Test func parsesSwiftAndDeclarativeActions() throws {
        let config = try ConfigLoader.parse(
            yaml: Self.yaml(
                """
                      refund-order:
                      notify: { function: notifier, description: Tell someone, timeout_seconds: 30, max_output_bytes: 1000 }
                      create-note:
                        method: put
                        endpoint: /orders/{input.id}/notes
                        query: { store: "{metadata.store}" }
                        headers: { Idempotency-Key: "{idempotency_key}" }
                        body: { text: "{input.text}", pinned: true, n: 2, none: null, list: [a, "3"], quoted: "true" }
                        output: note
                """), file: "a.yaml", environment: [:])
        let actions = try #require(config.integration("shop", in: "dev")?.actions)
        #expect(actions.map(\.name) == ["refund-order", "notify", "create-note"])
        #expect(actions[0].function == "refund-order" && actions[0].timeoutSeconds == 900 && actions[0].maxOutputBytes == 2 * 1024 * 1024)
        #expect(actions[1].function == "notifier" && actions[1].description == "Tell someone" && actions[1].timeoutSeconds == 30 && actions[1].maxOutputBytes == 1000)
        let spec = try #require(actions[2].declarative)
        #expect(spec.method == .PUT && spec.endpoint == "/orders/{input.id}/notes" && spec.output == "note")
        #expect(spec.query == [.init("store", "{metadata.store}")] && spec.headers == [.init("Idempotency-Key", "{idempotency_key}")])
        #expect(spec.body == ["text": "{input.text}", "pinned": true, "n": 2, "none": .null, "list": ["a", "3"], "quoted": "true"], "quoted values stay strings")
    }

    @Test func mistakesAreNamedWithTheirLine() {
        let found = issues(
            """
                  bad name!: {}
                  both: { function: f, endpoint: /x }
                  stray: { output: x }
                  get-body: { method: GET, endpoint: /x, body: { a: 1 } }
                  relative: { endpoint: orders }
                  slow: { timeout_seconds: 0 }
                  typo: { endpont: /x }
            """)
        let messages = found.map(\.message)
        #expect(messages.contains { $0.contains("action name 'bad name!' is invalid") })
        #expect(messages.contains { $0.contains("has both a 'function' and an 'endpoint'") })
        #expect(messages.contains { $0.contains("'output' belongs to a declarative action") })
        #expect(messages.contains { $0.contains("a GET request has no body") })
        #expect(messages.contains { $0.contains("must be a path below the integration's base_url") })
        #expect(messages.contains { $0.contains("timeout_seconds") })
        #expect(messages.contains { $0.contains("unknown key 'endpont'") && $0.contains("did you mean 'endpoint'?") })
        #expect(found.allSatisfy { $0.file == "a.yaml" && $0.line > 5 }, "each at its line")
    }

    let template = ActionTemplate(
        input: ["id": "o/1", "n": 3, "flag": true, "nested": ["a": "b"], "list": [1, 2], "none": .null],
        metadata: ["store": "eu", "deep": ["k": "v"]], connectionId: "c-1", idempotencyKey: "key-1")

    @Test func fillsTokensOnceAndEncodesEachForItsPlace() throws {
        #expect(try template.fill("/o/{input.id}/x/{input.n}", for: .path) == "/o/o%2F1/x/3")
        #expect(try template.fill("{input.id}|{metadata.store}|{metadata.deep.k}|{connection_id}|{idempotency_key}|{input.flag}", for: .queryValue)
            == "o/1|eu|v|c-1|key-1|true")
        // What a value inserts is not scanned again; unknown tokens and stray braces stay text.
        let echoing = ActionTemplate(input: ["a": "{input.b}", "b": "no"], metadata: [:], connectionId: "c", idempotencyKey: "k")
        #expect(try echoing.fill("{input.a}", for: .queryValue) == "{input.b}")
        #expect(try template.fill("{unknown} { {input.n}} {", for: .queryValue) == "{unknown} { 3} {")
    }

    @Test func aBodyTokenKeepsItsJSONType() throws {
        let body = try template.body(["n": "{input.n}", "all": "{input}", "nested": "{input.nested}", "text": "n={input.n}", "list": ["{input.list}"], "k": 1])
        #expect(body == ["n": 3, "all": template.input, "nested": ["a": "b"], "text": "n=3", "list": [[1, 2]], "k": 1])
    }

    @Test func badValuesFailNamingThem() {
        func code(_ body: () throws -> Void) -> (String, String)? {
            do {
                try body()
                return nil
            } catch let error as TributaryError {
                return (error.code.rawValue, error.message)
            } catch {
                return ("unexpected", "\(error)")
            }
        }
        let missing = code { _ = try template.fill("{input.gone}", for: .queryValue) }
        #expect(missing?.0 == "invalid_action_input" && missing?.1.contains("'gone'") == true)
        let object = code { _ = try template.fill("{input.nested}", for: .queryValue) }
        #expect(object?.0 == "invalid_action_input" && object?.1.contains("string, number or boolean") == true)
        let dots = code { _ = try ActionTemplate(input: ["id": ".."], metadata: [:], connectionId: "c", idempotencyKey: "k").fill("/o/{input.id}", for: .path) }
        #expect(dots?.0 == "invalid_action_input")
        let metadata = code { _ = try template.fill("{metadata.nope}", for: .queryValue) }
        #expect(metadata?.0 == "invalid_metadata")
        let long = code { _ = try ActionTemplate(input: ["x": .string(String(repeating: "a", count: 3000))], metadata: [:], connectionId: "c", idempotencyKey: "k").fill("{input.x}", for: .queryValue) }
        #expect(long?.0 == "invalid_action_input")
        let header = code {
            _ = try ActionTemplate(input: ["x": "a\r\nX-Evil: 1"], metadata: [:], connectionId: "c", idempotencyKey: "k")
                .request(DeclarativeAction(method: .GET, endpoint: "/x", headers: [.init("X-Note", "{input.x}")]))
        }
        #expect(header?.0 == "invalid_action_input" && header?.1.contains("line break") == true)
    }
}

/// The README's Swift action, compiled here so the documentation cannot drift from the API.
struct ReadmeRefundOrder: ActionFunction {
    let name = "refund-order"
    func run(_ nango: any ActionContext, input: JSONValue) async throws -> JSONValue {
        guard let id = input["order_id"]?.stringValue else { throw ActionError(message: "order_id is required") }
        let order = try await nango.getRecordsById([id], model: "Order")[id]  // the synced record
        let response = try await nango.send(
            .json(.POST, "/orders/\(URLText.pathSegment(id, what: "order_id"))/refunds", body: ["amount": order?["total"] ?? .null]))
        guard response.isSuccess else { throw ActionError(["status": .number(JSONNumber(response.status))]) }
        try await nango.updateMetadata(["last_refund": .string(id)])
        return try response.json()
    }
}
