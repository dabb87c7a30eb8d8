import ArgumentParser
import Foundation
import MetaCore

/// What `metactl continual --output` writes and `metactl plot` reads.
struct ContinualReport: Codable {
    struct Point: Codable {
        /// Classes (or functions) learned so far.
        let seen: Int
        /// Mean over runs of the performance on everything seen, and its standard deviation.
        let mean: Double, sd: Double
    }
    let label: String
    let checkpoint: String, algorithm: String, task: String, iteration: Int
    let learner: String
    /// "accuracy" (higher is better) or "mse".
    let metric: String
    let runs: Int
    let points: [Point]
    let forgetting: Double?, backwardTransfer: Double?
    /// One performance matrix per run.
    let matrices: [[[Double]]]
    let seconds: Double
}

/// Runs a checkpoint's network through a continual stream and prints what it retained.
struct Continual: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Learn new classes (or functions) one after another from a trained network; report accuracy on all seen, forgetting and backward transfer.",
        discussion: """
        continual-omniglot checkpoints meet unseen classes from the evaluation alphabets, 15 drawings each, one \
        pass, and are tested on the other 5 drawings of every class seen; incremental-sine checkpoints meet new \
        sine waves. Learners: online (SGD on --adapt head|all, OML's meta-test rule and the fine-tuning \
        baseline), mer (Meta-Experience Replay), iid (the offline upper bound: everything seen, shuffled, \
        several epochs).
        """)

    @Option(help: "Checkpoint written by `metactl train` on continual-omniglot or incremental-sine.") var checkpoint: String
    @Option(help: "online | mer | iid.") var learner = "online"
    @Option(parsing: .unconditional, help: "Learning rate (default: the checkpoint's inner learning rate).") var lr: Float?
    @Option(help: "Parameters the learner changes: head (the prediction network; the representation stays frozen) | all.") var adapt = "head"
    @Option(help: "continual-omniglot: numbers of classes to report, comma-separated (the stream has the largest).") var classes = "10,50,100,200"
    @Option(parsing: .unconditional, help: "continual-omniglot: classes per stage (forgetting and the curve are measured per stage).") var stageSize = 10
    @Option(parsing: .unconditional, help: "incremental-sine: training points per function (default: the checkpoint's shots).") var trainPoints: Int?
    @Option(parsing: .unconditional, help: "incremental-sine: held-out points per function.") var testPoints = 100
    @Option(parsing: .unconditional, help: "Samples per online step (default: the checkpoint's online batch).") var batch: Int?
    @Option(parsing: .unconditional, help: "Runs, each with its own classes (functions) and order, seeds --seed, --seed+1, …") var runs = 1
    @Option(parsing: .unconditional, help: "Seed of the first run's stream.") var seed: UInt64 = 0
    @Option(parsing: .unconditional, help: "MER: replay memory size (samples).") var memory = 1000
    @Option(parsing: .unconditional, help: "MER: batches per incoming sample.") var merBatches = 2
    @Option(parsing: .unconditional, help: "MER: samples per batch (the new one and replayed ones).") var merBatchSize = 5
    @Option(parsing: .unconditional, help: "MER: within-batch Reptile step β.") var merBeta: Float = 1
    @Option(parsing: .unconditional, help: "MER: across-batch Reptile step γ.") var merGamma: Float = 0.3
    @Option(parsing: .unconditional, help: "iid: epochs over everything seen.") var epochs = 5
    @Option(help: "Name of this run in the report and the plot (default: algorithm and learner).") var label: String?
    @Option(help: "Draw the accuracy-versus-classes curve to this SVG file.") var svg: String?
    @OptionGroup var dataset: DatasetOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard ["online", "mer", "iid"].contains(learner) else { throw ValidationError("--learner must be online, mer or iid, got '\(learner)'") }
        guard ["head", "all"].contains(adapt) else { throw ValidationError("--adapt must be head or all, got '\(adapt)'") }
        guard (1 ... 10_000).contains(runs) else { throw ValidationError("--runs must be between 1 and 10000, got \(runs)") }
        guard (1 ... 10_000).contains(stageSize) else { throw ValidationError("--stage-size must be between 1 and 10000, got \(stageSize)") }
        guard (1 ... 1_000_000).contains(testPoints), (trainPoints ?? 1) >= 1, (trainPoints ?? 1) <= 1_000_000 else {
            throw ValidationError("--train-points and --test-points must be between 1 and 1000000")
        }
        if let batch, !(1 ... 1_000_000).contains(batch) { throw ValidationError("--batch must be between 1 and 1000000, got \(batch)") }
        guard (1 ... 10_000).contains(epochs) else { throw ValidationError("--epochs must be between 1 and 10000, got \(epochs)") }
        guard (1 ... 10_000_000).contains(memory), (1 ... 1000).contains(merBatches), (1 ... 10_000).contains(merBatchSize) else {
            throw ValidationError("--memory (1 ... 10000000), --mer-batches (1 ... 1000) and --mer-batch-size (1 ... 10000) are out of range")
        }
    }

    func run() throws {
        let file = try SafeTensors.read(from: URL(fileURLWithPath: checkpoint))
        let config = try TrainingCheckpoint.configuration(of: file)
        guard let continual = try config.components().taskFamily.continual else {
            throw ValidationError("\(checkpoint) was trained on '\(config.task)'; continual evaluation needs a checkpoint of a continual task family (\(Registry.taskFamilies.filter { $0.continual != nil }.map(\.name).joined(separator: ", ")))")
        }
        let data = dataset.source(for: config), options = try config.resolvedOptions()
        let (trainer, _) = try TrainingCheckpoint.restore(file, data: data, threads: 1)
        let model = trainer.model, theta = Array(trainer.metaParameters[0 ..< model.parameterCount])
        let points = try reportedPoints(config, classification: continual.isClassification)
        let clock = ContinuousClock(), start = clock.now
        var matrices: [[[Double]]] = []
        var progress = ProgressLine(interval: 30)
        // With --adapt head the rule learns on the head alone, over the frozen body's features.
        let split = adapt == "head" ? try model.split(headLayers: options.int("head-layers") ?? 1) : nil
        let (runModel, runTheta) = split.map { ($0.head, Array(theta[$0.body.parameterCount...])) } ?? (model, theta)
        let description = try makeLearner(config, options: options, adapted: 0 ..< runModel.parameterCount).description
        // Under MPI each rank streams its share of the runs; the matrices are gathered in run order.
        let group = Cluster.group
        for r in group.share(of: runs) {
            var stream = try continual.stream(.init(configuration: config, options: options, data: data, classes: points.last!,
                                                    stageSize: stageSize, trainPoints: trainPoints, testPoints: testPoints,
                                                    seed: seed &+ UInt64(r)))
            if let body = split?.body { stream = try stream.features(of: body, parameters: Array(theta[..<body.parameterCount])) }
            var rule = try makeLearner(config, options: options, adapted: 0 ..< runModel.parameterCount)
            let result = try ContinualEvaluation.run(&rule, parameters: runTheta, stream: stream, workspace: Workspace(model: runModel),
                                                     seed: seed &+ UInt64(r)) { stage, row in
                let seen = stream.classesSeen?[stage] ?? stage + 1
                progress.update(force: stage == stream.stages.count - 1) {
                    String(format: "run %d/%d: %d seen, %@ %.4f", r + 1, runs, seen,
                           stream.isClassification ? "accuracy" : "MSE", row.reduce(0, +) / Double(row.count))
                }
            }
            matrices.append(result.metrics.matrix)
        }
        progress.finish()
        let rows = try group.gather(matrices.map { $0.flatMap { $0 } }, tasks: runs)
        // Row i of a performance matrix has i + 1 entries.
        matrices = rows.map { row in
            var rest = row[...], matrix: [[Double]] = []
            while !rest.isEmpty { matrix.append(Array(rest.prefix(matrix.count + 1))); rest = rest.dropFirst(matrix.count) }
            return matrix
        }
        let report = try makeReport(config, classification: continual.isClassification, iteration: trainer.iteration,
                                    learner: description, matrices: matrices, seconds: (clock.now - start).seconds)
        if let svg { try draw([report], to: svg) }
        try output.report(report) { printTable(report, points: points) }
    }

    /// The numbers of classes (functions) the table reports.
    func reportedPoints(_ config: TrainingConfiguration, classification: Bool) throws -> [Int] {
        guard classification else { return Array(1 ... (config.ways ?? 10)) }
        let list = classes.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !list.isEmpty, list.allSatisfy({ $0 != nil && $0! > 0 }) else {
            throw ValidationError("--classes must be positive numbers separated by commas, got '\(classes)'")
        }
        let sorted = list.map { $0! }.sorted()
        guard sorted.allSatisfy({ $0 % stageSize == 0 }) else {
            throw ValidationError("every number in --classes must be a multiple of --stage-size \(stageSize)")
        }
        return sorted
    }

    func makeLearner(_ config: TrainingConfiguration, options: ResolvedOptions, adapted: Range<Int>) throws -> any ContinualLearner {
        let rate = lr ?? config.innerLearningRate, size = batch ?? options.int("online-batch") ?? 1
        switch learner {
        case "mer":
            return try MER(learningRate: rate, withinBatch: merBeta, acrossBatches: merGamma, batches: merBatches,
                           batchSize: merBatchSize, memorySize: memory, adapted: adapted)
        case "iid": return try OfflineIID(learningRate: rate, batchSize: max(size, 10), epochs: epochs, adapted: adapted)
        default: return try OnlineSGD(learningRate: rate, batchSize: size, adapted: adapted)
        }
    }

    func makeReport(_ config: TrainingConfiguration, classification: Bool, iteration: Int, learner description: String,
                    matrices: [[[Double]]], seconds: Double) throws -> ContinualReport {
        let metrics = try matrices.map { try ContinualMetrics(matrix: $0, higherIsBetter: classification) }
        let stages = matrices[0].count
        let points = (0 ..< stages).map { i -> ContinualReport.Point in
            let values = metrics.map { $0.averages[i] }
            let mean = values.reduce(0, +) / Double(values.count)
            let sd = values.count > 1 ? (values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(values.count - 1)).squareRoot() : 0
            return .init(seen: classification ? (i + 1) * stageSize : i + 1, mean: mean, sd: sd)
        }
        func mean(_ values: [Double?]) -> Double? {
            let present = values.compactMap { $0 }
            return present.isEmpty ? nil : present.reduce(0, +) / Double(present.count)
        }
        return ContinualReport(label: label ?? "\(config.algorithm), \(learner)", checkpoint: checkpoint, algorithm: config.algorithm,
                               task: config.task, iteration: iteration, learner: description,
                               metric: classification ? "accuracy" : "mse", runs: matrices.count, points: points,
                               forgetting: mean(metrics.map(\.forgetting)), backwardTransfer: mean(metrics.map(\.backwardTransfer)),
                               matrices: matrices, seconds: seconds)
    }

    func printTable(_ report: ContinualReport, points: [Int]) {
        let accuracy = report.metric == "accuracy", unit = accuracy ? "classes" : "functions"
        print("\(report.algorithm) on \(report.task) (\(report.iteration) iterations), \(report.learner); \(report.runs) run(s), \(formatDuration(report.seconds))")
        print("\(unit)   \(accuracy ? "accuracy on all seen" : "MSE on all seen")" + (report.runs > 1 ? " (mean ± sd over runs)" : ""))
        for point in report.points where points.contains(point.seen) {
            let value = accuracy ? String(format: "%6.2f%%", 100 * point.mean) : String(format: "%8.4f", point.mean)
            let spread = report.runs > 1 ? (accuracy ? String(format: " ± %.2f%%", 100 * point.sd) : String(format: " ± %.4f", point.sd)) : ""
            print(String(format: "%7d   ", point.seen) + value + spread)
        }
        let scale = accuracy ? 100.0 : 1.0, suffix = accuracy ? " points" : ""
        if let f = report.forgetting, let b = report.backwardTransfer {
            print(String(format: "forgetting %.2f%@, backward transfer %.2f%@ (over %d stages)", f * scale, suffix, b * scale, suffix, report.matrices[0].count))
        }
    }
}

/// Draws `reports` as one accuracy- (or MSE-) versus-classes chart.
func draw(_ reports: [ContinualReport], to path: String, title: String? = nil) throws {
    guard let first = reports.first else { throw ValidationError("nothing to plot") }
    guard reports.allSatisfy({ $0.metric == first.metric }) else { throw ValidationError("cannot plot accuracy and MSE reports together") }
    let accuracy = first.metric == "accuracy"
    let series = reports.map { report in
        LinePlot.Series(label: report.label, points: report.points.map { (Double($0.seen), accuracy ? 100 * $0.mean : $0.mean) })
    }
    let plot = LinePlot(title: title ?? (accuracy ? "Continual Omniglot: accuracy on all classes seen" : "Incremental sines: MSE on all functions seen"),
                        xLabel: accuracy ? "classes learned" : "functions learned", yLabel: accuracy ? "accuracy (%)" : "MSE",
                        series: series, yRange: accuracy ? 0 ... 100 : nil)
    try writeAtomically(Data(try plot.svg().utf8), to: URL(fileURLWithPath: path))
}

/// Draws curves on one SVG chart: continual-learning reports, or training logs and learning curves.
struct Plot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw curves as one SVG chart: `metactl continual --output` reports, or `metactl train --log` logs (JSON lines) and `scripts/learning-curve.sh` curves (CSV).")

    @Argument(help: "The files: continual reports, or training logs and learning curves (one series each).") var files: [String]
    @Option(help: "SVG file to write.") var output: String
    @Option(help: "Chart title.") var title: String?
    @Option(help: "Training logs and curves: the x axis, iterations or minutes (of training).") var x: XAxis = .iterations
    @Option(help: "Training logs: the y axis, loss or accuracy (default: accuracy where every log has it, else loss).") var y: YAxis?
    @Option(help: "Series labels, comma-separated (default: the file names).") var labels: String?

    enum XAxis: String, ExpressibleByArgument, CaseIterable { case iterations, minutes }
    enum YAxis: String, ExpressibleByArgument, CaseIterable { case loss, accuracy }

    /// A file's curve: a continual report, a training log, or a learning curve (accuracy in percent).
    enum Curve {
        case report(ContinualReport), log(TrainingLog), curve([(iteration: Double, minutes: Double, accuracy: Double)])
    }

    func run() throws {
        let names = labels.map { $0.split(separator: ",").map(String.init) } ?? files.map { URL(fileURLWithPath: $0).deletingPathExtension().lastPathComponent }
        guard names.count == files.count else { throw ValidationError("--labels names \(names.count) series for \(files.count) files") }
        let curves = try files.map(Self.read)
        let reports = curves.compactMap { if case .report(let r) = $0 { r } else { nil } }
        if !reports.isEmpty {
            guard reports.count == curves.count else { throw ValidationError("continual reports and training curves cannot share a chart") }
            try draw(reports, to: output, title: title)
            return print("wrote \(output)")
        }
        let logs = curves.compactMap { if case .log(let l) = $0 { l } else { nil } }
        let accuracy = y.map { $0 == .accuracy } ?? logs.allSatisfy { $0.records.allSatisfy { $0.accuracy != nil } }
        if accuracy, let log = logs.firstIndex(where: { $0.records.contains { $0.accuracy == nil } }) {
            throw ValidationError("\(files[log]) has no accuracy (a regression run?); plot --y loss")
        }
        if !accuracy, curves.contains(where: { if case .curve = $0 { true } else { false } }) {
            throw ValidationError("a learning curve has accuracy only; plot --y accuracy")
        }
        let minutes = x == .minutes
        let series = zip(names, curves).map { name, curve -> LinePlot.Series in
            switch curve {
            case .log(let log):
                return LinePlot.Series(label: name, points: log.records.map {
                    (minutes ? $0.seconds / 60 : Double($0.iteration), accuracy ? 100 * $0.accuracy! : $0.loss)
                })
            case .curve(let rows): return LinePlot.Series(label: name, points: rows.map { (minutes ? $0.minutes : $0.iteration, $0.accuracy) })
            case .report: preconditionFailure("reports are drawn above")
            }
        }
        let plot = LinePlot(title: title ?? (accuracy ? "accuracy" : "loss") + " during training", xLabel: minutes ? "minutes of training" : "iterations",
                            yLabel: accuracy ? "accuracy (%)" : "loss", series: series)
        try writeAtomically(Data(try plot.svg().utf8), to: URL(fileURLWithPath: output))
        print("wrote \(output)")
    }

    static func read(_ path: String) throws -> Curve {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw ValidationError("cannot read \(path): \(MetaCoreError.message(for: error))")
        }
        if let report = try? JSONDecoder().decode(ContinualReport.self, from: data) { return .report(report) }
        let text = String(decoding: data, as: UTF8.self)
        guard text.hasPrefix("iteration,minutes,accuracy") else { return .log(try TrainingLog(decoding: data, source: path)) }
        var rows: [(iteration: Double, minutes: Double, accuracy: Double)] = []
        for (index, line) in text.split(separator: "\n").enumerated().dropFirst() {
            let fields = line.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
            guard fields.count >= 3, let iteration = fields[0], let minutes = fields[1], let accuracy = fields[2],
                  [iteration, minutes, accuracy].allSatisfy(\.isFinite) else {
                throw ValidationError("\(path), line \(index + 1): not iteration,minutes,accuracy numbers: \(line.prefix(80))")
            }
            rows.append((iteration, minutes, accuracy))
        }
        guard !rows.isEmpty else { throw ValidationError("\(path) is a learning curve without rows") }
        return .curve(rows)
    }
}
