import ArgumentParser
import Foundation
import MetaCore

/// Checks an algorithm's analytic meta-gradient against finite differences of its meta-loss.
struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare the analytic meta-gradient with central finite differences of the meta-loss, per parameter tensor.")

    @Option(help: "maml | fomaml | metasgd | anil | oml.") var algorithm = "maml"
    @Option(help: "Task family: sine | incremental-sine.") var task = "sine"
    @Option(help: "Inner steps.") var innerSteps = 1
    @Option(help: "Inner learning rate.") var innerLr: Float = 0.01
    @Option(help: "Support and query examples per task.") var shots = 10
    @Option(help: "Random tasks to check.") var tasks = 3
    @Option(parsing: .upToNextOption, help: "Finite-difference steps along a unit direction; the best agreement is reported.")
    var steps: [Double] = [1e-2, 3e-3, 1e-3, 3e-4]
    @Option(help: "Random seed.") var seed: UInt64 = 0

    func run() throws {
        guard algorithm != "reptile" else {
            throw ValidationError("Reptile's update is not the gradient of a loss, so there is nothing to verify")
        }
        var config = TrainingConfiguration()
        config.algorithm = algorithm; config.task = task; config.innerSteps = innerSteps
        config.innerLearningRate = innerLr; config.shots = shots; config.queries = shots; config.seed = seed
        let learner = try config.makeLearner(), model = try config.makeModel(), distribution = try config.makeTasks()
        let workspace = Workspace(model: model)
        var random = RandomSource(seed: seed)
        let meta = learner.initialMetaParameters(for: model, seed: seed)
        let pieces = model.layout.entries.map { ($0.name, $0.range) } + learner.extraMetaParameters(for: model)
        print("\(learner.name), \(innerSteps) inner step(s) at lr \(innerLr), \(task): analytic meta-gradient vs fourth-order central differences (steps \(steps.map { "\($0)" }.joined(separator: ", ")))")
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
    }
}
