import Tributary

/// An action: answers one synced product of a catalog (`POST /action/trigger` with
/// `{"action_name": "product-lookup", "input": {"id": "spring-3", "catalog": "spring"}}`).
public struct ProductLookup: ActionFunction {
    public let name = "product-lookup"

    public init() {}

    public func run(_ nango: any ActionContext, input: JSONValue) async throws -> JSONValue {
        guard let id = input["id"]?.stringValue else { throw ActionError(message: "input.id is required") }
        let catalog = input["catalog"]?.stringValue ?? "base"
        guard let product = try await nango.getRecordsById([id], model: "Product", variant: catalog)[id] else {
            throw ActionError(["message": "no such product", "id": .string(id), "catalog": .string(catalog)])
        }
        await nango.log("looked up \(id) in catalog \(catalog)")
        return .object(product)
    }
}
