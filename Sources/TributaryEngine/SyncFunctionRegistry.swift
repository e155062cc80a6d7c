import TributaryCore

/// The sync functions a process knows, by name.
public struct SyncFunctionRegistry: Sendable {
    private let byName: [String: any SyncFunction]

    /// - Throws: `TributaryError` when two functions share a name.
    public init(_ functions: [any SyncFunction]) throws(TributaryError) {
        var byName: [String: any SyncFunction] = [:]
        for function in functions {
            guard byName[function.name] == nil else {
                throw TributaryError(.unknownFunction, "Two sync functions are named '\(function.name)'; names must be unique.")
            }
            byName[function.name] = function
        }
        self.byName = byName
    }

    /// The function named `name`.
    public func function(named name: String) -> (any SyncFunction)? { byName[name] }

    /// All names, sorted.
    public var names: [String] { byName.keys.sorted() }

    /// The function a sync runs: its registered Swift function, or for a declarative sync the
    /// engine's declarative function.
    ///
    /// - Throws: `unknown_function` naming the registered functions.
    public func function(for sync: SyncConfig) throws(TributaryError) -> any SyncFunction {
        if let spec = sync.declarative { return DeclarativeSyncFunction(name: sync.name, spec: spec) }
        guard let function = byName[sync.function] else {
            let known = names.isEmpty ? "none are registered" : "registered: \(names.joined(separator: ", "))"
            throw TributaryError(.unknownFunction, "Sync '\(sync.name)' uses function '\(sync.function)', which is not registered (\(known)).")
        }
        return function
    }
}
