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

    func funnels(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let key = try authorize(request, scope: .read)
        let headers = try rateLimit(.query, key: key)
        let body = try await Self.jsonObject(request, headers: headers)
        let query: FunnelQuery
        let name: String
        do {
            (name, query) = try Self.parseFunnel(body)
        } catch let error as APIError {
            throw error.with(headers: headers)
        }
        let snapshot = try await snapshot(for: key.projectId, headers: headers)
        let result = try await Self.offPool { try FunnelEngine.run(query, on: snapshot) }
        let out = OutputBuffer(capacity: 1024)
        let w = JSONWriter(out)
        let first = result.users.first ?? 0
        w.raw(#"{"funnel":{"name":"#)
        w.string(name)
        w.raw(#","total_users":"#)
        w.int(Int64(first))
        w.raw(#","steps":["#)
        for (i, step) in query.steps.enumerated() {
            if i > 0 { w.raw(",") }
            w.raw(#"{"name":"#)
            w.string(step.name)
            w.raw(#","users":"#)
            w.int(Int64(result.users[i]))
            w.raw(#","percentage":"#)
            w.double(first == 0 ? 0 : Self.round(Double(result.users[i]) * 100 / Double(first), 2))
            if i > 0 {
                w.raw(#","drop_off":"#)
                w.int(Int64(result.users[i - 1] - result.users[i]))
                w.raw(#","median_time_to_convert_seconds":"#)
                if let m = result.medianSecondsToConvert[i] { w.double(Self.round(m, 3)) } else { w.null() }
            }
            w.raw("}")
        }
        w.raw(#"],"completion_rate":"#)
        w.double(first == 0 ? 0 : Self.round(Double(result.users.last ?? 0) / Double(first), 4))
        w.raw(#"},"data_through":"#)
        w.timestamp(snapshot.dataThrough)
        w.raw("}")
        return Self.json(out, headers: headers)
    }

    func cohorts(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let key = try authorize(request, scope: .read)
        let headers = try rateLimit(.query, key: key)
        let body = try await Self.jsonObject(request, headers: headers)
        let query: CohortQuery
        do {
            query = try Self.parseCohorts(body)
        } catch let error as APIError {
            throw error.with(headers: headers)
        }
        let snapshot = try await snapshot(for: key.projectId, headers: headers)
        let cohorts = try await Self.offPool { try RetentionEngine.run(query, on: snapshot) }
        let out = OutputBuffer(capacity: 1024)
        let w = JSONWriter(out)
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
        w.raw(#"],"data_through":"#)
        w.timestamp(snapshot.dataThrough)
        w.raw("}")
        return Self.json(out, headers: headers)
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
            DispatchQueue.global(qos: .userInitiated).async { continuation.resume(with: Result { try work() }) }
        }
    }

    static func jsonObject(_ request: Request, headers: HTTPFields) async throws -> [String: Any] {
        var request = request
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: maxQueryBodyBytes)
        } catch is NIOTooManyBytesError {
            throw APIError(.contentTooLarge, "payload_too_large", "request body is larger than \(maxQueryBodyBytes) bytes", headers: headers)
        }
        guard let object = try? JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any] else {
            throw APIError(.badRequest, "invalid_json", "the request body must be a JSON object", headers: headers)
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
        for unsupported in ["breakdown", "exclusions"] where body[unsupported] != nil {
            throw APIError(.badRequest, "unsupported_field", "\(unsupported): not supported yet by this server")
        }
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
