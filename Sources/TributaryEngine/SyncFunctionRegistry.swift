import TributaryCore

/// The sync functions and action functions a process knows, by name.
public struct SyncFunctionRegistry: Sendable {
    private let byName: [String: any SyncFunction]
    private let actionsByName: [String: any ActionFunction]
    private let eventsByName: [String: any ConnectionEventFunction]

    /// - Throws: `TributaryError` when two sync functions, or two action functions, share a name.
    public init(_ functions: [any SyncFunction], actions: [any ActionFunction] = [], events: [any ConnectionEventFunction] = []) throws(TributaryError) {
        var byName: [String: any SyncFunction] = [:]
        for function in functions {
            guard byName[function.name] == nil else {
                throw TributaryError(.unknownFunction, "Two sync functions are named '\(function.name)'; names must be unique.")
            }
            byName[function.name] = function
        }
        var actionsByName: [String: any ActionFunction] = [:]
        for action in actions {
            guard actionsByName[action.name] == nil else {
                throw TributaryError(.unknownFunction, "Two action functions are named '\(action.name)'; names must be unique.")
            }
            actionsByName[action.name] = action
        }
        var eventsByName: [String: any ConnectionEventFunction] = [:]
        for event in events {
            guard eventsByName[event.name] == nil else {
                throw TributaryError(.unknownFunction, "Two on-event functions are named '\(event.name)'; names must be unique.")
            }
            eventsByName[event.name] = event
        }
        self.byName = byName
        self.actionsByName = actionsByName
        self.eventsByName = eventsByName
    }

    /// The registered on-event function `name`.
    public func event(named name: String) -> (any ConnectionEventFunction)? { eventsByName[name] }

    /// The action function named `name`.
    public func action(named name: String) -> (any ActionFunction)? { actionsByName[name] }

    /// The function an action runs: its registered Swift function, or for a declarative action the
    /// engine's declarative function.
    ///
    /// - Throws: `unknown_function` naming the registered action functions.
    public func function(for action: ActionConfig) throws(TributaryError) -> any ActionFunction {
        if let spec = action.declarative { return DeclarativeActionFunction(name: action.name, spec: spec) }
        guard let function = actionsByName[action.function] else {
            let known = actionsByName.isEmpty ? "none are registered" : "registered: \(actionsByName.keys.sorted().joined(separator: ", "))"
            throw TributaryError(.unknownFunction, "Action '\(action.name)' uses function '\(action.function)', which is not registered (\(known)).")
        }
        return function
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
