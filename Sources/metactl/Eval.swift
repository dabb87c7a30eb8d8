import ArgumentParser
import Foundation
import MetaCore

/// Evaluates a checkpoint: post-adaptation query loss (and accuracy) over a fixed, seeded set of tasks.
struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Mean post-adaptation loss with a 95% confidence interval over fixed held-out tasks.")

    @Option(help: "Checkpoint written by `metactl train`.") var checkpoint: String
    @Option(help: "Held-out tasks.") var tasks = 600
    @Option(help: "Adaptation steps: losses are reported after 0 … this many.") var steps = 10
    @Option(help: "Query points per evaluation task.") var queries = 100
    @Option(help: "Inner learning rate for adaptation (default: the training one).") var innerLr: Float?
    @Option(help: "Seed of the evaluation tasks (the same seed gives the same tasks for every model).") var evalSeed: UInt64 = 1_000_003
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let file = try SafeTensors.read(from: URL(fileURLWithPath: checkpoint))
        var (trainer, config) = try TrainingCheckpoint.restore(file)
        if let innerLr {
            config.innerLearningRate = innerLr
            let restored = trainer.metaParameters
            trainer = try config.makeTrainer()
            trainer.metaParameters = restored
        }
        let clock = ContinuousClock(), start = clock.now
        let result = try Evaluation.run(trainer.learner, meta: trainer.metaParameters, tasks: config.makeTasks(), taskCount: tasks,
                                        steps: steps, queryCount: queries, seed: evalSeed, workspace: trainer.workspace)
        if json {
            try printJSON(result)
            return
        }
        print("\(config.algorithm) on \(config.task), \(trainer.iteration) iterations; \(tasks) tasks, \(config.shots) shots, \(queries) query points, inner lr \(config.innerLearningRate)")
        print("steps   loss (95% CI)" + (result.accuracy != nil ? "        accuracy (95% CI)" : ""))
        for k in 0 ... steps {
            var line = String(format: "%5d   %.4f ± %.4f", k, result.loss[k].mean, result.loss[k].confidence95)
            if let accuracy = result.accuracy { line += String(format: "    %.2f%% ± %.2f%%", 100 * accuracy[k].mean, 100 * accuracy[k].confidence95) }
            print(line)
        }
        print("evaluated in \(formatDuration((clock.now - start).seconds))")
    }
}
