extension JSONObject {
    /// Deep-merges `patch` into this object: nested objects merge member by member, every other
    /// value (arrays included) replaces the existing one. This is how `batchUpdate` applies partial
    /// records, matching Nango's behaviour.
    public func merging(_ patch: JSONObject) -> JSONObject {
        var result = self
        result.apply(patch) { existing, newValue in
            if case .object(let patchObject) = newValue, case .object(let existingObject)? = existing {
                return .object(existingObject.merging(patchObject))
            }
            return newValue
        }
        return result
    }

    /// Shallow merge: top-level members of `other` replace this object's (connection metadata `PATCH`).
    public func shallowMerging(_ other: JSONObject) -> JSONObject {
        var result = self
        result.apply(other) { _, newValue in newValue }
        return result
    }

    /// Sets every member of `other`, each to `combine(existing value, its value)`; a new key is
    /// appended. Large objects go through an index of the keys: a search per member would cost the
    /// two sizes multiplied (a provider record or a metadata patch of many keys is outside input).
    mutating func apply(_ other: JSONObject, _ combine: (JSONValue?, JSONValue) -> JSONValue) {
        if storage.count + other.storage.count <= 32 {
            for (key, value) in other.storage { self[key] = combine(self[key], value) }
            return
        }
        var positions = [ExactString: Int](minimumCapacity: storage.count + other.storage.count)
        for (position, member) in storage.enumerated() { positions[ExactString(member.key)] = position }
        for (key, value) in other.storage {
            if let position = positions[ExactString(key)] {
                storage[position].value = combine(storage[position].value, value)
            } else {
                positions[ExactString(key)] = storage.count
                storage.append((key, combine(nil, value)))
            }
        }
    }
}
