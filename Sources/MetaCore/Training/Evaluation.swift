/// Post-adaptation performance over a fixed, seeded set of held-out tasks.
public struct Evaluation: Sendable, Codable {
    /// Mean and 95% confidence half-width of a quantity over tasks.
    public struct Estimate: Sendable, Codable {
        public let mean: Double, confidence95: Double
        init(_ samples: [Double]) {
            let n = Double(samples.count), mean = samples.reduce(0, +) / n
            let variance = samples.count > 1 ? samples.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / (n - 1) : 0
            self.mean = mean
            self.confidence95 = 1.96 * (variance / n).squareRoot()
        }
    }

    /// `loss[k]`: the query loss after k adaptation steps (k = 0 … steps; one entry for metric learners).
    public let loss: [Estimate]
    /// The same for accuracy, for classification tasks.
    public let accuracy: [Estimate]?
    public let tasks: Int

    /// Adapts `meta` to each of `taskCount` tasks drawn from `seed` (the same tasks for every model given the
    /// same seed) and records the query loss after 0 … `steps` inner steps. Tasks run on `runner`'s threads;
    /// the result does not depend on their number.
    public static func run(_ learner: any MetaLearner, meta: [Float], tasks: any TaskDistribution, taskCount: Int,
                           steps: Int, queryCount: Int?, seed: UInt64, runner: TaskRunner) throws -> Evaluation {
        guard taskCount > 0 else { throw MetaCoreError.argument("evaluation needs at least 1 task, got \(taskCount)") }
        guard steps >= 0 else { throw MetaCoreError.argument("adaptation steps must be >= 0, got \(steps)") }
        // Metric learners return one value however many steps are asked for: size by the curves themselves.
        var losses: [[Double]] = [], accuracies: [[Double]] = []
        var classification = false
        let root = RandomSource(seed: seed)
        let curves = try runner.map(taskCount) { index, worker in
            var random = root.fork(UInt64(index))
            let task = try tasks.sample(&random, queryCount: queryCount)
            return try learner.adaptationCurve(meta, task: task, steps: steps, workspace: worker.workspace)
        }
        for curve in curves {
            for (k, value) in curve.enumerated() {
                if k == losses.count { losses.append([]); accuracies.append([]) }
                losses[k].append(value.loss)
                if let accuracy = value.accuracy { accuracies[k].append(accuracy); classification = true }
            }
        }
        return Evaluation(loss: losses.map(Estimate.init), accuracy: classification ? accuracies.map(Estimate.init) : nil,
                          tasks: taskCount)
    }
}
