import HTTPTypes

/// The methods each route path answers, for telling "no such path" (404) from "not with this
/// method" (405 with `Allow`, RFC 9110 §15.5.6) — the router only knows "no handler".
///
/// A pure value: patterns use the API's `{name}` (one segment) and `{anyPath}` (the rest, any depth).
struct RouteTable: Sendable {
    private let routes: [(method: HTTPRequest.Method, segments: [Substring])]

    init(_ routes: [(method: HTTPRequest.Method, path: String)]) {
        self.routes = routes.map { ($0.method, $0.path.split(separator: "/")) }
    }

    /// The methods the route path that `path` resolves to answers, in declaration order (empty: no
    /// route has this path). As the router does, a literal segment wins over a `{name}`, and that over
    /// `{anyPath}`: `/connections/metadata` is its own path, not `/connections/{connectionId}`.
    func allowedMethods(at path: String) -> [HTTPRequest.Method] {
        let segments = path.split(separator: "/")
        let matching = routes.filter { Self.matches($0.segments, segments) }
        guard let best = matching.map(\.segments).max(by: { Self.specificity($0).lexicographicallyPrecedes(Self.specificity($1)) }) else { return [] }
        var methods: [HTTPRequest.Method] = []
        for route in matching where route.segments == best && !methods.contains(route.method) { methods.append(route.method) }
        return methods
    }

    /// Per segment: 2 literal, 1 `{name}`, 0 `{anyPath}`.
    private static func specificity(_ pattern: [Substring]) -> [Int] {
        pattern.map { $0 == "{anyPath}" ? 0 : ($0.hasPrefix("{") && $0.hasSuffix("}") ? 1 : 2) }
    }

    private static func matches(_ pattern: [Substring], _ segments: [Substring]) -> Bool {
        for (index, part) in pattern.enumerated() {
            if part == "{anyPath}" { return segments.count > index }
            guard index < segments.count else { return false }
            if part.hasPrefix("{") && part.hasSuffix("}") { continue }
            if part != segments[index] { return false }
        }
        return pattern.count == segments.count
    }
}
