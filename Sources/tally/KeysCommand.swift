import AnalyticsServer
import ArgumentParser
import EventLog

struct Keys: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create, list and revoke API keys.", subcommands: [Create.self, List.self, Revoke.self])

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a key; prints its token once.")
        @OptionGroup var data: DataDirectoryOption
        @Option(help: "Project id; created if it does not exist.") var project = "default"
        @Option(help: "write (ingest only), read (analytics) or admin.") var scope: String
        @Option(help: "A name to recognise the key by.") var name: String?

        func run() throws {
            guard let scope = Scope(rawValue: scope) else { throw CLIError("--scope: \"\(self.scope)\" is not write, read or admin") }
            let store = try MetadataStore(path: try metadataPath(data.path, create: true))
            if try store.createProject(project) { print("Created project \"\(project)\".") }
            let created = try store.createKey(project: project, scope: scope, name: name)
            print("key id:  \(created.key.id)")
            print("project: \(project)")
            print("scope:   \(scope.rawValue)")
            print("token:   \(created.token)")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List keys (never their tokens).")
        @OptionGroup var data: DataDirectoryOption
        @Option(help: "Only this project's keys.") var project: String?

        func run() throws {
            let store = try MetadataStore(path: try metadataPath(data.path, create: false))
            let keys = try store.listKeys(project: project)
            let rows = [["ID", "PROJECT", "SCOPE", "NAME", "CREATED", "LAST USED", "STATUS"]]
                + keys.map { k in
                    [
                        k.id, k.projectId, k.scope.rawValue, k.name ?? "", Timestamp.format(k.createdAt / 1_000_000 * 1_000_000),
                        k.lastUsedAt.map { Timestamp.format($0 / 1_000_000 * 1_000_000) } ?? "never",
                        k.revokedAt == nil ? "active" : "revoked",
                    ]
                }
            printTable(rows)
        }
    }

    struct Revoke: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a key by id; a running server stops accepting it within seconds.")
        @OptionGroup var data: DataDirectoryOption
        @Argument(help: "The key id shown by `tally keys list`.") var id: String

        func run() throws {
            let store = try MetadataStore(path: try metadataPath(data.path, create: false))
            guard try store.revokeKey(id: id) else { throw CLIError("no active key with id \"\(id)\"") }
            print("Revoked key \(id).")
        }
    }
}

func metadataPath(_ dataDirectory: String, create: Bool) throws -> String {
    if create { try FileIO.makeDirectories(dataDirectory) }
    let path = dataDirectory + "/meta.sqlite"
    guard create || FileIO.exists(path) else { throw CLIError("\(dataDirectory) has no meta.sqlite: not a Tally data directory") }
    return path
}

func printTable(_ rows: [[String]]) {
    guard let first = rows.first else { return }
    var widths = first.map(\.count)
    for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
    for row in rows {
        print(row.enumerated().map { i, cell in cell + String(repeating: " ", count: widths[i] - cell.count) }.joined(separator: "  "))
    }
}
