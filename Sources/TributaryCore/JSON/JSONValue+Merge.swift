extension JSONObject {
    /// Deep-merges `patch` into this object: nested objects merge member by member, every other
    /// value (arrays included) replaces the existing one. This is how `batchUpdate` applies partial
    /// records, matching Nango's behaviour.
    public func merging(_ patch: JSONObject) -> JSONObject {
        var result = self
        for (key, newValue) in patch {
            if case .object(let patchObject) = newValue, case .object(let existing)? = result[key] {
                result[key] = .object(existing.merging(patchObject))
            } else {
                result[key] = newValue
            }
        }
        return result
    }

    /// Shallow merge: top-level members of `other` replace this object's (connection metadata `PATCH`).
    public func shallowMerging(_ other: JSONObject) -> JSONObject {
        var result = self
        for (key, value) in other { result[key] = value }
        return result
    }
}
