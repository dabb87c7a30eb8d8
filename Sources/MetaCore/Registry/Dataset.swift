import Foundation
import Synchronization

/// A dataset that task families draw from, loaded from a path the user gives (`--data`).
public protocol Dataset: Sendable {
    /// Short identifier (`omniglot`), for `metactl data --dataset` and messages.
    static var name: String { get }
    /// What `--data` must point at, for error messages and help.
    static var layout: String { get }
    /// Loads the dataset at `path`, through a cache in `cacheDirectory` (`nil`: no cache).
    static func load(from path: String, cacheDirectory: URL?) throws -> (Self, CacheStatus)
    /// One line on what was loaded (`metactl data`).
    var summary: String { get }
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

/// Where task families get their data: a path (`--data`), a cache directory, and the datasets loaded so far
/// (each loaded once, on first use). Synthetic tasks never touch it, so a `DataSource()` with no path serves them.
public final class DataSource: Sendable {
    public let path: String?
    public let cacheDirectory: URL?
    /// Told how each dataset was read and how long it took.
    let report: (@Sendable (String) -> Void)?
    private let loaded: Mutex<[String: any Dataset]>

    public init(path: String? = nil, cacheDirectory: URL? = Omniglot.defaultCacheDirectory,
                report: (@Sendable (String) -> Void)? = nil) {
        self.path = path; self.cacheDirectory = cacheDirectory; self.report = report
        loaded = Mutex([:])
    }

    /// A source that serves datasets already in memory.
    public init(_ datasets: [any Dataset]) {
        path = nil; cacheDirectory = nil; report = nil
        loaded = Mutex(Dictionary(datasets.map { (type(of: $0).name, $0) }, uniquingKeysWith: { a, _ in a }))
    }

    /// The dataset of type `D`, loaded from ``path`` the first time it is asked for.
    public func load<D: Dataset>(_ type: D.Type) throws -> D {
        try loaded.withLock { loaded in
            if let dataset = loaded[D.name] as? D { return dataset }
            guard let path else {
                throw MetaCoreError(.missingData, "\(D.name) tasks need the dataset: pass --data PATH (\(D.layout))")
            }
            let clock = ContinuousClock(), start = clock.now
            let (dataset, status) = try D.load(from: path, cacheDirectory: cacheDirectory)
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
            loaded[D.name] = dataset
            return dataset
        }
    }
}
