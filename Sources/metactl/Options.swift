import ArgumentParser
import Foundation
import MetaCore

/// A run's configuration, as `--key value` arguments: the settings every run has and the options of the
/// registered components (``TrainingConfiguration/settings``, ``Registry``). They are parsed by MetaCore's
/// one table, so the command line and configuration files accept the same names and values.
struct ConfigurationOptions: ParsableArguments {
    @Argument(parsing: .allUnrecognized,
              help: ArgumentHelp("Configuration settings (--algorithm, --task, --backbone, --shots, …) and the components' options (--channels, --split, …); `metactl train --help` lists them all.",
                                 valueName: "--key value"))
    var arguments: [String] = []

    /// `base` with these arguments applied (a configuration file's first, as `main` put them before the
    /// command line's).
    func apply(to base: TrainingConfiguration) throws -> TrainingConfiguration {
        try base.applying(arguments, source: "command line", origin: ConfigurationFile.origin)
    }

    /// Whether `--name` was given.
    func given(_ name: String) -> Bool { arguments.contains { $0 == "--\(name)" || $0.hasPrefix("--\(name)=") } }
}

/// Threads, shared by the commands that run tasks.
struct ThreadOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Threads: tasks (episodes) run concurrently; a lone task splits its batch (default: all cores).")
    var threads: Int?

    /// --threads, else the cores this process may use: those it is bound to (mpirun binds each of up to two
    /// ranks to one core by default), else the machine's divided among the ranks Open MPI started on it.
    var count: Int {
        if let threads { return threads }
        let cores = ProcessInfo.processInfo.activeProcessorCount
        if let allowed = Self.allowedCores, allowed < cores { return allowed }
        let local = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap(Int.init) ?? 1
        return max(1, cores / max(1, local))
    }

    /// The cores this process's CPU affinity allows (Linux: `Cpus_allowed_list` of /proc/self/status, such as
    /// "0-3,8"), or nil where it cannot be read.
    static let allowedCores: Int? = {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed_list:") }) else { return nil }
        var total = 0
        for part in line.dropFirst("Cpus_allowed_list:".count).trimmingCharacters(in: .whitespaces).split(separator: ",") {
            let bounds = part.split(separator: "-").map { Int($0) }
            guard let first = bounds.first ?? nil, let last = bounds.last ?? nil, last >= first else { return nil }
            total += last - first + 1
        }
        return total > 0 ? total : nil
    }()

    func validate() throws {
        if let threads, !(1 ... TaskRunner.maximumThreads).contains(threads) {
            throw ValidationError("--threads must be between 1 and \(TaskRunner.maximumThreads), got \(threads)")
        }
        if let threads, let allowed = Self.allowedCores, threads > allowed, Cluster.launched, Cluster.group.isPrimary {
            printError("warning: --threads \(threads) on the \(allowed) core(s) this rank is bound to; mpirun binds each of up to two ranks to one core unless told --bind-to none (or --map-by slot:PE=\(threads))")
        }
    }
}

extension GradientReduction: ExpressibleByArgument {}

/// Options that locate a dataset, shared by the commands that train or evaluate on one.
struct DatasetOptions: ParsableArguments {
    @Option(help: "Dataset directory (omniglot: the one holding images_background and images_evaluation, folders or .zip; default: the path a checkpoint recorded).")
    var data: String?
    @Option(help: "Cache directory for the preprocessed dataset (default: $XDG_CACHE_HOME/metacore or ~/.cache/metacore).")
    var cache: String?
    @Flag(help: "Decode the dataset without reading or writing a cache.") var noCache = false

    /// Where `config`'s task family finds its data: --data, else the path the configuration records. Says on
    /// stderr how each dataset was read.
    func source(for config: TrainingConfiguration? = nil) -> DataSource {
        DataSource(path: data ?? config?.dataPath,
                   cacheDirectory: noCache ? nil : cache.map { URL(fileURLWithPath: $0) } ?? Omniglot.defaultCacheDirectory,
                   report: { if Cluster.group.isPrimary { printError($0) } })
    }

    /// --data as an absolute path, for the configuration to record.
    var absolutePath: String? { data.map { URL(fileURLWithPath: $0).standardizedFileURL.path } }
}

/// How results are written, shared by the commands that report.
struct OutputOptions: ParsableArguments {
    @Flag(help: "Print the result as JSON.") var json = false
    @Option(help: "Also write the result (JSON) to this file.") var output: String?

    /// Prints `value` (a table by `table`, or JSON) and writes it to --output.
    func report<T: Encodable>(_ value: T, table: () -> Void) throws {
        if json { try printJSON(value) } else { table() }
        if let output { try writeAtomically(try encodeJSON(value), to: URL(fileURLWithPath: output)) }
    }
}

/// Progress that fits where it goes: a live line on a terminal, rewritten at most four times a second; a plain
/// line every `interval` seconds when stderr is a file or a pipe.
struct ProgressLine {
    let isTerminal = isatty(STDERR_FILENO) != 0
    let interval: Double
    private let clock = ContinuousClock()
    private var last: ContinuousClock.Instant?

    init(interval: Double) { self.interval = interval }

    /// Shows `line()` if it is time to (or `force`).
    mutating func update(force: Bool = false, _ line: () -> String) {
        guard Cluster.group.isPrimary else { return }
        let now = clock.now
        if !force, let last, (now - last).seconds < (isTerminal ? 0.25 : interval) { return }
        last = now
        printError(isTerminal ? "\r\(line())\u{1B}[K" : line(), terminator: isTerminal ? "" : "\n")
    }

    /// Ends the live line.
    func finish() { if isTerminal && last != nil { printError("") } }
}

/// Writes `text` to standard error. A failed write (a closed pipe, a full disk) is not worth stopping a run for,
/// and is ignored — FileHandle's `write(_:)` would crash the process instead.
func printError(_ text: String, terminator: String = "\n") {
    let bytes = Array((text + terminator).utf8)
    bytes.withUnsafeBytes { buffer in
        var offset = 0
        while offset < buffer.count {
            let written = write(STDERR_FILENO, buffer.baseAddress! + offset, buffer.count - offset)
            guard written > 0 else { return }
            offset += written
        }
    }
}
