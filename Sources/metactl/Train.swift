import ArgumentParser
import Foundation
import MetaCore

/// Meta-trains a model with one of the MAML-family algorithms.
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Meta-train with MAML, first-order MAML, Reptile, Meta-SGD, ANIL, the multi-task baseline, Prototypical or Matching Networks, or OML.")

    @Option(help: "maml | fomaml | reptile | metasgd | anil | pretrain | protonet | matchnet | oml | oml-fo.") var algorithm = "maml"
    @Option(help: "Task family: sine | omniglot | continual-omniglot | incremental-sine.") var task = "sine"
    @Option(help: "Classes per episode (omniglot).") var ways: Int?
    @Option(help: "Support examples per task (per class for classification).") var shots = 10
    @Option(help: "Query examples per task (per class for classification).") var queries = 10
    @Option(help: "Inner SGD steps during meta-training.") var innerSteps = 1
    @Option(help: "Inner learning rate (OML: the online SGD step on the prediction network).") var innerLr: Float = 0.01
    @Option(help: "OML: layers with parameters in the prediction network (default 1; incremental-sine 2).") var headLayers: Int?
    @Option(help: "OML: trajectory samples per online step (default 1; incremental-sine 8).") var onlineBatch: Int?
    @Option(help: "continual-omniglot: meta-loss drawings from classes outside the trajectory (default 15).") var remember: Int?
    @Option(help: "Meta-optimiser: adam | sgd.") var metaOptimizer = "adam"
    @Option(help: "Reptile's inner optimiser: sgd | adam.") var innerOptimizer = "sgd"
    @Option(help: "Meta learning rate.") var metaLr: Float = 0.001
    @Option(help: "Tasks per meta-batch.") var metaBatch = 25
    @Option(help: "Clip the meta-gradient to this norm.") var clip: Float?
    @Option(help: "Meta-iterations in total (default 70,000; with --resume, the stored run's unless given).") var iterations: Int?
    @Option(help: "Random seed (initialisation and tasks).") var seed: UInt64 = 0
    @Option(help: "Threads: the tasks of a meta-batch run concurrently (default: all cores).") var threads = ProcessInfo.processInfo.activeProcessorCount
    @Option(help: "Checkpoint file (safetensors), written at intervals and at the end.") var checkpoint = "checkpoint.safetensors"
    @Option(help: "Write the checkpoint every N iterations.") var checkpointEvery = 1000
    @Option(help: "Also keep a copy of the checkpoint every N iterations, as NAME-ITERATION.safetensors (for learning curves).") var snapshotEvery: Int?
    @Option(help: "Metrics log (JSON lines), one line every --log-every iterations.") var log: String?
    @Option(help: "Iterations between metrics lines.") var logEvery = 100
    @Option(help: "Stop (with a checkpoint) after this many minutes of training in this run (a --resume run has its own limit), even before --iterations.") var timeLimit: Double?
    @Flag(help: "Continue the run stored in --checkpoint instead of starting afresh.") var resume = false
    @OptionGroup var dataset: DatasetOptions

    func validate() throws {
        guard threads > 0 else { throw ValidationError("--threads must be at least 1") }
        guard (timeLimit ?? 1) > 0 else { throw ValidationError("--time-limit must be a positive number of minutes") }
        guard (iterations ?? 0) >= 0 else { throw ValidationError("--iterations must not be negative") }
        guard checkpointEvery > 0, logEvery > 0, (snapshotEvery ?? 1) > 0 else {
            throw ValidationError("--checkpoint-every, --snapshot-every and --log-every must be positive")
        }
    }

    func run() throws {
        let url = URL(fileURLWithPath: checkpoint)
        var trainer: MetaTrainer, config: TrainingConfiguration
        var earlierSeconds = 0.0  // training time of the runs this one resumes: the log's clock continues from it
        if resume {
            let file = try SafeTensors.read(from: url)
            (trainer, config) = try TrainingCheckpoint.restore(file, dataset: dataset.load(for: TrainingCheckpoint.configuration(of: file)), threads: threads)
            earlierSeconds = try TrainingCheckpoint.trainingSeconds(of: file)
            if let iterations { config.iterations = iterations }
            print("resuming \(config.algorithm) on \(config.task) at iteration \(trainer.iteration) of \(config.iterations)")
        } else {
            config = TrainingConfiguration()
            config.algorithm = algorithm; config.task = task; config.ways = ways; config.shots = shots; config.queries = queries
            config.dataPath = dataset.data.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
            config.innerSteps = innerSteps; config.innerLearningRate = innerLr
            config.metaOptimizer = metaOptimizer; config.innerOptimizer = innerOptimizer; config.metaLearningRate = metaLr; config.metaBatch = metaBatch
            config.clip = clip; config.iterations = iterations ?? config.iterations; config.seed = seed
            config.headLayers = headLayers; config.onlineBatch = onlineBatch; config.remember = remember
            trainer = try config.makeTrainer(dataset: dataset.load(for: config), threads: threads)
        }
        let logHandle = try log.map { path -> FileHandle in
            if !resume || !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            try handle.seekToEnd()
            return handle
        }
        let clock = ContinuousClock(), start = clock.now, first = trainer.iteration
        var recent = 0.0, recentAccuracy = 0.0, recentCount = 0
        var outOfTime = false
        while trainer.iteration < config.iterations && !outOfTime {
            let result = try trainer.step()
            recent += result.loss; recentAccuracy += result.accuracy ?? 0; recentCount += 1
            let done = trainer.iteration
            let seconds = (clock.now - start).seconds, trainedSeconds = earlierSeconds + seconds
            outOfTime = timeLimit.map { seconds >= $0 * 60 } ?? false
            if done % logEvery == 0 || done == config.iterations || outOfTime {
                let rate = Double(done - first) / seconds
                let accuracy = result.accuracy != nil ? String(format: "  accuracy %.1f%%", 100 * recentAccuracy / Double(recentCount)) : ""
                let line = String(format: "\riter %d/%d  %.2f it/s  loss %.4f%@  ETA %@   ", done, config.iterations, rate,
                                  recent / Double(recentCount), accuracy, formatDuration(Double(config.iterations - done) / rate))
                FileHandle.standardError.write(Data(line.utf8))
                if let logHandle {
                    var record: [String: Any] = ["iteration": done, "loss": recent / Double(recentCount), "seconds": trainedSeconds,
                                                 "gradient_norm": result.gradientNorm]
                    if result.accuracy != nil { record["accuracy"] = recentAccuracy / Double(recentCount) }
                    logHandle.write(try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys]) + Data("\n".utf8))
                }
                recent = 0; recentAccuracy = 0; recentCount = 0
            }
            let checkpointNow = done % checkpointEvery == 0 || done == config.iterations || outOfTime
            let snapshotNow = snapshotEvery.map { done % $0 == 0 } ?? false
            if checkpointNow || snapshotNow {
                let file = try TrainingCheckpoint.make(trainer, configuration: config, trainingSeconds: trainedSeconds)
                if checkpointNow { try file.write(to: url) }
                if snapshotNow {
                    let name = url.deletingPathExtension().lastPathComponent + "-\(done)." + url.pathExtension
                    try file.write(to: url.deletingLastPathComponent().appendingPathComponent(name))
                }
            }
        }
        if trainer.iteration == first {
            try TrainingCheckpoint.make(trainer, configuration: config, trainingSeconds: earlierSeconds).write(to: url)
        }
        FileHandle.standardError.write(Data("\n".utf8))
        if outOfTime { print("stopped at the time limit of \(timeLimit!) minutes") }
        print("trained \(config.algorithm) on \(config.task): \(trainer.iteration) iterations, this run \(formatDuration((clock.now - start).seconds)); checkpoint \(url.path)")
    }
}

func formatDuration(_ seconds: Double) -> String {
    guard seconds.isFinite else { return "?" }
    let s = Int(seconds.rounded())
    return s >= 3600 ? String(format: "%dh%02dm", s / 3600, s % 3600 / 60) : s >= 60 ? String(format: "%dm%02ds", s / 60, s % 60) : "\(s)s"
}
