public import EventLog
import Synchronization

/// The operations the API document gives rate limits for.
public enum RateLimitedOperation: String, Sendable, CaseIterable {
    case track, batch, query, export
}

/// One limit: `limit` requests per `windowSeconds`.
public struct RateLimit: Sendable, Equatable, CustomStringConvertible {
    public var limit: Int
    public var windowSeconds: Int

    public init(limit: Int, windowSeconds: Int) {
        self.limit = limit
        self.windowSeconds = windowSeconds
    }

    /// Parses `1000/minute`, `10/hour`, `5/second`, `100/30s`.
    public init?(parsing text: String) {
        let parts = text.split(separator: "/")
        guard parts.count == 2, let limit = Int(parts[0]), limit > 0 else { return nil }
        let unit = parts[1].lowercased()
        let window: Int? =
            switch unit {
            case "s", "sec", "second": 1
            case "m", "min", "minute": 60
            case "h", "hour": 3600
            case "d", "day": 86_400
            default: unit.hasSuffix("s") ? Int(unit.dropLast()) : nil
            }
        guard let window, window > 0 else { return nil }
        self.init(limit: limit, windowSeconds: window)
    }

    public var description: String { "\(limit)/\(windowSeconds)s" }
}

/// Rate limits per token ("per user" in the API document) and per project ("per account").
public struct RateLimitConfiguration: Sendable {
    public var enabled = true
    public var perToken: [RateLimitedOperation: RateLimit] = [
        .track: RateLimit(limit: 1000, windowSeconds: 60),
        .batch: RateLimit(limit: 100, windowSeconds: 60),
        .query: RateLimit(limit: 60, windowSeconds: 60),
    ]
    public var perProject: [RateLimitedOperation: RateLimit] = [
        .export: RateLimit(limit: 10, windowSeconds: 3600)
    ]

    public init() {}
}

/// The outcome of counting one request, with what the `X-RateLimit-*` headers report: the
/// tightest of the limits that apply.
public struct RateLimitDecision: Sendable {
    public var allowed: Bool
    public var limit: Int
    public var remaining: Int
    /// Unix time (seconds) at which the window resets.
    public var resetAt: Int64
    /// Seconds until a retry can succeed (when not allowed).
    public var retryAfter: Int
}

/// Fixed-window counters, GitHub style: each key's window starts with its first request and
/// lasts `windowSeconds`. Cheap (one dictionary entry per active key and operation) and easy
/// for clients to reason about through the headers.
public final class RateLimiter: Sendable {
    public let configuration: RateLimitConfiguration
    private struct Window {
        var start: Int64
        var count: Int
    }
    private let windows = Mutex<[String: Window]>([:])

    public init(configuration: RateLimitConfiguration) {
        self.configuration = configuration
    }

    /// Counts a request of `operation` by `token` in `project`. Nil when no limit applies.
    public func check(_ operation: RateLimitedOperation, token: String, project: String, now: Int64 = currentMicros() / 1_000_000)
        -> RateLimitDecision?
    {
        guard configuration.enabled else { return nil }
        var scopes: [(String, RateLimit)] = []
        if let l = configuration.perToken[operation] { scopes.append(("t:\(token):\(operation.rawValue)", l)) }
        if let l = configuration.perProject[operation] { scopes.append(("p:\(project):\(operation.rawValue)", l)) }
        guard !scopes.isEmpty else { return nil }
        return windows.withLock { w in
            if w.count > 100_000 { w = w.filter { now - $0.value.start < 86_400 } }
            var decision: RateLimitDecision? = nil
            // First see whether every scope has room, then count in all of them.
            for (key, limit) in scopes {
                var window = w[key] ?? Window(start: now, count: 0)
                if now - window.start >= Int64(limit.windowSeconds) { window = Window(start: now, count: 0) }
                let resetAt = window.start + Int64(limit.windowSeconds)
                let allowed = window.count < limit.limit
                let d = RateLimitDecision(
                    allowed: allowed, limit: limit.limit, remaining: max(0, limit.limit - window.count - (allowed ? 1 : 0)),
                    resetAt: resetAt, retryAfter: max(1, Int(resetAt - now)))
                if decision == nil || !d.allowed || (decision!.allowed && d.remaining < decision!.remaining) {
                    if decision == nil || decision!.allowed { decision = d }
                }
                w[key] = window
            }
            if decision!.allowed {
                for (key, _) in scopes { w[key]!.count += 1 }
            }
            return decision
        }
    }
}
