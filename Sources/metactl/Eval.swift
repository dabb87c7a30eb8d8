import ArgumentParser
import Foundation
import MetaCore

/// Evaluates a checkpoint: post-adaptation query loss (and accuracy) over a fixed, seeded set of tasks.
struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Mean post-adaptation loss (and accuracy) with a 95% confidence interval over fixed held-out tasks.")

    @Option(help: "Checkpoint written by `metactl train`.") var checkpoint: String
    @Option(help: "Held-out tasks (episodes).") var tasks = 600
    @Option(help: "Adaptation steps: losses are reported after 0 … this many (gradient-based learners).") var steps = 10
    @Option(help: "Query examples per task (per class for classification; default 100 for sine, 15 for omniglot).") var queries: Int?
    @Option(help: "Classes per episode (default: the training ones; metric learners may change it).") var ways: Int?
    @Option(help: "Support examples per class (default: the training ones).") var shots: Int?
    @Option(help: "Inner learning rate for adaptation (default: the training one).") var innerLr: Float?
    @Option(help: "Seed of the evaluation tasks (the same seed gives the same tasks for every model).") var evalSeed: UInt64 = 1_000_003
    @Option(help: "Threads: episodes are evaluated concurrently (default: all cores).") var threads = ProcessInfo.processInfo.activeProcessorCount
    @OptionGroup var dataset: DatasetOptions
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let file = try SafeTensors.read(from: URL(fileURLWithPath: checkpoint))
        var config = try TrainingCheckpoint.configuration(of: file)
        let data = try dataset.load(for: config)
        var (trainer, _) = try TrainingCheckpoint.restore(file, dataset: data, threads: threads)
        let trained = config
        config.innerLearningRate = innerLr ?? config.innerLearningRate
        config.ways = ways ?? config.ways
        config.shots = shots ?? config.shots
        if config != trained {
            let restored = trainer.metaParameters
            trainer = try config.makeTrainer(dataset: data, threads: threads)
            guard restored.count == trainer.metaParameters.count else {
                throw ValidationError("the checkpoint's model has \(restored.count) meta-parameters; with these overrides it would need \(trainer.metaParameters.count) (a classifier's head fixes its number of ways)")
            }
            trainer.metaParameters = restored
        }
        let queryCount = queries ?? (config.task == "omniglot" ? 15 : 100)
        let clock = ContinuousClock(), start = clock.now
        let result = try Evaluation.run(trainer.learner, meta: trainer.metaParameters, tasks: config.makeTasks(.test, dataset: data),
                                        taskCount: tasks, steps: steps, queryCount: queryCount, seed: evalSeed, runner: trainer.runner)
        if json {
            try printJSON(result)
            return
        }
        let shape = config.ways.map { "\($0)-way \(config.shots)-shot, \(queryCount) queries per class" } ?? "\(config.shots) shots, \(queryCount) query points"
        print("\(config.algorithm) on \(config.task), \(trainer.iteration) iterations; \(tasks) tasks, \(shape)" + (trainer.learner is any GradientMetaLearner ? ", inner lr \(config.innerLearningRate)" : ""))
        print("steps   loss (95% CI)" + (result.accuracy != nil ? "        accuracy (95% CI)" : ""))
        for k in result.loss.indices {
            var line = String(format: "%5d   %.4f ± %.4f", k, result.loss[k].mean, result.loss[k].confidence95)
            if let accuracy = result.accuracy { line += String(format: "    %.2f%% ± %.2f%%", 100 * accuracy[k].mean, 100 * accuracy[k].confidence95) }
            print(line)
        }
        print("evaluated in \(formatDuration((clock.now - start).seconds))")
    }
}
