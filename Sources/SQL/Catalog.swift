import ColumnStore
import QueryEngine

/// The tables a query can name, all of them views of the caller's own project snapshot.
/// Nothing else is reachable: there is no schema, file or system table to name.
struct Catalog {
    /// nil: no data (checking a query without running it); every property key is unseen.
    let snapshot: QuerySnapshot?
    private var kindCache: [String: Set<ColumnKind>] = [:]

    init(snapshot: QuerySnapshot?) {
        self.snapshot = snapshot
    }

    static let eventColumns: [(name: String, type: SQLType)] = [
        ("event_id", .string), ("event_name", .string), ("user_id", .string), ("anonymous_id", .string), ("session_id", .string),
        ("bot_id", .string), ("timestamp", .timestamp), ("date", .date), ("received_at", .timestamp),
    ]

    static let conversationColumns: [(name: String, type: SQLType)] = [
        ("conversation_id", .string), ("bot_id", .string), ("user_id", .string), ("channel", .string), ("started_at", .timestamp),
        ("ended_at", .timestamp), ("date", .date), ("duration", .double), ("messages", .integer), ("completed", .boolean),
        ("resolved", .boolean), ("satisfaction", .double), ("topic", .string),
    ]

    static let userColumns: [(name: String, type: SQLType)] = [
        ("user_id", .string), ("first_seen", .timestamp), ("last_seen", .timestamp), ("sessions", .integer), ("events", .integer),
        ("messages", .integer),
    ]

    static func columns(of table: TableKind) -> [(name: String, type: SQLType)] {
        switch table {
        case .events: eventColumns
        case .conversations: conversationColumns
        case .users: userColumns
        }
    }

    /// The stored types of a property key across the snapshot's blocks.
    mutating func kinds(of key: String) -> Set<ColumnKind> {
        if let cached = kindCache[key] { return cached }
        var kinds: Set<ColumnKind> = []
        for block in snapshot?.blocks ?? [] {
            for d in block.footer.columns where d.isProperty && d.name == key && d.kind != .null { kinds.insert(d.kind) }
        }
        kindCache[key] = kinds
        return kinds
    }
}
