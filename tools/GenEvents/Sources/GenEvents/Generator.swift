#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

enum Kind {
    static let userRegistered: UInt8 = 0
    static let profileCompleted: UInt8 = 1
    static let pageView: UInt8 = 2
    static let search: UInt8 = 3
    static let buttonClicked: UInt8 = 4
    static let purchaseCompleted: UInt8 = 5
    static let conversationStarted: UInt8 = 6  // this and every kind after it belong to a conversation
    static let messageReceived: UInt8 = 7
    static let messageSent: UInt8 = 8
    static let fallbackTriggered: UInt8 = 9
    static let handoff: UInt8 = 10
    static let conversationEnded: UInt8 = 11
    static let names = [
        "user_registered", "profile_completed", "page_view", "search", "button_clicked",
        "purchase_completed", "conversation_started", "message_received", "message_sent",
        "fallback_triggered", "handoff", "conversation_ended",
    ]
}

/// One generated event before it is written: 32 bytes, no strings. `p0`, `p1` and `a` are
/// per-kind parameters (indices into the vocabulary, a response time, a price in cents...).
struct Event {
    var ts: Int64
    var session: UInt64
    var user: Int32
    var a: Int32
    var kind: UInt8
    var bot: UInt8
    var p0: UInt8
    var p1: UInt8
    var flags: UInt8  // bit 0: carries an event_id
}

/// User state bits.
private let registered: UInt8 = 1
private let profilePending: UInt8 = 2

private let msPerDay: Int64 = 86_400_000
/// Where the per-user-day event budget settles when the options allow it (see `plan`).
private let targetEventsPerUserDay = 8.0

final class Generator {
    let o: Options
    private var rng: Rng
    private let w: ByteWriter

    // Samplers.
    private let methodAlias = Alias(Vocabulary.signupMethodWeights)
    private let referrerAlias = Alias(Vocabulary.externalReferrerWeights)
    private let currencyAlias = Alias(Vocabulary.currencyWeights)
    private let pageAlias = Alias(zipfWeights(Vocabulary.pages.count, 1.0))
    private let buttonAlias = Alias(zipfWeights(Vocabulary.buttons.count, 0.9))
    private let hourAlias = Alias([
        2, 1.5, 1, 1, 1, 1.5, 2.5, 4, 6, 7, 7.5, 7.5, 7, 7, 7, 7, 6.5, 6, 5.5, 5, 4.5, 4, 3.5, 2.5,
    ])
    private let satisfiedAlias = Alias([2, 3, 12, 35, 48])  // satisfaction 1...5 when resolved
    private let unsatisfiedAlias = Alias([30, 28, 24, 12, 6])  // ... and when not
    private let lateDelayAlias = Alias([40, 35, 15, 10])  // days until a late batch arrives
    private let botAlias: Alias
    private var botTopicAlias: [Alias] = []
    private var botLogMedian: [Double] = []
    private var botSigma: [Double] = []
    private var botFallback: [Double] = []
    private var botResolve: [Double] = []

    // Users, by index; user ids are "user_<index+1>", numbered in order of acquisition.
    private var uChannel: [UInt8]
    private var uPlan: [UInt8]
    private var uBot: [UInt8]
    private var uState: [UInt8]
    private var uAnon: [UInt64]  // 0: no anonymous_id
    private var uLast: [Int64]  // time of the user's latest event so far

    // The plan.
    private var firstUser: [Int]  // users acquired on day d: firstUser[d] ..< firstUser[d + 1]
    private var returning: [[Int32]]  // users coming back on day d
    private var budget: [Int]  // events generated on day d (before moving late ones)
    private(set) var retentionScale = 1.0

    // Generation state.
    private var cur: [Event] = []
    private var next: [Event] = []
    private var late: [[Event]]
    private var keys: [UInt64] = []
    private var day = 0
    private var dayStart: Int64 = 0
    private var dayEnd: Int64 = 0
    private var release = -1  // the current activity is late: the day its events are written
    private var activityFlags: UInt8 = 0
    private var gapScale = 1.0
    private var lengthScale = 1.0
    private var sessionCounter: UInt64 = 0
    private var eventIdCounter: UInt64 = 0
    private let sessionSalt: UInt64
    private let eventIdSalt: UInt64
    private let querySalt: UInt64

    // Statistics for --stats.
    private(set) var kindCount = [Int](repeating: 0, count: Kind.names.count)
    private(set) var lateCount = 0
    private(set) var eventIdCount = 0
    private(set) var userDaysPlanned = 0
    private(set) var userDaysServed = 0

    // JSON fragments.
    private let fPrefix: [Frag]
    private let fAnon, fConv, fSess, fTimestamp, fEventId, fProperties: Frag
    private let fBot: [Frag]
    private let fTail: [Frag]  // channel * 3 + plan
    private let fMethod: [Frag]
    private let fFields: Frag
    private let fPage, fPageComma, fRefExternal, fRefPage: [Frag]
    private let fQueryOpen, fQueryClose: Frag
    private let fHead, fVerb, fNoun, fModifier: [Frag]
    private let fButton: [Frag]
    private let fValue, fItems: Frag
    private let fCurrency: [Frag]
    private let fTopic, fTopicComma, fIntentComma, fReasonComma: [Frag]
    private let fResponseTime, fResolvedTrue, fResolvedFalse, fSatisfaction: Frag

    init(options: Options, writer makeWriter: ([UInt8]) -> ByteWriter) {
        o = options
        rng = Rng(seed: options.seed, stream: 2)
        sessionSalt = mix64(options.seed ^ 0x5E55_1011)
        eventIdSalt = mix64(options.seed ^ 0xE7E1_71D5)
        querySalt = mix64(options.seed ^ 0x0951_EA7C)

        // Bots: the named profiles first, then seeded variations.
        var botRng = Rng(seed: options.seed, stream: 3)
        var botNames: [String] = []
        let baseTopic = zipfWeights(Vocabulary.topics.count, 0.9)
        var topicAliases: [Alias] = []
        for b in 0..<options.bots {
            var p: (median: Double, sigma: Double, fallback: Double, resolve: Double, topic: Int)
            if b < Vocabulary.botProfiles.count {
                p = Vocabulary.botProfiles[b]
                botNames.append(Vocabulary.botNames[b])
            } else {
                p = (
                    300 + 1200 * botRng.unit(), 0.4 + 0.4 * botRng.unit(), 0.04 + 0.12 * botRng.unit(),
                    0.6 + 0.28 * botRng.unit(), botRng.below(Vocabulary.topics.count)
                )
                botNames.append("bot_\(b + 1)")
            }
            botLogMedian.append(log(p.median))
            botSigma.append(p.sigma)
            botFallback.append(p.fallback)
            botResolve.append(p.resolve)
            var weights = baseTopic
            weights[p.topic] *= 4
            topicAliases.append(Alias(weights))
        }
        botTopicAlias = topicAliases
        botAlias = Alias(zipfWeights(options.bots, 1.0))

        // Fragments.
        let f = Fragments()
        fPrefix = f.add(Kind.names) { #"{"event_name":"\#($0)","user_id":"user_"# }
        fAnon = f.add(#","anonymous_id":"anon_"#)
        fConv = f.add(#","session_id":"conv_"#)
        fSess = f.add(#","session_id":"sess_"#)
        fTimestamp = f.add(#","timestamp":""#)
        fEventId = f.add(#","event_id":"cli_"#)
        fProperties = f.add(#","properties":{"#)
        fBot = f.add(botNames) { #","bot_id":"\#($0)""# }
        var tails: [Frag] = []
        for c in Vocabulary.channels {
            for p in Vocabulary.plans { tails.append(f.add(#","channel":"\#(c)","plan":"\#(p)"}}"# + "\n")) }
        }
        fTail = tails
        fMethod = f.add(Vocabulary.signupMethods) { #""method":"\#($0)""# }
        fFields = f.add(#""fields_completed":"#)
        fPage = f.add(Vocabulary.pages) { #""page":"\#($0)""# }
        fPageComma = f.add(Vocabulary.pages) { #","page":"\#($0)""# }
        fRefExternal = f.add(Vocabulary.externalReferrers) { #","referrer":"\#($0)""# }
        fRefPage = f.add(Vocabulary.pages) { #","referrer":"\#($0)""# }
        fQueryOpen = f.add(#""query":""#)
        fQueryClose = f.add(#"","results_count":"#)
        fHead = f.add(Vocabulary.headQueries) { $0 }
        fVerb = f.add(Vocabulary.queryVerbs) { $0 }
        fNoun = f.add(Vocabulary.queryNouns) { $0 }
        fModifier = f.add(Vocabulary.queryModifiers) { $0 }
        fButton = f.add(Vocabulary.buttons) { #""button":"\#($0)""# }
        fValue = f.add(#""value":"#)
        fItems = f.add(#","items":"#)
        fCurrency = f.add(Vocabulary.currencies) { #","currency":"\#($0)""# }
        fTopic = f.add(Vocabulary.topics) { #""topic":"\#($0)""# }
        fTopicComma = f.add(Vocabulary.topics) { #","topic":"\#($0)""# }
        fIntentComma = f.add(Vocabulary.intents) { #","intent":"\#($0)""# }
        fReasonComma = f.add(Vocabulary.handoffReasons) { #","reason":"\#($0)""# }
        fResponseTime = f.add(#""response_time_ms":"#)
        fResolvedTrue = f.add(#""resolved":true"#)
        fResolvedFalse = f.add(#""resolved":false"#)
        fSatisfaction = f.add(#","satisfaction":"#)
        w = makeWriter(f.bytes)

        let n = options.users
        uChannel = [UInt8](repeating: 0, count: n)
        uPlan = [UInt8](repeating: 0, count: n)
        uBot = [UInt8](repeating: 0, count: n)
        uState = [UInt8](repeating: 0, count: n)
        uAnon = [UInt64](repeating: 0, count: n)
        uLast = [Int64](repeating: 0, count: n)
        firstUser = []
        returning = []
        budget = []
        late = [[Event]](repeating: [], count: options.days)
        plan()
    }

    // MARK: - Planning

    /// Decides who exists and who shows up on which day, then splits the event count over
    /// the days in proportion to the people active on each.
    private func plan() {
        var r = Rng(seed: o.seed, stream: 1)
        let days = o.days
        let users = o.users

        // Acquisitions grow threefold over the range, dip at weekends, and wobble a little.
        let acquisitionWeekday = [0.68, 1.05, 1.10, 1.10, 1.05, 0.95, 0.72]  // Sunday first
        var weights = [Double](repeating: 0, count: days)
        for d in 0..<days {
            let growth = 1 + 2 * Double(d) / Double(max(days - 1, 1))
            weights[d] = growth * acquisitionWeekday[weekday(o.firstDay + d)] * (0.88 + 0.24 * r.unit())
        }
        let totalWeight = weights.reduce(0, +)
        firstUser = [Int](repeating: 0, count: days + 1)
        var cumulative = 0.0
        for d in 0..<days {
            cumulative += weights[d]
            firstUser[d + 1] = d == days - 1 ? users : min(users, Int((Double(users) * cumulative / totalWeight).rounded()))
        }

        // Fixed attributes, and how strongly each user comes back.
        let channelAlias = Alias(Vocabulary.channelWeights)
        let planAlias = Alias(Vocabulary.planWeights)
        let loyalty = [2.6, 0.9, 0.15]  // engaged, regular, casual
        let loyaltyAlias = Alias([0.2, 0.5, 0.3])
        var userLoyalty = [Double](repeating: 0, count: users)
        var acquired = [Int32](repeating: 0, count: users)
        for d in 0..<days {
            for u in firstUser[d]..<firstUser[d + 1] { acquired[u] = Int32(d) }
        }
        for u in 0..<users {
            let channel = channelAlias.sample(&r)
            uChannel[u] = UInt8(channel)
            uPlan[u] = UInt8(planAlias.sample(&r))
            uBot[u] = UInt8(botAlias.sample(&r))
            userLoyalty[u] = loyalty[loyaltyAlias.sample(&r)]
            if r.chance(0.55) { uState[u] = profilePending }
            // Web visitors carry a device id from the browser SDK on their product events.
            if channel == 0 && r.chance(0.7) { uAnon[u] = mix64(UInt64(u) ^ mix64(o.seed ^ 0xA11_0001)) | 1 }
        }

        // Return probability on the a-th day after acquisition: 0.32 a^-0.55 (about 30% on
        // day 1, 10% a week later, 5% a month later), times the user's loyalty, the weekday,
        // and one scale factor (0.15...2) chosen so that a user-day averages about 8 events.
        var curve = [Double](repeating: 0, count: days)
        var curveSum = [Double](repeating: 0, count: days)
        for a in 1..<max(days, 1) {
            curve[a] = 0.32 * pow(Double(a), -0.55)
            curveSum[a] = curveSum[a - 1] + curve[a]
        }
        var expectedReturns = 0.0
        for u in 0..<users { expectedReturns += userLoyalty[u] * curveSum[days - 1 - Int(acquired[u])] }
        let wanted = Double(o.events) / targetEventsPerUserDay - Double(users)
        retentionScale = expectedReturns > 0 ? min(2, max(0.15, wanted / expectedReturns)) : 1
        let returnWeekday = [0.75, 1.05, 1.08, 1.08, 1.05, 0.97, 0.78]
        let dayFactor = (0..<days).map { returnWeekday[weekday(o.firstDay + $0)] }
        returning = [[Int32]](repeating: [], count: days)
        for u in 0..<users {
            let acq = Int(acquired[u])
            let k = retentionScale * userLoyalty[u]
            var d = acq + 1
            while d < days {
                if r.unit() < min(0.95, k * curve[d - acq] * dayFactor[d]) { returning[d].append(Int32(u)) }
                d += 1
            }
        }

        // Events per day in proportion to the people active that day; exact total.
        var active = [Int](repeating: 0, count: days)
        var totalActive = 0
        for d in 0..<days {
            active[d] = firstUser[d + 1] - firstUser[d] + returning[d].count
            totalActive += active[d]
        }
        budget = [Int](repeating: 0, count: days)
        var before = 0
        var cumulativeActive = 0
        for d in 0..<days {
            cumulativeActive += active[d]
            let upTo = totalActive == 0 ? 0 : Int((Double(o.events) * Double(cumulativeActive) / Double(totalActive)).rounded(.down))
            budget[d] = (d == days - 1 ? o.events : upTo) - before
            before += budget[d]
        }
        if totalActive == 0 { budget[days - 1] = 0 }
    }

    // MARK: - Generation

    func run() {
        for d in 0..<o.days {
            day = d
            dayStart = Int64(o.firstDay + d) * msPerDay
            dayEnd = dayStart + msPerDay
            swap(&cur, &next)
            generateDay(d)
            writeDay(d)
        }
        w.close()
    }

    private func generateDay(_ d: Int) {
        let total = budget[d]
        let newcomers = firstUser[d + 1] - firstUser[d]
        var back = returning[d]
        returning[d] = []
        let active = newcomers + back.count
        guard total > 0, active > 0 else { return }
        rng.shuffle(&back)
        userDaysPlanned += active
        let mean = Double(total) / Double(active)
        // With many events per user-day (few users, many events) everything a user does
        // speeds up, so that a user-day still fits in about a day.
        gapScale = min(1, 100 / mean)
        // With few events per user-day (many users, few events) sessions and conversations
        // get shorter rather than most people missing their day.
        lengthScale = min(1, max(0.25, mean / targetEventsPerUserDay))
        var left = total
        // Activities keep their natural length, so a user-day overshoots its target by part
        // of an activity; targets are lowered by the running overshoot and follow what is
        // left of the day's budget, which keeps the day's people and events in step.
        var overshoot = 2.0
        // Newcomers first: if the day runs out of budget, it is returning users who miss out.
        var i = 0
        while left > 0 && i < active {
            let u = i < newcomers ? firstUser[d] + i : Int(back[i - newcomers])
            let target = userDayTarget(Double(left) / Double(active - i) - overshoot)
            let start = dayStart + Int64(hourAlias.sample(&rng)) * 3_600_000 + Int64(rng.below(3_600_000))
            let used = userDay(u, start, target, limit: left)
            overshoot += 0.02 * (Double(used - target) - overshoot)
            left -= used
            i += 1
        }
        userDaysServed += i
        // Budget to spare: more visits, later the same day, by people already here.
        while left > 0 {
            let j = rng.below(active)
            let u = j < newcomers ? firstUser[d] + j : Int(back[j - newcomers])
            let target = userDayTarget(mean - overshoot)
            var start = uLast[u] + activityGap()
            if start >= dayEnd { start = dayStart + Int64(hourAlias.sample(&rng)) * 3_600_000 + Int64(rng.below(3_600_000)) }
            left -= userDay(u, start, target, limit: left)
        }
    }

    /// A user-day's target number of events: log-normal around `mean` (at least 1).
    @inline(__always) private func userDayTarget(_ mean: Double) -> Int {
        let m = exp(0.6 * rng.normal() - 0.18)  // mean 1
        return max(1, Int(max(1, mean) * m + rng.unit()))
    }

    @inline(__always) private func activityGap() -> Int64 {
        let g = rng.logNormal(median: 2_400_000, sigma: 1.0) * gapScale
        return Int64(min(21_600_000, max(1000, g)))
    }

    /// One user's day: activities (product sessions and conversations), each starting after
    /// the previous one ended, until `target` events are reached; never more than `limit`.
    /// No activity starts after midnight (what is left of the day's budget goes to others),
    /// so only activities already under way run into the next day.
    /// Returns the number of events generated.
    private func userDay(_ u: Int, _ start: Int64, _ target: Int, limit: Int) -> Int {
        var used = 0
        var t = max(start, uLast[u] + 1000)
        while used < target && used < limit {
            if used > 0 && t >= dayEnd { break }
            let room = limit - used
            // About 0.5% of activities (so about 0.5% of events) come from a client that was
            // offline: their events are written in a batch at the end of this day or up to
            // three days later.
            release = rng.chance(0.005) ? min(day + lateDelayAlias.sample(&rng), o.days - 1) : -1
            // About 5% come from an SDK that sends its own idempotency keys.
            activityFlags = rng.chance(0.05) ? 1 : 0
            if uState[u] & registered != 0 && room >= 4
                && rng.chance(Vocabulary.conversationShare[Int(uChannel[u])])
            {
                used += conversation(u, t, room)
            } else {
                used += productSession(u, t, room)
            }
            t = uLast[u] + activityGap()
        }
        release = -1
        return used
    }

    @inline(__always) private func newSession() -> UInt64 {
        sessionCounter &+= 1
        return mix64(sessionCounter ^ sessionSalt)
    }

    @inline(__always) private func emit(
        _ ts: Int64,
        _ session: UInt64,
        _ u: Int,
        _ kind: UInt8,
        bot: UInt8 = 255,
        _ p0: Int = 0,
        _ p1: Int = 0,
        a: Int = 0
    ) {
        let e = Event(
            ts: ts,
            session: session,
            user: Int32(truncatingIfNeeded: u),
            a: Int32(truncatingIfNeeded: a),
            kind: kind,
            bot: bot,
            p0: UInt8(truncatingIfNeeded: p0),
            p1: UInt8(truncatingIfNeeded: p1),
            flags: activityFlags
        )
        if release >= 0 {
            late[release].append(e)
            lateCount += 1
        } else if ts >= dayEnd {
            next.append(e)
        } else {
            cur.append(e)
        }
    }

    @inline(__always) private func stepGap() -> Int64 {
        Int64(min(900_000, max(400 * gapScale, rng.logNormal(median: 18_000, sigma: 1.0) * gapScale)))
    }

    /// A web session: registration on the user's first appearance, then page views,
    /// searches, clicks, and now and then a purchase funnel. At most `maxEvents` events, at least one.
    private func productSession(_ u: Int, _ start: Int64, _ maxEvents: Int) -> Int {
        let sid = newSession()
        var t = start
        var used = 0
        if uState[u] & registered == 0 {
            emit(t, sid, u, Kind.userRegistered, methodAlias.sample(&rng))
            uState[u] |= registered
            used = 1
            if uState[u] & profilePending != 0 && used < maxEvents && rng.chance(0.65) {
                t += stepGap() * 3
                emit(t, sid, u, Kind.profileCompleted, 3 + rng.below(6))
                uState[u] &= ~profilePending
                used += 1
            }
            // Bot-channel users register through the bot; their day goes on in a conversation.
            if uChannel[u] != 0 || used >= maxEvents {
                uLast[u] = t
                return used
            }
        }
        let n = min(maxEvents - used, 1 + rng.geometric(mean: 4.5 * lengthScale))
        enum Mode { case browse, search, buy }
        var mode = Mode.browse
        let roll = rng.unit()
        if roll < Vocabulary.buyShare[Int(uPlan[u])] {
            mode = .buy
        } else if roll < 0.33 {
            mode = .search
        }
        var page = -1
        var step = 0
        var searched = false
        for _ in 0..<n {
            t += stepGap()
            if uState[u] & profilePending != 0 && rng.chance(0.06) {
                emit(t, sid, u, Kind.profileCompleted, 3 + rng.below(6))
                uState[u] &= ~profilePending
                continue
            }
            if mode == .buy && step > 0 && step < 5 && rng.chance(0.15) { mode = .browse }  // abandoned
            switch mode {
            case .buy:
                switch step {
                case 0:
                    emit(t, sid, u, Kind.pageView, Vocabulary.pagePricing, referrer(page))
                    page = Vocabulary.pagePricing
                case 1:
                    let b = rng.chance(0.5) ? Vocabulary.buttonUpgrade : Vocabulary.buttonAddToCart
                    emit(t, sid, u, Kind.buttonClicked, b, page)
                case 2:
                    emit(t, sid, u, Kind.pageView, Vocabulary.pageCheckout, referrer(page))
                    page = Vocabulary.pageCheckout
                case 3:
                    emit(t, sid, u, Kind.buttonClicked, Vocabulary.buttonPayNow, page)
                case 4:
                    emit(
                        t,
                        sid,
                        u,
                        Kind.purchaseCompleted,
                        currencyAlias.sample(&rng),
                        1 + min(rng.geometric(mean: 0.7), 9),
                        a: price(Int(uPlan[u]))
                    )
                default:
                    emit(t, sid, u, Kind.pageView, Vocabulary.pageConfirmation, referrer(page))
                    page = Vocabulary.pageConfirmation
                    mode = .browse
                }
                step += 1
            case .search:
                if !searched || rng.chance(0.35) {
                    emit(t, sid, u, Kind.search, a: queryRank())
                    searched = true
                } else {
                    let p = pageAlias.sample(&rng)
                    emit(t, sid, u, Kind.pageView, p, referrer(page))
                    page = p
                    searched = false
                }
            case .browse:
                if page >= 0 && rng.chance(0.3) {
                    emit(t, sid, u, Kind.buttonClicked, buttonAlias.sample(&rng), page)
                } else {
                    let p = pageAlias.sample(&rng)
                    emit(t, sid, u, Kind.pageView, p, referrer(page))
                    page = p
                }
            }
        }
        uLast[u] = t
        return used + n
    }

    /// Referrer code: external sources for a session's first page, else the previous page.
    @inline(__always) private func referrer(_ previous: Int) -> Int {
        previous < 0 ? referrerAlias.sample(&rng) : 128 + previous
    }

    /// Price in cents: log-normal around $29 (x4 for enterprise), with shop-like endings.
    private func price(_ plan: Int) -> Int {
        let dollars = min(20_000, max(1, Int(rng.logNormal(median: plan == 2 ? 120 : 29, sigma: 0.8))))
        let cents = [99, 0, 50, 95, 49][min(rng.geometric(mean: 0.8), 4)]
        return (cents == 0 ? dollars : dollars - 1) * 100 + cents
    }

    /// Log-uniform rank: P(rank) ~ 1/rank, so the head repeats and the tail is mostly unique.
    @inline(__always) private func queryRank() -> Int {
        let x = exp(rng.unit() * log(Double(Vocabulary.queryRanks) + 1)) - 1
        return min(Vocabulary.queryRanks - 1, Int(x))
    }

    /// A conversation with one bot, per conventions.md: started, message pairs, maybe
    /// fallbacks and a handoff, usually an end. At most `maxEvents` (>= 4) events.
    private func conversation(_ u: Int, _ start: Int64, _ maxEvents: Int) -> Int {
        let sid = newSession()
        let bot = rng.chance(0.85) ? Int(uBot[u]) : botAlias.sample(&rng)
        let b8 = UInt8(bot)
        var topic = botTopicAlias[bot].sample(&rng)
        var t = start
        emit(t, sid, u, Kind.conversationStarted, bot: b8, topic)
        var used = 1
        var willEnd = rng.chance(0.9)
        let pairs = min(40, max(1, Int(rng.logNormal(median: 3 * lengthScale, sigma: 0.7))))
        var limit = pairs
        var fallbacks = 0
        var handedOff = false
        var i = 0
        t += 1000 + Int64(rng.below(6000))
        while i < limit {
            var room = maxEvents - used - (willEnd ? 1 : 0)
            if room < 2 {
                if i == 0 && willEnd {  // no room for an end: keep the first exchange instead
                    willEnd = false
                    room += 1
                }
                if room < 2 { break }
            }
            if i > 0 && rng.chance(0.04) { topic = botTopicAlias[bot].sample(&rng) }
            let related = Vocabulary.topicIntents[topic]
            var offTopic = false
            let intent: Int
            if i == 0 && rng.chance(0.3) {
                intent = Vocabulary.intentGreeting
            } else if i == pairs - 1 && i > 0 && rng.chance(0.4) {
                intent = rng.chance(0.6) ? Vocabulary.intentThanks : Vocabulary.intentGoodbye
            } else if rng.chance(0.85) {
                intent = related[min(rng.below(related.count), rng.below(related.count))]
            } else {
                intent = rng.below(Vocabulary.intents.count)
                offTopic = true
            }
            if i > 0 { t += Int64(min(600_000, max(800 * gapScale, rng.logNormal(median: 14_000, sigma: 0.9) * gapScale))) }
            emit(t, sid, u, Kind.messageReceived, bot: b8, topic, intent)
            used += 1
            room -= 1
            let rt = responseTime(bot)
            if room >= 2 && rng.chance(botFallback[bot] * (offTopic ? 3 : 1)) {
                emit(t + 1 + Int64(rng.below(max(1, rt / 2))), sid, u, Kind.fallbackTriggered, bot: b8, topic, intent)
                fallbacks += 1
                used += 1
                room -= 1
            }
            t += Int64(rt)
            emit(t, sid, u, Kind.messageSent, bot: b8, topic, a: rt)
            used += 1
            room -= 1
            if !handedOff && room >= 1 {
                let p = intent == Vocabulary.intentTalkToHuman ? 0.6 : fallbacks >= 2 ? 0.35 : 0.008
                if rng.chance(p) {
                    t += 500 + Int64(rng.below(2500))
                    let reason = intent == Vocabulary.intentTalkToHuman ? 0 : fallbacks >= 2 ? 1 : 2 + rng.below(2)
                    emit(t, sid, u, Kind.handoff, bot: b8, topic, reason)
                    handedOff = true
                    used += 1
                    limit = min(limit, i + 2)
                }
            }
            i += 1
        }
        if willEnd && used < maxEvents {
            t += 3000 + Int64(rng.below(60_000))
            var p = botResolve[bot] - 0.12 * Double(fallbacks) - (handedOff ? 0.2 : 0)
            p = min(0.97, max(0.05, p))
            let resolved = rng.chance(p)
            let satisfaction = 1 + (resolved ? satisfiedAlias : unsatisfiedAlias).sample(&rng)
            emit(t, sid, u, Kind.conversationEnded, bot: b8, topic, resolved ? 1 : 0, a: satisfaction)
            used += 1
        }
        uLast[u] = t
        return used
    }

    /// Bot response time in ms: log-normal around the bot's median, plus a slow tail.
    @inline(__always) private func responseTime(_ bot: Int) -> Int {
        var x = exp(botLogMedian[bot] + botSigma[bot] * rng.normal())
        if rng.chance(0.015) { x *= 2 + 4 * rng.unit() }
        return min(120_000, max(40, Int(x)))
    }

    // MARK: - Writing

    private func writeDay(_ d: Int) {
        let last = d == o.days - 1
        if last {
            cur.append(contentsOf: next)
            next.removeAll(keepingCapacity: true)
        }
        keys.removeAll(keepingCapacity: true)
        var i = 0
        while i < cur.count {
            let e = cur[i]
            if e.ts >= dayEnd && !last {
                next.append(e)  // still in the future: wait for its own day
            } else {
                keys.append(UInt64(max(0, e.ts - dayStart)) << 32 | UInt64(i))
            }
            i += 1
        }
        keys.sort()
        for k in keys { write(cur[Int(k & 0xFFFF_FFFF)]) }
        cur.removeAll(keepingCapacity: true)
        // The day's late batches. A late event from after midnight waits one more day, so
        // that late always means "behind the file's order", never ahead of it.
        for e in late[d] {
            if e.ts >= dayEnd && !last { late[d + 1].append(e) } else { write(e) }
        }
        late[d] = []
    }

    private func write(_ e: Event) {
        let w = self.w
        w.reserve()
        let kind = Int(e.kind)
        kindCount[kind] &+= 1
        let u = Int(e.user)
        w.frag(fPrefix[kind])
        w.dec(u + 1)
        w.byte(34)
        if e.kind >= Kind.conversationStarted {
            w.frag(fConv)
        } else {
            let anon = uAnon[u]
            if anon != 0 {
                w.frag(fAnon)
                w.hex16(anon)
                w.byte(34)
            }
            w.frag(fSess)
        }
        w.hex16(e.session)
        w.byte(34)
        if e.kind >= Kind.conversationStarted { w.frag(fBot[Int(e.bot)]) }
        w.frag(fTimestamp)
        w.timestamp(e.ts)
        w.byte(34)
        if e.flags & 1 != 0 {
            eventIdCounter &+= 1
            eventIdCount &+= 1
            w.frag(fEventId)
            w.hex16(mix64(eventIdCounter ^ eventIdSalt))
            w.byte(34)
        }
        w.frag(fProperties)
        let p0 = Int(e.p0)
        let p1 = Int(e.p1)
        switch e.kind {
        case Kind.userRegistered:
            w.frag(fMethod[p0])
        case Kind.profileCompleted:
            w.frag(fFields)
            w.dec(p0)
        case Kind.pageView:
            w.frag(fPage[p0])
            w.frag(p1 >= 128 ? fRefPage[p1 - 128] : fRefExternal[p1])
        case Kind.search:
            let rank = Int(e.a)
            w.frag(fQueryOpen)
            writeQuery(rank)
            w.frag(fQueryClose)
            let h = mix64(UInt64(rank) ^ querySalt)
            w.dec(h % 100 < 7 ? 0 : Int(h >> 40) % 240 + 1)
        case Kind.buttonClicked:
            w.frag(fButton[p0])
            w.frag(fPageComma[p1])
        case Kind.purchaseCompleted:
            let cents = Int(e.a)
            w.frag(fValue)
            w.dec(cents / 100)
            w.byte(46)
            w.two(cents % 100)
            w.frag(fCurrency[p0])
            w.frag(fItems)
            w.dec(p1)
        case Kind.conversationStarted:
            w.frag(fTopic[p0])
        case Kind.messageReceived, Kind.fallbackTriggered:
            w.frag(fTopic[p0])
            w.frag(fIntentComma[p1])
        case Kind.messageSent:
            w.frag(fResponseTime)
            w.dec(Int(e.a))
            w.frag(fTopicComma[p0])
        case Kind.handoff:
            w.frag(fTopic[p0])
            w.frag(fReasonComma[p1])
        default:  // conversationEnded
            w.frag(p1 != 0 ? fResolvedTrue : fResolvedFalse)
            w.frag(fSatisfaction)
            w.dec(Int(e.a))
            w.frag(fTopicComma[p0])
        }
        w.frag(fTail[Int(uChannel[u]) * 3 + Int(uPlan[u])])
    }

    @inline(__always) private func writeQuery(_ rank: Int) {
        let head = fHead.count
        if rank < head {
            w.frag(fHead[rank])
            return
        }
        var t = rank - head
        let v = t % fVerb.count
        t /= fVerb.count
        let n = t % fNoun.count
        t /= fNoun.count
        let m = t % fModifier.count
        t /= fModifier.count
        w.frag(fVerb[v])
        w.frag(fNoun[n])
        w.frag(fModifier[m])
        if t > 0 {
            w.byte(32)
            w.dec(t)
        }
    }

    var bytesWritten: Int { w.totalBytes }
    var usersSeen: Int { uState.reduce(0) { $0 + Int($1 & registered) } }
}
