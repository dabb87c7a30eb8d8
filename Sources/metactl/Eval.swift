import ArgumentParser
import Foundation
import MetaCore

/// Evaluates a checkpoint: post-adaptation query loss (and accuracy) over a fixed, seeded set of tasks.
struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Mean post-adaptation loss (and accuracy) with a 95% confidence interval over fixed held-out tasks.",
        discussion: "The checkpoint's configuration (its algorithm, task family, split, backbone) is used as stored; "
            + "\(Evaluation.overridableSettings.sorted().map { "--\($0)" }.joined(separator: ", ")) may change it "
            + "(--queries: per task or class; default 100 for sine, 15 for omniglot), and so may a task family's test-episode options "
            + "(omniglot: --episodes). Metric learners may change --ways.")

    @Option(help: "Checkpoint written by `metactl train`.") var checkpoint: String
    @Option(parsing: .unconditional, help: "Held-out tasks (episodes).") var tasks = 600
    @Option(parsing: .unconditional, help: "Adaptation steps: losses are reported after 0 … this many (gradient-based learners).") var steps = 10
    @Option(parsing: .unconditional, help: "Seed of the evaluation tasks (the same seed gives the same tasks for every model).") var evalSeed: UInt64 = 1_000_003
    @Flag(help: "Evaluate on fresh episodes of the classes the checkpoint was meta-trained on (drawn as training draws them), not the held-out ones: the other side of the generalisation gap.")
    var metaTrainClasses = false
    @OptionGroup var overrides: ConfigurationOptions
    @OptionGroup var threads: ThreadOptions
    @OptionGroup var dataset: DatasetOptions
    @OptionGroup var output: OutputOptions
    @Option(help: "Also write the result as TensorBoard scalars at the checkpoint's iteration to an event file in this directory (eval/<N>-way <K>-shot/accuracy, after the last step; eval/.../loss).")
    var tensorboard: String?

    func validate() throws {
        guard (1 ... 1_000_000).contains(tasks) else { throw ValidationError("--tasks must be between 1 and 1000000, got \(tasks)") }
        guard (0 ... 10_000).contains(steps) else { throw ValidationError("--steps must be between 0 and 10000, got \(steps)") }
    }

    func run() throws {
        let file = try SafeTensors.read(from: URL(fileURLWithPath: checkpoint))
        let stored = try TrainingCheckpoint.configuration(of: file)
        let config = try overrides.apply(to: stored)
        let queries = overrides.given("queries") ? config.queries : try config.components().taskFamily.evaluationQueries ?? stored.queries
        let clock = ContinuousClock(), start = clock.now
        let (result, trainer) = try Evaluation.run(checkpoint: file, configuration: config, data: dataset.source(for: stored),
                                                   taskCount: tasks, steps: steps, queryCount: queries,
                                                   seed: evalSeed, split: metaTrainClasses ? .train : .test, threads: threads.count, group: Cluster.group)
        try output.report(result) {
            let shape = config.ways.map { "\($0)-way \(config.shots)-shot, \(queries) queries per class" } ?? "\(config.shots) shots, \(queries) query points"
            print("\(config.algorithm) on \(config.task), \(trainer.iteration) iterations; \(tasks) tasks\(metaTrainClasses ? " of the meta-training classes" : ""), \(shape)" + (trainer.learner is any GradientMetaLearner ? ", inner lr \(config.innerLearningRate)" : ""))
            print("steps   loss (95% CI)" + (result.accuracy != nil ? "        accuracy (95% CI)" : ""))
            for k in result.loss.indices {
                var line = String(format: "%5d   %.4f ± %.4f", k, result.loss[k].mean, result.loss[k].confidence95)
                if let accuracy = result.accuracy { line += String(format: "    %.2f%% ± %.2f%%", 100 * accuracy[k].mean, 100 * accuracy[k].confidence95) }
                print(line)
            }
            if let v = result.verification {
                print(String(format: "pairs   %d same/different pairs: verification accuracy %.2f%% (balanced, at p = 0.5), ROC AUC %.4f", v.pairs, 100 * v.accuracy, v.auc))
            }
            print("evaluated in \(formatDuration((clock.now - start).seconds))")
        }
        if let tensorboard, Cluster.group.isPrimary {
            let setting = "eval/" + (config.ways.map { "\($0)-way \(config.shots)-shot" } ?? "\(config.shots)-shot")
            var scalars = [("\(setting)/loss", result.loss.last!.mean)]
            if let accuracy = result.accuracy { scalars.append(("\(setting)/accuracy", accuracy.last!.mean)) }
            try TensorBoardWriter(directory: URL(fileURLWithPath: tensorboard)).add(scalars, step: trainer.iteration)
        }
    }
}
