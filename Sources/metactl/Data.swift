import ArgumentParser
import Foundation
import MetaCore

/// Loads a dataset once: checks it, builds its cache and prints what it holds.
struct Prepare: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Check an Omniglot download and build its preprocessed cache.")

    @Option(help: "Directory with images_background and images_evaluation (folders or .zip files).") var data: String
    @Option(help: "Cache directory (default: $XDG_CACHE_HOME/metacore or ~/.cache/metacore).") var cache: String?
    @Flag(help: "Do not use or write a cache.") var noCache = false

    func run() throws {
        let clock = ContinuousClock(), start = clock.now
        let (omniglot, status) = try loadOmniglot(data, cache: cache, noCache: noCache)
        let seconds = (clock.now - start).seconds
        let background = omniglot.characters(in: .background).count
        let alphabets = Set(omniglot.characters.map { "\($0.part)/\($0.alphabet)" }).count
        print("Omniglot at \(data): \(omniglot.characters.count) characters (\(background) background, \(omniglot.characters.count - background) evaluation) from \(alphabets) alphabets, \(Omniglot.drawingsPerCharacter) drawings each, \(omniglot.side)x\(omniglot.side)")
        print("\(describe(status)) in \(String(format: "%.2f", seconds)) s")
    }
}

/// Loads Omniglot through the cache the options describe.
func loadOmniglot(_ path: String, cache: String?, noCache: Bool) throws -> (Omniglot, Omniglot.CacheStatus) {
    let directory = noCache ? nil : cache.map { URL(fileURLWithPath: $0) } ?? Omniglot.defaultCacheDirectory
    return try Omniglot.load(from: path, cacheDirectory: directory)
}

func describe(_ status: Omniglot.CacheStatus) -> String {
    switch status {
    case .disabled: return "decoded (no cache)"
    case .loaded(let url): return "read from cache \(url.path)"
    case .rebuilt(let url, let reason): return "decoded and cached at \(url.path) (\(reason))"
    }
}

/// Options that locate a dataset, shared by the commands that train or evaluate on one.
struct DatasetOptions: ParsableArguments {
    @Option(help: "Dataset directory (omniglot: the one holding images_background and images_evaluation, folders or .zip).") var data: String?
    @Option(help: "Cache directory for the preprocessed dataset (default: $XDG_CACHE_HOME/metacore or ~/.cache/metacore).") var cache: String?
    @Flag(help: "Decode the dataset without reading or writing a cache.") var noCache = false

    /// The dataset `config` needs (nil for synthetic tasks), from --data or else the path the configuration records.
    func load(for config: TrainingConfiguration) throws -> Omniglot? {
        guard config.task == "omniglot" else { return nil }
        guard let path = data ?? config.dataPath else {
            throw ValidationError("omniglot needs --data PATH: the directory with images_background and images_evaluation (folders or .zip files)")
        }
        let clock = ContinuousClock(), start = clock.now
        let (omniglot, status) = try loadOmniglot(path, cache: cache, noCache: noCache)
        FileHandle.standardError.write(Data("omniglot: \(describe(status)) in \(String(format: "%.2f", (clock.now - start).seconds)) s\n".utf8))
        return omniglot
    }
}
