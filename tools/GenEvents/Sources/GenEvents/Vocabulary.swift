/// Fixed value lists. Every string here is plain ASCII without quotes or backslashes, so it
/// can be written into JSON unescaped. Lists are in rough order of popularity: samplers put
/// Zipf weights over the index.
enum Vocabulary {
    static let channels = ["web", "whatsapp", "telegram", "slack", "sms"]
    static let channelWeights = [0.42, 0.26, 0.12, 0.11, 0.09]
    /// Chance that an activity of a user on this channel is a bot conversation (else product use).
    static let conversationShare = [0.30, 0.85, 0.85, 0.80, 0.85]

    static let plans = ["free", "pro", "enterprise"]
    static let planWeights = [0.72, 0.22, 0.06]
    /// Chance that a product session is a purchase attempt, per plan.
    static let buyShare = [0.07, 0.12, 0.16]

    static let signupMethods = ["email", "google", "github", "apple", "sso"]
    static let signupMethodWeights = [0.46, 0.30, 0.12, 0.08, 0.04]

    static let botNames = [
        "bot_support", "bot_sales", "bot_billing", "bot_onboarding",
        "bot_shop", "bot_helpdesk", "bot_concierge", "bot_booking",
    ]
    /// Per named bot: median response time (ms), spread of its log, fallback rate,
    /// resolution rate, favoured topic (index into `topics`).
    static let botProfiles: [(median: Double, sigma: Double, fallback: Double, resolve: Double, topic: Int)] = [
        (450, 0.55, 0.06, 0.84, 0),
        (900, 0.70, 0.11, 0.70, 12),
        (650, 0.50, 0.08, 0.78, 1),
        (1300, 0.80, 0.14, 0.64, 14),
        (380, 0.45, 0.05, 0.86, 3),
        (1100, 0.65, 0.10, 0.72, 5),
        (750, 0.60, 0.09, 0.75, 19),
        (520, 0.50, 0.07, 0.80, 8),
    ]

    static let topics = [
        "technical_support", "billing", "shipping", "orders", "returns",
        "account", "refunds", "payments", "delivery_status", "product_info",
        "subscription", "password_reset", "pricing", "cancellation", "onboarding",
        "promotions", "integrations", "feedback", "security", "general",
    ]

    static let intents = [
        "greeting", "thanks", "goodbye", "talk_to_human", "report_bug",
        "login_issue", "billing_question", "invoice_request", "track_package", "delivery_time",
        "change_address", "check_order_status", "modify_order", "start_return", "return_label",
        "update_account", "delete_account", "request_refund", "refund_status", "update_payment_method",
        "payment_failed", "product_question", "compare_plans", "cancel_subscription", "change_plan",
        "reset_password", "apply_coupon", "setup_help", "integration_help", "security_concern",
    ]
    static let intentGreeting = 0
    static let intentThanks = 1
    static let intentGoodbye = 2
    static let intentTalkToHuman = 3

    /// The intents that belong to each topic, most common first.
    static let topicIntents: [[Int]] = [
        [4, 27, 5, 3], [6, 7, 19, 20], [8, 9, 10], [11, 12, 8], [13, 14, 17],
        [15, 16, 5], [17, 18, 6], [20, 19, 6], [8, 9, 11], [21, 22],
        [24, 23, 22], [25, 5], [22, 21, 26], [23, 12, 16], [27, 15, 28],
        [26, 22], [28, 27, 4], [4, 3, 1], [29, 25, 5], [21, 0, 3],
    ]

    static let handoffReasons = ["user_request", "repeated_fallback", "policy", "vip_customer"]

    static let pages = [
        "/", "/pricing", "/dashboard", "/features", "/docs", "/login", "/signup", "/blog",
        "/dashboard/conversations", "/docs/getting-started", "/help", "/orders", "/cart",
        "/checkout", "/settings", "/orders/track", "/help/faq", "/docs/api", "/integrations",
        "/dashboard/funnels", "/settings/billing", "/dashboard/realtime", "/contact",
        "/orders/history", "/help/returns", "/help/shipping", "/help/billing",
        "/docs/sdk/javascript", "/docs/sdk/python", "/dashboard/cohorts", "/settings/profile",
        "/settings/team", "/settings/api-keys", "/checkout/payment", "/checkout/confirmation",
        "/onboarding/welcome", "/onboarding/connect-bot", "/onboarding/invite-team",
        "/integrations/slack", "/integrations/whatsapp", "/docs/webhooks", "/docs/sdk/swift",
        "/dashboard/exports", "/settings/webhooks", "/blog/launch-week", "/blog/bot-analytics-101",
        "/blog/funnels-explained", "/about", "/careers", "/status", "/signup/verify",
        "/legal/privacy", "/legal/terms",
    ]
    static let pagePricing = 1
    static let pageCheckout = 13
    static let pageConfirmation = 34

    static let externalReferrers = [
        "$direct", "https://www.google.com/", "https://www.bing.com/", "https://duckduckgo.com/",
        "https://t.co/", "https://www.linkedin.com/", "https://news.ycombinator.com/",
        "https://www.reddit.com/", "https://github.com/", "https://mail.google.com/",
        "https://www.facebook.com/",
    ]
    static let externalReferrerWeights = [0.38, 0.30, 0.05, 0.03, 0.05, 0.05, 0.03, 0.04, 0.03, 0.02, 0.02]

    static let buttons = [
        "start_chat", "signup", "login", "add_to_cart", "upgrade", "checkout", "contact_support",
        "start_free_trial", "pay_now", "export_csv", "create_funnel", "apply_coupon",
        "download_invoice", "invite_teammate", "copy_api_key", "save_settings",
        "connect_integration", "create_dashboard", "share_report", "cancel_subscription",
    ]
    static let buttonAddToCart = 3
    static let buttonUpgrade = 4
    static let buttonPayNow = 8

    static let currencies = ["USD", "EUR", "GBP", "BRL", "CAD"]
    static let currencyWeights = [0.64, 0.20, 0.08, 0.04, 0.04]

    /// The head of the search distribution: the queries everybody types.
    static let headQueries = [
        "refund", "reset password", "track order", "pricing", "cancel subscription", "invoice",
        "shipping cost", "return policy", "api key", "contact support", "change plan",
        "delivery time", "webhooks", "export csv", "delete account", "funnel", "slack integration",
        "whatsapp bot", "two factor authentication", "change email", "update credit card",
        "order status", "coupon code", "free trial", "enterprise plan", "gdpr", "data retention",
        "cohort retention", "response time", "satisfaction score", "invite team", "billing address",
        "vat invoice", "student discount", "gift card", "international shipping", "express delivery",
        "damaged item", "missing package", "wrong size", "exchange", "warranty", "store hours",
        "login problem", "account locked", "sso", "sdk", "python sdk", "javascript snippet",
        "rate limit", "batch events", "custom events", "dashboard", "realtime", "telegram bot",
        "sms notifications", "change language", "dark mode", "mobile app", "status page",
    ]
    /// The tail is composed: verb x noun x modifier (120,000 distinct phrases), then a number.
    static let queryVerbs = [
        "", "how to ", "can i ", "where is my ", "why is my ", "change ", "update ", "cancel ",
        "track ", "find ", "export ", "delete ", "add ", "remove ", "connect ", "set up ", "fix ",
        "download ", "reset ", "enable ", "disable ", "compare ", "upgrade ", "downgrade ", "renew ",
        "transfer ", "refund ", "return ", "pay ", "share ", "invite ", "verify ", "schedule ",
        "edit ", "view ", "print ", "sync ", "restore ", "merge ", "best ",
    ]
    static let queryNouns = [
        "order", "invoice", "password", "account", "subscription", "plan", "payment method",
        "credit card", "shipping address", "delivery", "package", "refund", "return label",
        "coupon", "discount code", "api key", "webhook", "dashboard", "funnel", "cohort", "report",
        "export", "csv file", "bot", "chatbot", "whatsapp number", "telegram bot", "slack workspace",
        "sms sender", "team member", "email address", "phone number", "profile", "billing info",
        "receipt", "tax id", "gift card", "wishlist", "cart", "checkout", "tracking number", "store",
        "warranty", "size guide", "product", "integration", "notification", "language", "timezone",
        "two factor", "login", "session", "data", "event", "segment", "alert", "metric", "template",
        "widget", "conversation",
    ]
    static let queryModifiers = [
        "", " not working", " error", " online", " today", " free", " fast", " europe", " usa",
        " uk", " pdf", " on mobile", " on iphone", " on android", " in app", " for business",
        " for team", " without login", " after purchase", " before shipping", " international",
        " express", " late", " missing", " twice", " limit", " price", " cost", " status",
        " history", " settings", " help", " issue", " problem", " 2026", " monthly", " yearly",
        " bulk", " api", " python", " javascript", " swift", " csv", " json", " by email",
        " by phone", " automatically", " manually", " again", " update",
    ]
    /// Query ranks are log-uniform on 0..<queryRanks: P(rank) ~ 1/rank, a Zipf law with s = 1.
    static let queryRanks = 20_000_000
}
