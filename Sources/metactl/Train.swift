import ArgumentParser
import Foundation
import MetaCore

/// Meta-trains a model with any registered algorithm on any registered task family.
struct Train: ParsableCommand {
    static var configuration: CommandConfiguration {
        CommandConfiguration(
            abstract: "Meta-train: \(Registry.algorithms.map(\.name).joined(separator: ", ")).",
            discussion: TrainingConfiguration.help)
    }

    @OptionGroup var settings: ConfigurationOptions
    @OptionGroup var threads: ThreadOptions
    @OptionGroup var dataset: DatasetOptions
    @Option(help: "A run described in YAML: every option of this command a key (algorithm: maml, checkpoint: run.safetensors, …); the command line overrides it.")
    var config: String?
    @Option(help: "Checkpoint file (safetensors), written at intervals and at the end.") var checkpoint = "checkpoint.safetensors"
    @Option(parsing: .unconditional, help: "Write the checkpoint every N iterations.") var checkpointEvery = 1000
    @Option(parsing: .unconditional, help: "Also keep a copy of the checkpoint every N iterations, as NAME-ITERATION.safetensors (for learning curves).") var snapshotEvery: Int?
    @Option(help: "Metrics log (JSON lines), one line every --log-every iterations.") var log: String?
    @Option(help: "Also write the metrics as TensorBoard scalars (loss, accuracy, gradient norm, meta learning rate, minutes) to an event file in this directory, every --log-every iterations: tensorboard --logdir DIR.")
    var tensorboard: String?
    @Option(parsing: .unconditional, help: "Iterations between metrics lines.") var logEvery = 100
    @Option(parsing: .unconditional, help: "Stop (with a checkpoint) after this many minutes of training in this run (a --resume run has its own limit), even before --iterations.") var timeLimit: Double?
    @Option(parsing: .unconditional, help: "Seconds between progress lines when stderr is not a terminal (on a terminal the line updates live).") var progressEvery: Double = 30
    @Option(help: "Under MPI: ordered (every task's meta-gradient gathered and summed in task order: the same result for any number of ranks) | sum (an allreduce of each rank's sum: less traffic, equal up to rounding).")
    var reduction = GradientReduction.ordered
    @Flag(help: "Continue the run stored in --checkpoint instead of starting afresh (--iterations may extend it; nothing else may change).") var resume = false
    @Option(help: "Start a new run from the weights in this safetensors file (a MetaCore checkpoint, or a PyTorch state_dict of the same architecture: names as 0.weight, 1.bias, …) instead of a fresh initialisation.")
    var initFrom: String?
    @Flag(help: "Print the resolved configuration as a --config file and exit without training.") var printConfig = false

    func validate() throws {
        guard progressEvery > 0 else { throw ValidationError("--progress-every must be a positive number of seconds") }
        if resume && initFrom != nil { throw ValidationError("--init-from starts a new run; --resume continues one from its checkpoint") }
    }

    func run() throws {
        let output = try TrainingSession.Output(checkpoint: URL(fileURLWithPath: checkpoint), checkpointEvery: checkpointEvery,
                                                snapshotEvery: snapshotEvery, log: log.map { URL(fileURLWithPath: $0) },
                                                logEvery: logEvery, timeLimit: timeLimit,
                                                tensorboard: tensorboard.map { URL(fileURLWithPath: $0) })
        var session: TrainingSession
        if resume {
            let file = try SafeTensors.read(from: output.checkpoint)
            let stored = try TrainingCheckpoint.configuration(of: file)
            let asked = try settings.apply(to: stored)
            var unchanged = asked
            unchanged.iterations = stored.iterations
            let changed = try stored.resolved().differences(from: unchanged.resolved())
            guard changed.isEmpty else {
                throw ValidationError("--resume continues the run stored in \(checkpoint) as it was; it differs in \(changed.map { "--\($0)" }.joined(separator: ", ")) (only --iterations may change; start a new run to change the others)")
            }
            if printConfig { return print(ConfigurationFile.render(try asked.resolved(), extra: dataArgument(asked)), terminator: "") }
            session = try TrainingSession(resuming: output, file: file, data: { dataset.source(for: $0) },
                                          iterations: settings.given("iterations") ? asked.iterations : nil, threads: threads.count,
                                          group: Cluster.group, reduction: reduction)
            print("resuming \(session.configuration.algorithm) on \(session.configuration.task) at iteration \(session.trainer.iteration) of \(session.configuration.iterations)")
        } else {
            var config = try settings.apply(to: TrainingConfiguration())
            config.dataPath = dataset.absolutePath
            if printConfig { return print(ConfigurationFile.render(try config.resolved(), extra: dataArgument(config)), terminator: "") }
            session = try TrainingSession(configuration: config, data: dataset.source(for: config), output: output, threads: threads.count,
                                       group: Cluster.group, reduction: reduction)
            if let initFrom {
                let line = try session.initialize(from: SafeTensors.read(from: URL(fileURLWithPath: initFrom)), source: initFrom)
                if Cluster.group.isPrimary { printError(line) }
            }
        }
        var progress = ProgressLine(interval: progressEvery)
        StopSignals.install()
        let summary = try session.run(stopRequested: { StopSignals.received != nil }) { state in
            progress.update(force: state.isLast) { state.line }
        }
        progress.finish()
        if summary.stoppedAtTimeLimit { print("stopped at the time limit of \(timeLimit!) minutes") }
        if summary.stoppedOnRequest { print("stopped on \(StopSignals.received ?? "request") after iteration \(summary.iterations); --resume continues") }
        let ranks = Cluster.group.size > 1 ? " on \(Cluster.group.size) ranks" : ""
        print("trained \(session.configuration.algorithm) on \(session.configuration.task)\(ranks): \(summary.iterations) iterations, this run \(formatDuration(summary.seconds)); checkpoint \(output.checkpoint.path)")
        if let start = summary.residentAtStartBytes, let peak = summary.peakBytes {
            print(String(format: "peak resident memory while training %.1f MB: %.1f MB above the %.1f MB held when it started",
                         Double(peak) / 1e6, Double(peak - start) / 1e6, Double(start) / 1e6))
        }
    }

    /// The dataset path as a `data:` key (the configuration records it, but it is an option of its own).
    private func dataArgument(_ config: TrainingConfiguration) -> [(String, String)] {
        config.dataPath.map { [("data", $0)] } ?? []
    }
}
