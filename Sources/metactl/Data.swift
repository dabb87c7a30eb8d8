import ArgumentParser
import Foundation
import MetaCore

/// Loads a dataset once: checks it, builds its cache and prints what it holds.
struct Prepare: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Check an Omniglot download and build its preprocessed cache.")

    @OptionGroup var dataset: DatasetOptions

    func run() throws {
        guard let path = dataset.data else { throw ValidationError("pass --data PATH: the directory with images_background and images_evaluation") }
        let omniglot = try dataset.load(path)
        let background = omniglot.characters(in: .background).count
        let alphabets = Set(omniglot.characters.map { "\($0.part)/\($0.alphabet)" }).count
        print("Omniglot at \(path): \(omniglot.characters.count) characters (\(background) background, \(omniglot.characters.count - background) evaluation) from \(alphabets) alphabets, \(Omniglot.drawingsPerCharacter) drawings each, \(omniglot.side)x\(omniglot.side)")
    }
}

/// Options that locate a dataset, shared by the commands that train or evaluate on one.
struct DatasetOptions: ParsableArguments {
    @Option(help: "Dataset directory (omniglot: the one holding images_background and images_evaluation, folders or .zip).") var data: String?
    @Option(help: "Cache directory for the preprocessed dataset (default: $XDG_CACHE_HOME/metacore or ~/.cache/metacore).") var cache: String?
    @Flag(help: "Decode the dataset without reading or writing a cache.") var noCache = false

    /// The dataset `config` needs (nil for synthetic tasks), from --data or else the path the configuration records.
    func load(for config: TrainingConfiguration) throws -> Omniglot? {
        guard config.usesOmniglot else { return nil }
        guard let path = data ?? config.dataPath else {
            throw ValidationError("omniglot needs --data PATH: the directory with images_background and images_evaluation (folders or .zip files)")
        }
        return try load(path)
    }

    /// Omniglot at `path` through the cache these options describe; says on stderr how it was read and how long it took.
    func load(_ path: String) throws -> Omniglot {
        let clock = ContinuousClock(), start = clock.now
        let directory = noCache ? nil : cache.map { URL(fileURLWithPath: $0) } ?? Omniglot.defaultCacheDirectory
        let (omniglot, status) = try Omniglot.load(from: path, cacheDirectory: directory)
        let how: String
        switch status {
        case .disabled: how = "decoded (no cache)"
        case .loaded(let url): how = "read from cache \(url.path)"
        case .rebuilt(let url, let reason): how = "decoded and cached at \(url.path) (\(reason))"
        }
        FileHandle.standardError.write(Data("omniglot: \(how) in \(String(format: "%.2f", (clock.now - start).seconds)) s\n".utf8))
        return omniglot
    }
}
