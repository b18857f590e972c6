import ColumnStore
import EventLog
import Foundation
import Hummingbird
import Logging
import NIOCore
import QueryEngine

/// POST /funnels and POST /cohorts: request parsing and validation, the engine on a thread
/// off the cooperative pool, and the document's response shapes plus `data_through`.
extension TallyServer {
    /// Request bodies of analytics endpoints are small; past this they are refused.
    static let maxQueryBodyBytes = 1 << 20

    /// The common path of every analytics endpoint: read scope, the query rate limit, parse
    /// (errors keep the rate-limit headers), a snapshot, the engine off the cooperative pool,
    /// and the response object, to which `data_through` is appended.
    func answer<Query: Sendable, Result: Sendable>(
        _ request: Request, deadline: Bool = true, parse: (Request) async throws -> Query,
        run: @escaping @Sendable (Query, QuerySnapshot) throws -> Result,
        write: (Result, Query, QuerySnapshot, JSONWriter) throws -> Void
    ) async throws -> Response {
        let arrived = ContinuousClock.now
        let key = try authorize(request, scope: .read)
        let headers = try rateLimit(.query, key: key)
        let query: Query
        do {
            query = try await parse(request)
        } catch let error as APIError {
            throw error.with(headers: headers)
        }
        let snapshot = try await snapshot(for: key.projectId, headers: headers)
        if deadline {
            snapshot.deadline = arrived.advanced(by: .milliseconds(Int64(configuration.analyticsTimeoutSeconds * 1000)))
        }
        let result: Result
        do {
            result = try await Self.offPool { try run(query, snapshot) }
        } catch let error as APIError {
            throw error.with(headers: headers)
        } catch let error as QueryError {
            // Well-formed, but past a limit of the engine: unprocessable, never a 500.
            if error == .timeout {
                throw APIError(
                    .unprocessableContent, "timeout",
                    "the query ran past the server's limit of \(configuration.analyticsTimeoutSeconds) s and was cancelled; narrow the date range",
                    headers: headers)
            }
            throw APIError(.unprocessableContent, "memory_budget_exceeded", error.description, headers: headers)
        }
        let out = OutputBuffer(capacity: 2048)
        let w = JSONWriter(out)
        try write(result, query, snapshot, w)
        w.raw(#","data_through":"#)
        w.timestamp(snapshot.dataThrough)
        w.raw("}")
        return Self.json(out, headers: headers)
    }

    func funnels(_ request: Request, context: BasicRequestContext) async throws -> Response {
        try await answer(
            request, parse: { try Self.parseFunnel(try await Self.jsonObject($0)) },
            run: { try FunnelEngine.run($0.1, on: $1) }
        ) { result, named, _, w in
            let (name, query) = named
            let first = result.users.first ?? 0
            w.raw(#"{"funnel":{"name":"#)
            w.string(name)
            w.raw(#","total_users":"#)
            w.int(Int64(first))
            w.raw(#","steps":"#)
            Self.writeSteps(query.steps, users: result.users, medians: result.medianSecondsToConvert, w)
            w.raw(#","completion_rate":"#)
            w.double(first == 0 ? 0 : Self.round(Double(result.users.last ?? 0) / Double(first), 4))
            if query.breakdown != nil {
                w.raw(#","breakdown":["#)
                for (g, group) in result.breakdown.enumerated() {
                    if g > 0 { w.raw(",") }
                    w.raw(#"{"value":"#)
                    if let value = group.value { w.string(value) } else { w.null() }
                    w.raw(#","total_users":"#)
                    w.int(Int64(group.users.first ?? 0))
                    w.raw(#","steps":"#)
                    Self.writeSteps(query.steps, users: group.users, medians: group.medianSecondsToConvert, w)
                    w.raw(#","completion_rate":"#)
                    let n = group.users.first ?? 0
                    w.double(n == 0 ? 0 : Self.round(Double(group.users.last ?? 0) / Double(n), 4))
                    w.raw("}")
                }
                w.raw("]")
            }
            w.raw("}")
        }
    }

    /// The document's `steps` array: name, users, percentage of the first step, and from the
    /// second step on drop_off and median_time_to_convert_seconds.
    static func writeSteps(_ steps: [FunnelStep], users: [Int], medians: [Double?], _ w: JSONWriter) {
        let first = users.first ?? 0
        w.raw("[")
        for (i, step) in steps.enumerated() {
            if i > 0 { w.raw(",") }
            w.raw(#"{"name":"#)
            w.string(step.name)
            w.raw(#","users":"#)
            w.int(Int64(users[i]))
            w.raw(#","percentage":"#)
            w.double(first == 0 ? 0 : Self.round(Double(users[i]) * 100 / Double(first), 2))
            if i > 0 {
                w.raw(#","drop_off":"#)
                w.int(Int64(users[i - 1] - users[i]))
                w.raw(#","median_time_to_convert_seconds":"#)
                if let m = medians[i] { w.double(Self.round(m, 3)) } else { w.null() }
            }
            w.raw("}")
        }
        w.raw("]")
    }

    func cohorts(_ request: Request, context: BasicRequestContext) async throws -> Response {
        try await answer(
            request, parse: { try Self.parseCohorts(try await Self.jsonObject($0)) },
            run: { try RetentionEngine.run($0, on: $1) }
        ) { cohorts, query, _, w in
            w.raw(#"{"cohorts":["#)
            for (i, cohort) in cohorts.enumerated() {
                if i > 0 { w.raw(",") }
                w.raw(#"{"cohort_date":"#)
                w.string(String(Timestamp.format(cohort.start).prefix(10)))
                w.raw(#","users":"#)
                w.int(Int64(cohort.users))
                w.raw(#","retention":{"#)
                for (k, share) in cohort.retention.enumerated() {
                    if k > 0 { w.raw(",") }
                    w.key("\(query.unit.rawValue)_\(k)")
                    w.double(Self.round(share, 4))
                }
                w.raw("}}")
            }
            w.raw("]")
        }
    }

    func conversations(_ request: Request, context: BasicRequestContext) async throws -> Response {
        try await answer(request, parse: Self.parseConversations, run: { try ConversationEngine.run($0, on: $1) }) { report, query, _, w in
            let n = Double(max(report.conversations, 1))
            w.raw(#"{"summary":{"total_conversations":"#)
            w.int(Int64(report.conversations))
            w.raw(#","completed_conversations":"#)
            w.int(Int64(report.completed))
            w.raw(#","average_duration_seconds":"#)
            w.double(Self.round(report.totalDurationSeconds / n, 2))
            w.raw(#","average_messages_per_conversation":"#)
            w.double(Self.round(Double(report.messages) / n, 2))
            w.raw(#","resolution_rate":"#)
            w.double(report.completed == 0 ? 0 : Self.round(Double(report.resolved) / Double(report.completed), 4))
            w.raw(#"},"timeline":["#)
            for (i, b) in report.timeline.enumerated() {
                if i > 0 { w.raw(",") }
                w.raw(#"{"date":"#)
                w.string(b.label)
                w.raw(#","conversations":"#)
                w.int(Int64(b.conversations))
                w.raw(#","messages":"#)
                w.int(Int64(b.messages))
                w.raw(#","unique_users":"#)
                w.int(Int64(b.uniqueUsers))
                w.raw("}")
            }
            w.raw(#"],"topics":["#)
            for (i, t) in report.topics.enumerated() {
                if i > 0 { w.raw(",") }
                w.raw(#"{"topic":"#)
                w.string(t.topic)
                w.raw(#","count":"#)
                w.int(Int64(t.count))
                w.raw(#","percentage":"#)
                w.double(Self.round(Double(t.count) * 100 / n, 2))
                w.raw("}")
            }
            w.raw(#"],"period":{"start":"#)
            w.timestamp(query.start)
            w.raw(#","end":"#)
            w.timestamp(query.end)
            w.raw("}")
        }
    }

    static func parseConversations(_ request: Request) throws -> ConversationQuery {
        let params = request.uri.queryParameters
        let zoneName = params.get("timezone") ?? "UTC"
        guard let zone = TimeZone(identifier: zoneName) else { throw Self.invalid("timezone", "\"\(zoneName)\" is not an IANA time zone name") }
        let groupBy = params.get("group_by") ?? "day"
        guard let unit = Bucketing.Unit(rawValue: groupBy) else { throw Self.invalid("group_by", "must be hour, day, week or month") }
        let (start, end) = try Self.period(params.get("period") ?? "week", startDate: params.get("start_date"), endDate: params.get("end_date"), zone: zone)
        return ConversationQuery(start: start, end: end, botId: params.get("bot_id"), bucketing: Bucketing(unit: unit, timeZone: zone))
    }

    /// `today` (since local midnight), `week` and `month` (the last 7 and 30 days), or
    /// `custom` with `start_date` and `end_date` (dates are whole local days, end included).
    static func period(_ name: String, startDate: String?, endDate: String?, zone: TimeZone, now: Int64 = currentMicros()) throws -> (Int64, Int64) {
        let day: Int64 = 86_400_000_000
        switch name {
        case "today":
            let offset = Int64(zone.secondsFromGMT(for: Date(timeIntervalSince1970: Double(now) / 1e6))) * 1_000_000
            let localMidnight = Int64(PeriodUnit.day.index(ofMicros: now + offset)) * day
            return (localMidnight - offset, now + 1)
        case "week": return (now - 7 * day, now + 1)
        case "month": return (now - 30 * day, now + 1)
        case "custom":
            func bound(_ text: String?, _ field: String, end: Bool) throws -> Int64 {
                guard let text else { throw invalid(field, "required when period is custom") }
                if text.count == 10, let midnight = Timestamp.parse(text + "T00:00:00Z") {
                    let local = end ? midnight + day : midnight
                    return local - Int64(zone.secondsFromGMT(for: Date(timeIntervalSince1970: Double(local) / 1e6))) * 1_000_000
                }
                guard let micros = Timestamp.parse(text) else { throw invalid(field, "\"\(text)\" is not a date (YYYY-MM-DD) or an RFC 3339 timestamp") }
                return micros
            }
            let start = try bound(startDate, "start_date", end: false)
            let end = try bound(endDate, "end_date", end: true)
            guard start < end else { throw invalid("start_date", "must be before end_date") }
            return (start, end)
        default:
            throw invalid("period", "must be today, week, month or custom")
        }
    }

    static let userMetrics = [
        "total_sessions", "total_messages", "average_session_duration", "last_active", "satisfaction_score", "topics_discussed",
    ]

    struct UserQuery: Sendable {
        var userId: String
        var start: Int64
        var end: Int64
        var reference: Int64
        var metrics: [String]
    }

    func userAnalytics(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let userId = context.parameters.get("user_id") ?? ""
        return try await answer(
            request, parse: { try Self.parseUserQuery($0, userId: userId) },
            run: { q, snapshot in
                guard let report = try UserEngine.run(userId: q.userId, start: q.start, end: q.end, reference: q.reference, on: snapshot) else {
                    throw APIError(.notFound, "user_not_found", "no events of user \"\(q.userId)\" in this project")
                }
                return report
            }
        ) { report, q, _, w in
            w.raw(#"{"user_id":"#)
            w.string(q.userId)
            w.raw(#","metrics":{"#)
            for (i, metric) in q.metrics.enumerated() {
                if i > 0 { w.raw(",") }
                w.key(metric)
                switch metric {
                case "total_sessions": w.int(Int64(report.sessions))
                case "total_messages": w.int(Int64(report.messages))
                case "average_session_duration": if let v = report.averageSessionSeconds { w.double(Self.round(v, 1)) } else { w.null() }
                case "last_active": if let t = report.lastActive { w.timestamp(t) } else { w.null() }
                case "satisfaction_score": if let v = report.satisfaction { w.double(Self.round(v, 2)) } else { w.null() }
                default:
                    w.raw("[")
                    for (j, topic) in report.topics.enumerated() {
                        if j > 0 { w.raw(",") }
                        w.string(topic)
                    }
                    w.raw("]")
                }
            }
            let day: Int64 = 86_400_000_000
            let sinceActive = report.lastActive.map { q.reference - $0 } ?? .max
            w.raw(#"},"engagement":{"daily_active":"#)
            w.bool(report.dailyActive)
            w.raw(#","retention_30d":"#)
            w.double(Self.round(Double(report.activeDaysLast30) / 30, 2))
            w.raw(#","churn_risk":"#)
            w.string(sinceActive <= 7 * day ? "low" : sinceActive <= 30 * day ? "medium" : "high")
            w.raw("}")
        }
    }

    static func parseUserQuery(_ request: Request, userId: String) throws -> UserQuery {
        guard !userId.isEmpty else { throw invalid("user_id", "required in the path") }
        let params = request.uri.queryParameters
        let now = currentMicros()
        var start = Int64.min
        var end = now + 1
        var wanted = userMetrics
        if params.get("start_date") != nil || params.get("end_date") != nil {
            (start, end) = try period(
                "custom", startDate: params.get("start_date") ?? "1970-01-01", endDate: params.get("end_date") ?? Timestamp.format(now + 1),
                zone: TimeZone(identifier: "UTC")!)
        }
        if let list = params.get("metrics") {
            wanted = list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            for m in wanted where !userMetrics.contains(m) {
                throw invalid("metrics", "unknown metric \"\(m)\"; known: \(userMetrics.joined(separator: ", "))")
            }
        }
        return UserQuery(userId: userId, start: start, end: end, reference: min(end - 1, now), metrics: wanted)
    }

    func realtime(_ request: Request, context: BasicRequestContext) async throws -> Response {
        try await answer(
            request,
            parse: { request -> Int in
                guard let text = request.uri.queryParameters.get("minutes") else { return 5 }
                guard let m = Int(text), (1...1440).contains(m) else { throw Self.invalid("minutes", "must be a whole number from 1 to 1440") }
                return m
            },
            run: { minutes, snapshot in try RealtimeEngine.run(now: snapshot.dataThrough, minutes: minutes, on: snapshot) }
        ) { report, minutes, snapshot, w in
            let c = report.current
            w.raw(#"{"current":{"active_users":"#)
            w.int(Int64(c.activeUsers))
            w.raw(#","active_conversations":"#)
            w.int(Int64(c.activeConversations))
            w.raw(#","messages_per_minute":"#)
            w.double(Self.round(Double(c.messages) / Double(minutes), 2))
            w.raw(#","average_response_time_ms":"#)
            if c.responseTimes > 0 { w.double(Self.round(c.responseTimeSum / Double(c.responseTimes), 1)) } else { w.null() }
            func change(_ now: Double?, _ before: Double?) {
                guard let now, let before, before > 0 else { return w.null() }
                let percent = Int(((now - before) / before * 100).rounded())
                w.string((percent >= 0 ? "+" : "") + "\(percent)%")
            }
            func mean(_ s: RealtimeReport.Window) -> Double? { s.satisfactions > 0 ? s.satisfactionSum / Double(s.satisfactions) : nil }
            w.raw(#"},"trends":{"users_change":"#)
            change(Double(c.activeUsers), Double(report.dayBefore.activeUsers))
            w.raw(#","conversations_change":"#)
            change(Double(c.activeConversations), Double(report.dayBefore.activeConversations))
            w.raw(#","satisfaction_change":"#)
            change(mean(report.lastHour), mean(report.lastHourDayBefore))
            w.raw(#"},"alerts":["#)
            let normal = Double(report.eventsPast24h) * Double(minutes) / 1440
            if normal > 0 && Double(c.events) > 1.5 * normal {
                w.raw(#"{"type":"high_traffic","message":"#)
                w.string("Traffic \(Int(((Double(c.events) / normal - 1) * 100).rounded()))% above normal")
                w.raw("}")
            }
            w.raw(#"],"timestamp":"#)
            w.timestamp(snapshot.dataThrough)
        }
    }

    // MARK: - Plumbing

    func snapshot(for project: String, headers: HTTPFields) async throws -> QuerySnapshot {
        do {
            let store = try logs.store(for: project)
            let log = try logs.log(for: project)
            return try await Self.offPool { try QuerySnapshot(store: store, log: log) }
        } catch {
            logger.error("cannot read project data", metadata: ["project": "\(project)", "error": "\(error)"])
            throw APIError(.serviceUnavailable, "storage_unavailable", "the project's data cannot be read", headers: headers)
        }
    }

    /// Runs blocking, CPU-heavy work on a Dispatch thread, so request handling on the
    /// cooperative pool never waits behind a scan.
    static func offPool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global(qos: .userInitiated).async {
                let started = ContinuousClock.now
                let result = Result { try work() }
                // A long query has usually decoded and freed hundreds of MiB.
                if ContinuousClock.now - started > .milliseconds(100) { FreedMemory.giveBack() }
                continuation.resume(with: result)
            }
        }
    }

    static func jsonObject(_ request: Request) async throws -> [String: Any] {
        var request = request
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: maxQueryBodyBytes)
        } catch is NIOTooManyBytesError {
            throw APIError(.contentTooLarge, "payload_too_large", "request body is larger than \(maxQueryBodyBytes) bytes")
        }
        guard let object = try? JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any] else {
            throw APIError(.badRequest, "invalid_json", "the request body must be a JSON object")
        }
        return object
    }

    static func round(_ v: Double, _ digits: Int) -> Double {
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        return (v * scale).rounded() / scale
    }

    static func invalid(_ field: String, _ reason: String) -> APIError {
        APIError(.badRequest, "invalid_field", "\(field): \(reason)")
    }

    /// `{"start": "2024-01-01", "end": "2024-01-31"}`: dates cover whole UTC days (the end
    /// day included); full timestamps are taken as given, start inclusive and end exclusive.
    static func parseDateRange(_ value: Any?, field: String = "date_range") throws -> (Int64, Int64) {
        guard let range = value as? [String: Any] else { throw invalid(field, "required, an object with start and end") }
        func bound(_ key: String, end: Bool) throws -> Int64 {
            guard let text = range[key] as? String else { throw invalid("\(field).\(key)", "required, a date (YYYY-MM-DD) or an RFC 3339 timestamp") }
            if text.count == 10, let day = Timestamp.parse(text + "T00:00:00Z") { return end ? day + 86_400_000_000 : day }
            guard let micros = Timestamp.parse(text) else {
                throw invalid("\(field).\(key)", "\"\(text)\" is not a date (YYYY-MM-DD) or an RFC 3339 timestamp")
            }
            return micros
        }
        let start = try bound("start", end: false)
        let end = try bound("end", end: true)
        guard start < end else { throw invalid(field, "start must be before end") }
        return (start, end)
    }

    static func parseFilters(_ value: Any?, field: String) throws -> [PropertyFilter] {
        guard let value else { return [] }
        guard let list = value as? [Any] else { throw invalid(field, "must be a list of filters") }
        return try list.enumerated().map { i, item in
            let path = "\(field)[\(i)]"
            guard let f = item as? [String: Any] else { throw invalid(path, "must be an object with property, operator and value") }
            guard let property = f["property"] as? String, !property.isEmpty else { throw invalid("\(path).property", "required, a string") }
            guard let opText = f["operator"] as? String, let op = FilterOperator(rawValue: opText) else {
                throw invalid("\(path).operator", "must be one of \(FilterOperator.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            var parsedValue: FilterValue? = nil
            if op.needsValue {
                guard let raw = f["value"], let v = Self.filterValue(raw) else { throw invalid("\(path).value", "required for \(opText): a string, number, boolean or list") }
                if op == .isIn || op == .notIn {
                    guard case .list = v else { throw invalid("\(path).value", "\(opText) takes a list") }
                }
                parsedValue = v
            }
            return PropertyFilter(property: property, op: op, value: parsedValue)
        }
    }

    static func filterValue(_ raw: Any) -> FilterValue? {
        if let n = raw as? NSNumber {
            // JSONSerialization gives booleans as NSNumbers too, of C type "c" (char).
            if String(cString: n.objCType) == "c" { return .bool(n.boolValue) }
            return .number(n.doubleValue)
        }
        if let s = raw as? String { return .string(s) }
        if let list = raw as? [Any] {
            let values = list.compactMap(filterValue)
            return values.count == list.count ? .list(values) : nil
        }
        return nil
    }

    static func parseFunnel(_ body: [String: Any]) throws -> (String, FunnelQuery) {
        let name = body["name"] as? String ?? "funnel"
        guard let rawSteps = body["steps"] as? [Any] else { throw invalid("steps", "required, a list of steps") }
        guard (2...FunnelQuery.maxSteps).contains(rawSteps.count) else {
            throw APIError(.unprocessableContent, "invalid_funnel", "a funnel needs 2 to \(FunnelQuery.maxSteps) steps, got \(rawSteps.count)")
        }
        let steps = try rawSteps.enumerated().map { i, raw -> FunnelStep in
            guard let step = raw as? [String: Any] else { throw invalid("steps[\(i)]", "must be an object with name and event") }
            guard let event = step["event"] as? String, !event.isEmpty else { throw invalid("steps[\(i)].event", "required, an event name") }
            let stepName = step["name"] as? String ?? event
            return FunnelStep(name: stepName, event: event, filters: try parseFilters(step["filters"], field: "steps[\(i)].filters"))
        }
        let (start, end) = try parseDateRange(body["date_range"])
        var query = FunnelQuery(steps: steps, start: start, end: end)
        if let window = body["conversion_window"] {
            guard let text = window as? String, let seconds = parseWindow(text), seconds > 0 else {
                throw invalid("conversion_window", "must be a duration such as \"1h\", \"24h\" or \"14d\"")
            }
            query.window = Int64(seconds) * 1_000_000
        }
        if let order = body["order"] {
            guard let text = order as? String, text == "ordered" || text == "strict" else { throw invalid("order", "must be \"ordered\" or \"strict\"") }
            query.strict = text == "strict"
        }
        if let breakdown = body["breakdown"], !(breakdown is NSNull) {
            guard let key = breakdown as? String, !key.isEmpty else { throw invalid("breakdown", "must be a property name") }
            query.breakdown = key
        }
        if let raw = body["exclusions"], !(raw is NSNull) {
            guard let list = raw as? [Any], list.count <= FunnelQuery.maxExclusions else {
                throw invalid("exclusions", "must be a list of at most \(FunnelQuery.maxExclusions) exclusion steps")
            }
            query.exclusions = try list.enumerated().map { i, item in
                let field = "exclusions[\(i)]"
                guard let x = item as? [String: Any] else { throw invalid(field, "must be an object with event, from_step and to_step") }
                guard let event = x["event"] as? String, !event.isEmpty else { throw invalid(field + ".event", "required, an event name") }
                guard let from = x["from_step"] as? Int, let to = x["to_step"] as? Int, from >= 0, from < to, to < steps.count else {
                    throw invalid(field, "from_step and to_step must be step positions (0-based) with from_step < to_step < \(steps.count)")
                }
                return FunnelExclusion(event: event, filters: try parseFilters(x["filters"], field: field + ".filters"), fromStep: from, toStep: to)
            }
        }
        return (name, query)
    }

    static func parseWindow(_ text: String) -> Int? {
        let units: [(Character, Int)] = [("w", 604_800), ("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)]
        guard let last = text.last, let scale = units.first(where: { $0.0 == last })?.1, let n = Int(text.dropLast()) else { return nil }
        return n.multipliedReportingOverflow(by: scale).overflow ? nil : n * scale
    }

    static func parseCohorts(_ body: [String: Any]) throws -> CohortQuery {
        let type = body["cohort_type"] as? String ?? "acquisition"
        guard type == "acquisition" else { throw invalid("cohort_type", "only \"acquisition\" cohorts exist") }
        let metric = body["metric"] as? String ?? "retention"
        guard metric == "retention" else { throw invalid("metric", "only \"retention\" is measured") }
        let groupBy = body["group_by"] as? String ?? "week"
        guard let unit = PeriodUnit(rawValue: groupBy) else { throw invalid("group_by", "must be day, week or month") }
        let (start, end) = try parseDateRange(body["date_range"])
        var query = CohortQuery(unit: unit, start: start, end: end)
        if let periods = body["periods"] {
            guard let n = periods as? Int, (0...1000).contains(n) else { throw invalid("periods", "must be a whole number from 0 to 1000") }
            query.periods = n
        }
        for (field, keyPath) in [("start_event", \CohortQuery.startEvent), ("return_event", \CohortQuery.returnEvent)] {
            if let value = body[field] {
                guard let name = value as? String, !name.isEmpty else { throw invalid(field, "must be an event name") }
                query[keyPath: keyPath] = name
            }
        }
        return query
    }
}

extension APIError {
    func with(headers extra: HTTPFields) -> APIError {
        var copy = self
        for field in extra where copy.headers[field.name] == nil { copy.headers.append(field) }
        return copy
    }
}
