import ArgumentParser
import Foundation
import MetaCore

/// Checks an algorithm's analytic meta-gradient against finite differences of its meta-loss.
struct Verify: ParsableCommand {
    static var configuration: CommandConfiguration {
        CommandConfiguration(
            abstract: "Compare the analytic meta-gradient with central finite differences of the meta-loss, per parameter tensor.",
            discussion: "Algorithms: \(Registry.algorithms.filter(\.verifiable).map(\.name).joined(separator: ", ")). "
                + "--queries defaults to --shots.\n\n" + TrainingConfiguration.help)
    }

    @OptionGroup var settings: ConfigurationOptions
    @OptionGroup var dataset: DatasetOptions
    @Option(parsing: .unconditional, help: "Random tasks to check.") var tasks = 3
    @Option(parsing: .upToNextOption, help: "Finite-difference steps along a unit direction; the best agreement is reported.")
    var steps: [Double] = [1e-2, 3e-3, 1e-3, 3e-4]

    func validate() throws {
        guard (1 ... 10_000).contains(tasks) else { throw ValidationError("--tasks must be between 1 and 10000, got \(tasks)") }
        guard !steps.isEmpty, steps.allSatisfy({ $0 > 0 && $0.isFinite }) else {
            throw ValidationError("--steps must be positive numbers, got \(steps.map { "\($0)" }.joined(separator: " "))")
        }
    }

    func run() throws {
        var config = try settings.apply(to: TrainingConfiguration())
        if !settings.given("queries") { config.queries = config.shots }
        let entry = try config.components().algorithm
        guard entry.verifiable else {
            throw ValidationError("\(entry.name)'s update is not the gradient of a loss, so there is nothing to verify")
        }
        let learner = try config.makeLearner(), distribution = try config.makeTasks(data: dataset.source(for: config))
        let model = try config.makeModel(for: distribution)
        let workspace = Workspace(model: model)
        var random = RandomSource(seed: config.seed)
        let meta = learner.initialMetaParameters(for: model, seed: config.seed)
        let pieces = model.layout.entries.map { ($0.name, $0.range) } + learner.extraMetaParameters(for: model)
        print("\(learner.name), \(config.innerSteps) inner step(s) at lr \(config.innerLearningRate), \(config.task): analytic meta-gradient vs fourth-order central differences (steps \(steps.map { "\($0)" }.joined(separator: ", ")))")
        print("relative error |g·u − FD| / |FD| along a random unit direction u within each tensor, smallest over the steps")
        print("task  " + pieces.map { $0.0.padding(toLength: 13, withPad: " ", startingAt: 0) + " " }.joined())
        for t in 0 ..< tasks {
            let sample = try distribution.sample(&random)
            var gradient: [Float] = []
            _ = try learner.metaGradient(meta, task: sample, workspace: workspace, into: &gradient)
            var row = String(format: "%4d  ", t)
            for (_, range) in pieces {
                var u = [Float](repeating: 0, count: meta.count)
                for i in range { u[i] = random.normal() }
                u.scale(by: Float(1 / u.norm))   // unit length: a step h moves the parameters by exactly h
                let metaLoss = { (p: [Float]) in try learner.metaLoss(p, task: sample, workspace: workspace).loss }
                let analytic = zip(gradient, u).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
                let errors = try steps.map { h in
                    let numeric = try FiniteDifferences.directional(metaLoss, at: meta, along: u, step: h)
                    return abs(analytic - numeric) / max(abs(numeric), 1e-12)
                }
                row += String(format: "%-14.2e", errors.min()!)
            }
            print(row)
        }
        print("(float32 model: errors of 1e-5 … 1e-3 are rounding; a step that crosses a ReLU kink disagrees, hence several steps)")
        if learner is ImplicitMAML {
            print("(imaml: the implicit meta-gradient is the meta-loss's derivative at the inner problem's optimum; it agrees once --inner-steps solve it and --cg-steps solve the linear system, e.g. --inner-steps 200 --imaml-lambda 5 --cg-steps 100 on sine)")
        }
    }
}
