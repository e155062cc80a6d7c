import TributaryCore

/// Nango's `end_user` and `tags` of a connection: pure rules close to Nango's own (shapes, tag keys),
/// used by `POST /connections` and `PATCH /connections/{id}`.
enum EndUserFields {
    static let maximumTags = 64

    /// `{id, email?, display_name?, tags?, organization?: {id, display_name?}}`, strings; `id` required.
    static func endUser(_ value: JSONObject, field: String = "end_user") throws -> JSONObject {
        var result: JSONObject = [:]
        for (key, member) in value {
            switch key {
            case "id", "email", "display_name":
                if let value = try text(member, "\(field).\(key)", nullable: key != "id") { result[key] = .string(value) }
            case "tags":
                guard let object = member.objectValue else { throw APIError.invalidBody("\(field).tags must be an object of strings.") }
                result[key] = .object(try tags(object, field: "\(field).tags"))
            case "organization":
                if member.isNull { continue }
                guard let organization = member.objectValue else { throw APIError.invalidBody("\(field).organization must be an object.") }
                var checked: JSONObject = [:]
                for (name, part) in organization {
                    guard name == "id" || name == "display_name" else {
                        throw APIError.invalidBody("Unknown field '\(field).organization.\(name.prefix(40))'; allowed: display_name, id.")
                    }
                    if let value = try text(part, "\(field).organization.\(name)", nullable: name != "id") { checked[name] = .string(value) }
                }
                guard checked["id"] != nil else { throw APIError.invalidBody("\(field).organization.id is required.") }
                result[key] = .object(checked)
            default:
                throw APIError.invalidBody("Unknown field '\(field).\(key.prefix(40))'; allowed: display_name, email, id, organization, tags.")
            }
        }
        guard result["id"] != nil else { throw APIError.invalidBody("\(field).id is required.") }
        return result
    }

    /// The tags Nango derives from an end user, which its SDK filters on (`listConnections` sends an
    /// end user's email as `tags[end_user_email]`): `end_user_id`, `end_user_email`,
    /// `end_user_display_name`, `organization_id`.
    static let derivedTagKeys = ["end_user_id", "end_user_email", "end_user_display_name", "organization_id"]

    /// `tags` with the derived tags of `endUser` in place of any earlier derived ones.
    static func tags(_ tags: JSONObject, derivingFrom endUser: JSONObject) -> JSONObject {
        var result = tags
        for key in derivedTagKeys { result[key] = nil }
        let derived: [(String, JSONValue?)] = [
            ("end_user_id", endUser["id"]), ("end_user_email", endUser["email"]), ("end_user_display_name", endUser["display_name"]),
            ("organization_id", endUser["organization"]?["id"]),
        ]
        for (key, value) in derived {
            if let text = value?.stringValue, !text.isEmpty { result[key] = .string(String(text.prefix(255))) }
        }
        return result
    }

    /// At most 64 tags; keys start with a letter and hold letters, digits, `_ . / : -` (64 at most,
    /// stored lowercase, as Nango's SDK sends them); values are strings of 255 characters at most.
    static func tags(_ value: JSONObject, field: String = "tags") throws -> JSONObject {
        guard value.count <= maximumTags else { throw APIError.invalidBody("\(field) holds \(value.count) tags; \(maximumTags) at most.") }
        var result: JSONObject = [:]
        for (key, member) in value {
            guard result[key.lowercased()] == nil else {
                throw APIError.invalidBody("\(field) has the key '\(key.prefix(64))' twice (keys are compared lowercase).")
            }
            guard isTagKey(key) else {
                throw APIError.invalidBody(
                    "\(field) key '\(key.prefix(64))' must start with a letter and hold letters, digits, '_', '.', '/', ':' or '-' (64 at most).")
            }
            guard let text = member.stringValue, text.unicodeScalars.count <= 255, !text.unicodeScalars.contains(where: { $0.value < 0x20 }) else {
                throw APIError.invalidBody("\(field).\(key) must be a string of at most 255 characters without control characters.")
            }
            result[key.lowercased()] = .string(text)
        }
        return result
    }

    static func isTagKey(_ key: String) -> Bool {
        let scalars = Array(key.unicodeScalars)
        guard let first = scalars.first, scalars.count <= 64, first.isASCII, first.properties.isAlphabetic else { return false }
        return scalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "_./:-".unicodeScalars.contains($0)) }
    }

    /// The string, or nil for a null where one is allowed (left out of what is stored).
    private static func text(_ value: JSONValue, _ field: String, nullable: Bool) throws -> String? {
        if nullable, value.isNull { return nil }
        guard let text = value.stringValue, !text.isEmpty || nullable, text.unicodeScalars.count <= 255 else {
            throw APIError.invalidBody("\(field) must be \(nullable ? "a string or null" : "a non-empty string") of at most 255 characters.")
        }
        return text
    }
}
