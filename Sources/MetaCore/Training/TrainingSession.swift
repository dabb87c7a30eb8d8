import Foundation

/// A meta-training run as `metactl train` runs it: iterations until the configuration's total (or a time
/// limit), a metrics log of JSON lines, the checkpoint written atomically at intervals and at the end, optional
/// snapshots for learning curves, and resumption from the checkpoint that continues bit for bit.
///
/// ```swift
/// var session = try TrainingSession(configuration: config, output: .init(checkpoint: url), threads: 2)
/// let summary = try session.run { progress in print(progress.line) }
/// ```
public struct TrainingSession {
    /// Where the run writes and how often.
    public struct Output: Sendable {
        public var checkpoint: URL
        /// Write the checkpoint every this many iterations (and at the end).
        public var checkpointEvery = 1000
        /// Also keep `NAME-ITERATION.safetensors` every this many iterations.
        public var snapshotEvery: Int?
        /// Metrics log: one JSON line every ``logEvery`` iterations.
        public var log: URL?
        public var logEvery = 100
        /// Stop, with a checkpoint, after this many minutes of this run.
        public var timeLimit: Double?
        /// Also write the metrics as TensorBoard scalars (``TensorBoardWriter``) to an event file in this directory,
        /// at every log line.
        public var tensorboard: URL?

        public init(checkpoint: URL, checkpointEvery: Int = 1000, snapshotEvery: Int? = nil, log: URL? = nil, logEvery: Int = 100,
                    timeLimit: Double? = nil, tensorboard: URL? = nil) throws {
            guard checkpointEvery > 0, logEvery > 0, (snapshotEvery ?? 1) > 0 else {
                throw MetaCoreError.argument("the checkpoint, snapshot and log intervals must be positive")
            }
            guard (timeLimit ?? 1) > 0 else { throw MetaCoreError.argument("the time limit must be a positive number of minutes") }
            self.checkpoint = checkpoint; self.checkpointEvery = checkpointEvery; self.snapshotEvery = snapshotEvery
            self.log = log; self.logEvery = logEvery; self.timeLimit = timeLimit; self.tensorboard = tensorboard
        }
    }

    /// Where a run stands, after each iteration.
    public struct Progress: Sendable {
        public let iteration: Int, total: Int
        /// Iterations per second in this run.
        public let rate: Double
        /// Mean loss (and accuracy) over the last completed log interval.
        public let loss: Double, accuracy: Double?
        /// The run's last iteration: its total, or the time limit.
        public let isLast: Bool

        public var line: String {
            let accuracy = accuracy.map { String(format: "  accuracy %.1f%%", 100 * $0) } ?? ""
            return String(format: "iter %d/%d  %.2f it/s  loss %.4f%@  ETA %@", iteration, total, rate, loss, accuracy,
                          formatDuration(Double(total - iteration) / rate))
        }
    }

    public private(set) var trainer: MetaTrainer
    public private(set) var configuration: TrainingConfiguration
    public let output: Output
    /// The training time of the runs this one resumes: the log's clock continues from it.
    public let earlierSeconds: Double
    /// Whether this run continues one from its checkpoint (its log is appended to).
    public let resumed: Bool

    /// A new run of `configuration` (stored resolved: backbone and every option spelled out).
    public init(configuration: TrainingConfiguration, data: DataSource = DataSource(), output: Output, threads: Int = 1,
                group: any ProcessGroup = SingleProcess(), reduction: GradientReduction = .ordered) throws {
        self.configuration = try configuration.resolved()
        trainer = try self.configuration.makeTrainer(data: data, threads: threads)
        trainer.group = group; trainer.reduction = reduction
        self.output = output
        earlierSeconds = 0
        resumed = false
    }

    /// The run stored in `output.checkpoint` (already read: `file`, else read here), continued; `iterations` (if
    /// given) replaces its total. `data` gets the stored configuration, so that it can default to the dataset path
    /// the run recorded.
    public init(resuming output: Output, file: SafeTensors? = nil, data: (TrainingConfiguration) throws -> DataSource,
                iterations: Int? = nil, threads: Int = 1, group: any ProcessGroup = SingleProcess(),
                reduction: GradientReduction = .ordered) throws {
        let file = try file ?? SafeTensors.read(from: output.checkpoint)
        let stored = try TrainingCheckpoint.configuration(of: file)
        guard TrainingCheckpoint.holdsOptimizerState(file) else {
            throw MetaCoreError.argument("\(output.checkpoint.path) holds no optimiser state (it was exported for evaluation), so its run cannot resume exactly; resume from the training checkpoint, or start a new run from its weights with --init-from")
        }
        (trainer, configuration) = try TrainingCheckpoint.restore(file, data: data(stored), threads: threads)
        trainer.group = group; trainer.reduction = reduction
        earlierSeconds = try TrainingCheckpoint.trainingSeconds(of: file)
        if let iterations {
            guard iterations >= trainer.iteration else {
                throw MetaCoreError.argument("the run in \(output.checkpoint.path) is at iteration \(trainer.iteration) already; --iterations \(iterations) would end it before it resumes")
            }
            configuration.iterations = iterations
            try configuration.validate()
        }
        self.output = output
        resumed = true
    }

    /// Starts this new run from the weights in `file` (see ``MetaTrainer/initialize(from:source:)``); returns a
    /// line saying what was read.
    public mutating func initialize(from file: SafeTensors, source: String) throws -> String {
        guard !resumed else { throw MetaCoreError.argument("a resumed run continues from its checkpoint; start a new run to start from other weights") }
        return try trainer.initialize(from: file, source: source)
    }

    /// How a run ended.
    public struct Summary: Sendable {
        public let iterations: Int
        public let seconds: Double
        public let stoppedAtTimeLimit: Bool
        /// The run stopped early because `stopRequested` said so (``TrainingSession/run(stopRequested:progress:)``).
        public var stoppedOnRequest = false
        /// The process's resident memory when training started (the dataset and the model already loaded) and
        /// its peak while training ran, in bytes (Linux; `nil` elsewhere). Their difference is what the
        /// training steps themselves needed.
        public var residentAtStartBytes: Int? = nil, peakBytes: Int? = nil
    }

    /// Trains to the configuration's total (or the time limit), calling `progress` after every iteration.
    /// Under a group of several ranks, every rank trains and rank 0 alone writes the log and the checkpoints
    /// and reports progress; rank 0's clock decides the time limit for all.
    ///
    /// `stopRequested` is asked after every iteration; when it says yes, the run ends there as at the time
    /// limit, with a checkpoint (`metactl train` asks it whether SIGINT or SIGTERM arrived). Under several
    /// ranks, rank 0's answer stops them all: at the next iteration under a time limit, else at the next log line.
    public mutating func run(stopRequested: () -> Bool = { false }, progress: (Progress) -> Void = { _ in }) throws -> Summary {
        let group = trainer.group, writes = group.isPrimary
        if writes { try checkWritable(output.checkpoint, "checkpoint") }
        let logHandle = try (writes ? output.log : nil).map { url -> FileHandle in
            try checkWritable(url, "log")
            // A new run starts its log afresh; a resumed one appends to it.
            let descriptor = open(url.path, O_WRONLY | O_CREAT | (resumed ? O_APPEND : O_TRUNC), 0o644)
            guard descriptor >= 0 else {
                throw MetaCoreError(.io, "cannot open the log \(url.path): \(String(cString: strerror(errno)))")
            }
            return FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
        }
        defer { try? logHandle?.close() }
        let board = try (writes ? output.tensorboard : nil).map(TensorBoardWriter.init(directory:))
        let scheduled = trainer.learner as? any ScheduledMetaLearner
        ProcessMemory.resetPeak()
        let residentAtStart = ProcessMemory.resident()
        let clock = ContinuousClock(), start = clock.now, first = trainer.iteration
        var recent = 0.0, recentAccuracy = 0.0, recentCount = 0
        var shown: (loss: Double, accuracy: Double?) = (.nan, nil)
        var stopping = false, requested = false
        while trainer.iteration < configuration.iterations && !stopping {
            let result = try trainer.step()
            recent += result.loss; recentAccuracy += result.accuracy ?? 0; recentCount += 1
            let done = trainer.iteration
            let seconds = (clock.now - start).seconds, trainedSeconds = earlierSeconds + seconds
            requested = stopRequested()
            stopping = requested || output.timeLimit.map { seconds >= $0 * 60 } ?? false
            // The ranks stop together, at rank 0's word, asked at every iteration only where a time limit needs it.
            if group.size > 1 {
                stopping = output.timeLimit != nil || done % output.logEvery == 0 ? try group.agree(stopping) : false
            }
            if done % output.logEvery == 0 || done == configuration.iterations || stopping {
                let loss = recent / Double(recentCount), accuracy = result.accuracy != nil ? recentAccuracy / Double(recentCount) : nil
                shown = (loss, accuracy)
                if let logHandle {
                    var record: [String: Any] = ["iteration": done, "loss": loss, "seconds": trainedSeconds, "gradient_norm": result.gradientNorm]
                    if let accuracy { record["accuracy"] = accuracy }
                    let line = try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys]) + Data("\n".utf8)
                    do { try logHandle.write(contentsOf: line) } catch {
                        throw MetaCoreError(.io, "cannot write the log \(output.log!.path): \(describe(error))")
                    }
                }
                if let board {
                    let rate = Double(configuration.metaLearningRate) * Double(scheduled?.metaLearningRateFactor(at: done - 1) ?? 1)
                    try board.add([("train/loss", loss), ("train/gradient_norm", result.gradientNorm), ("train/meta_learning_rate", rate),
                                   ("train/minutes", trainedSeconds / 60)] + (accuracy.map { [("train/accuracy", $0)] } ?? []), step: done)
                }
                recent = 0; recentAccuracy = 0; recentCount = 0
            }
            if shown.loss.isNaN { shown = (result.loss, result.accuracy) }
            guard writes else { continue }
            progress(Progress(iteration: done, total: configuration.iterations, rate: Double(done - first) / seconds,
                              loss: shown.loss, accuracy: shown.accuracy, isLast: done == configuration.iterations || stopping))
            let checkpointNow = done % output.checkpointEvery == 0 || done == configuration.iterations || stopping
            let snapshotNow = output.snapshotEvery.map { done % $0 == 0 } ?? false
            if checkpointNow || snapshotNow {
                let file = try TrainingCheckpoint.make(trainer, configuration: configuration, trainingSeconds: trainedSeconds)
                if checkpointNow { try file.write(to: output.checkpoint) }
                if snapshotNow { try file.write(to: Self.snapshot(of: output.checkpoint, at: done)) }
            }
        }
        if trainer.iteration == first && writes {
            try TrainingCheckpoint.make(trainer, configuration: configuration, trainingSeconds: earlierSeconds).write(to: output.checkpoint)
        }
        return Summary(iterations: trainer.iteration, seconds: (clock.now - start).seconds, stoppedAtTimeLimit: stopping && !requested,
                       stoppedOnRequest: stopping && requested, residentAtStartBytes: residentAtStart, peakBytes: ProcessMemory.peak())
    }

    /// `NAME-ITERATION.safetensors` beside `checkpoint`.
    public static func snapshot(of checkpoint: URL, at iteration: Int) -> URL {
        let name = checkpoint.deletingPathExtension().lastPathComponent + "-\(iteration)." + checkpoint.pathExtension
        return checkpoint.deletingLastPathComponent().appendingPathComponent(name)
    }
}

/// "42s", "3m07s", "2h05m".
public func formatDuration(_ seconds: Double) -> String {
    guard seconds.isFinite else { return "?" }
    let s = Int(seconds.rounded())
    return s >= 3600 ? String(format: "%dh%02dm", s / 3600, s % 3600 / 60) : s >= 60 ? String(format: "%dm%02ds", s / 60, s % 60) : "\(s)s"
}
