import Foundation
import Synchronization

/// A dataset that task families draw from, loaded from a path the user gives (`--data`).
public protocol Dataset: Sendable {
    /// What decides the loaded data besides the path (an image size, colour or gray, …); each distinct value is
    /// loaded, cached and kept on its own. ``NoSettings`` for a dataset that has none.
    associatedtype Settings: Hashable & Sendable = NoSettings
    /// Short identifier (`omniglot`), for `metactl data --dataset` and messages.
    static var name: String { get }
    /// What `--data` must point at, for error messages and help.
    static var layout: String { get }
    /// The settings `metactl data` and task families use unless told otherwise.
    static var defaultSettings: Settings { get }
    /// The settings a run's options describe (those of the task family that reads the dataset).
    static func settings(_ options: ResolvedOptions) throws -> Settings
    /// Loads the dataset at `path` with `settings`, through the cache and with the threads of `context`.
    static func load(from path: String, settings: Settings, context: DatasetLoading) throws -> (Self, CacheStatus)
    /// One line on what was loaded (`metactl data`).
    var summary: String { get }
    /// Why this dataset, handed to a ``DataSource`` ready-made, cannot serve a run that asks for `settings`
    /// (`nil`: it can; the default).
    func mismatch(with settings: Settings) -> String?
}

/// The settings of a dataset that has none.
public struct NoSettings: Hashable, Sendable {
    public init() {}
}

extension Dataset where Settings == NoSettings {
    public static var defaultSettings: NoSettings { NoSettings() }
}

extension Dataset {
    public static func settings(_ options: ResolvedOptions) throws -> Settings { defaultSettings }
    public func mismatch(with settings: Settings) -> String? { nil }
}

/// What a dataset's load gets besides its path and settings.
public struct DatasetLoading: Sendable {
    /// Where its preprocessed cache lives (`nil`: no cache, decode every time).
    public let cacheDirectory: URL?
    /// Threads to decode with.
    public let threads: Int
    /// Progress lines for a long decode (`nil`: silent).
    public let progress: (@Sendable (String) -> Void)?

    public init(cacheDirectory: URL?, threads: Int = 1, progress: (@Sendable (String) -> Void)? = nil) {
        self.cacheDirectory = cacheDirectory; self.threads = max(1, threads); self.progress = progress
    }
}

/// How a dataset's load got its data.
public enum CacheStatus: Sendable, Equatable {
    /// No cache directory was given: decoded from the source files.
    case disabled
    /// Read from a valid cache.
    case loaded(URL)
    /// Decoded from the source files and written to the cache, for the reason given (no cache yet, stale, corrupt).
    case rebuilt(URL, reason: String)
    /// Decoded from the source files; the cache could not be written, for the reason given.
    case unwritable(URL, reason: String)
}

/// Why a dataset cache was not used: missing, corrupt, stale or from another format version.
struct CacheProblem: Error {
    let message: String
}

/// The cached dataset if `read` finds a valid one, else the one `decode` makes, written to the cache by `write`
/// (into `directory`, created if need be). A cache that cannot be written costs the next run its head start,
/// not this run its data: the status says why, and the decoded data is returned.
func throughCache<D>(_ url: URL, in directory: URL, read: () -> Result<D, CacheProblem>, decode: () throws -> D,
                     write: (D) throws -> Void) throws -> (D, CacheStatus) {
    let reason: String
    switch read() {
    case .success(let dataset): return (dataset, .loaded(url))
    case .failure(let problem): reason = problem.message
    }
    let dataset = try decode()
    do {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try write(dataset)
    } catch {
        return (dataset, .unwritable(url, reason: describe(error)))
    }
    return (dataset, .rebuilt(url, reason: reason))
}

/// Where task families get their data: a path (`--data`), a cache directory, and the datasets loaded so far
/// (each loaded once, on first use). Synthetic tasks never touch it, so a `DataSource()` with no path serves them.
public final class DataSource: Sendable {
    public let path: String?
    public let cacheDirectory: URL?
    /// Threads a dataset decodes with on its first load.
    public let threads: Int
    /// Told how each dataset was read and how long it took, and a long decode's progress.
    let report: (@Sendable (String) -> Void)?
    private let loaded: Mutex<[Key: any Dataset]>

    /// A loaded dataset's identity: its name and settings (`nil`: given in memory, for any settings).
    private struct Key: Hashable, Sendable {
        let name: String
        let settings: (any Hashable & Sendable)?

        static func == (a: Key, b: Key) -> Bool {
            a.name == b.name && a.settings.map { AnyHashable($0) } == b.settings.map { AnyHashable($0) }
        }

        func hash(into hasher: inout Hasher) {
            hasher.combine(name)
            hasher.combine(settings.map { AnyHashable($0) })
        }
    }

    public init(path: String? = nil, cacheDirectory: URL? = Omniglot.defaultCacheDirectory,
                threads: Int = ProcessInfo.processInfo.activeProcessorCount, report: (@Sendable (String) -> Void)? = nil) {
        self.path = path; self.cacheDirectory = cacheDirectory; self.threads = max(1, threads); self.report = report
        loaded = Mutex([:])
    }

    /// A source that serves datasets already in memory, for whatever settings they are asked for with that
    /// they do not refuse (``Dataset/mismatch(with:)``).
    public init(_ datasets: [any Dataset]) {
        path = nil; cacheDirectory = nil; report = nil; threads = 1
        loaded = Mutex(Dictionary(datasets.map { (Key(name: type(of: $0).name, settings: nil), $0) }, uniquingKeysWith: { a, _ in a }))
    }

    /// The dataset of type `D` with its default settings, loaded from ``path`` the first time it is asked for.
    public func load<D: Dataset>(_ type: D.Type) throws -> D { try load(type, settings: D.defaultSettings) }

    /// The dataset of type `D` with the settings that a task family's `options` describe (``Dataset/settings(_:)``).
    public func load<D: Dataset>(_ type: D.Type, for options: ResolvedOptions) throws -> D {
        try load(type, settings: D.settings(options))
    }

    /// The dataset of type `D` with `settings`, loaded from ``path`` the first time it is asked for.
    public func load<D: Dataset>(_ type: D.Type, settings: D.Settings) throws -> D {
        let key = Key(name: D.name, settings: settings)
        return try loaded.withLock { loaded in
            if let dataset = loaded[key] as? D { return dataset }
            if let given = loaded[Key(name: D.name, settings: nil)] as? D {
                if let reason = given.mismatch(with: settings) { throw MetaCoreError.shape("the \(D.name) dataset given \(reason)") }
                return given
            }
            guard let path else {
                throw MetaCoreError(.missingData, "\(D.name) tasks need the dataset: pass --data PATH (\(D.layout))")
            }
            let clock = ContinuousClock(), start = clock.now
            let context = DatasetLoading(cacheDirectory: cacheDirectory, threads: threads, progress: report)
            let (dataset, status) = try D.load(from: path, settings: settings, context: context)
            if let report {
                let how: String
                switch status {
                case .disabled: how = "decoded (no cache)"
                case .loaded(let url): how = "read from cache \(url.path)"
                case .rebuilt(let url, let reason): how = "decoded and cached at \(url.path) (\(reason))"
                case .unwritable(let url, let reason): how = "decoded; warning: the cache \(url.path) could not be written (\(reason)), so the next run decodes again"
                }
                let seconds = (clock.now - start).seconds
                report("\(D.name): \(how) in \(String(format: "%.2f", seconds)) s")
            }
            loaded[key] = dataset
            return dataset
        }
    }

    /// The datasets loaded so far, in no particular order.
    public var datasets: [any Dataset] { loaded.withLock { Array($0.values) } }
}
