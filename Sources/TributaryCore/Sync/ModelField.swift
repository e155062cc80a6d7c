/// One field of a model a sync writes, as `GET /scripts/config` describes it (Nango's
/// `{name, value}`, where `value` is the field's type: `string`, `number`, `boolean`, `date`,
/// `object`, `array`, or `any` when not known).
public struct ModelField: Sendable, Hashable {
    public var name: String
    public var type: String
    public var optional: Bool

    public init(_ name: String, _ type: String = "string", optional: Bool = false) {
        self.name = name
        self.type = type
        self.optional = optional
    }
}
