/// Meta-training: each iteration samples a meta-batch of tasks, averages the learner's meta-gradients,
/// optionally clips their norm, and takes one meta-optimiser step.
///
/// Task `i` of iteration `t` is drawn from a random source derived from (seed, t, i) alone, so a run resumed
/// from a checkpoint sees exactly the tasks the uninterrupted run would have.
public struct MetaTrainer {
    public let learner: any MetaLearner
    public let tasks: any TaskDistribution
    public let metaBatch: Int
    public let clip: Float?
    public let seed: UInt64
    public var optimizer: any Optimizer
    public var metaParameters: [Float]
    /// Iterations completed so far.
    public var iteration = 0
    public let workspace: Workspace

    public init(learner: any MetaLearner, model: Model, tasks: any TaskDistribution, optimizer: any Optimizer,
                metaBatch: Int, clip: Float? = nil, seed: UInt64) throws {
        guard metaBatch > 0 else { throw MetaCoreError.argument("meta-batch must be at least 1 task, got \(metaBatch)") }
        if let clip, !(clip > 0) { throw MetaCoreError.argument("gradient clipping norm must be positive, got \(clip)") }
        try learner.check(model: model, tasks: tasks)
        self.learner = learner; self.tasks = tasks; self.optimizer = optimizer
        self.metaBatch = metaBatch; self.clip = clip; self.seed = seed
        self.metaParameters = learner.initialMetaParameters(for: model, seed: seed)
        self.workspace = Workspace(model: model)
    }

    public struct StepResult: Sendable {
        /// Mean query loss after adaptation over the meta-batch, and mean accuracy for classification.
        public let loss: Double, accuracy: Double?
        /// Norm of the averaged meta-gradient before clipping.
        public let gradientNorm: Double
    }

    /// The random source for task `index` of iteration `iteration`.
    public static func taskRandom(seed: UInt64, iteration: Int, index: Int) -> RandomSource {
        RandomSource(seed: seed).fork(UInt64(iteration)).fork(UInt64(index))
    }

    /// One meta-iteration.
    public mutating func step() throws -> StepResult {
        var sum = [Float](repeating: 0, count: metaParameters.count), gradient: [Float] = []
        var loss = 0.0, correct = 0, count = 0, classification = false
        for index in 0 ..< metaBatch {
            var random = Self.taskRandom(seed: seed, iteration: iteration, index: index)
            let task = try tasks.sample(&random)
            let value = try learner.metaGradient(metaParameters, task: task, workspace: workspace, into: &gradient)
            sum.add(gradient)
            loss += value.loss
            if let c = value.correct { correct += c; classification = true }
            count += value.count
        }
        sum.scale(by: 1 / Float(metaBatch))
        let norm = clip.map { clipNorm(&sum, maxNorm: $0) } ?? sum.norm
        guard norm.isFinite else {
            throw MetaCoreError.argument("meta-gradient is not finite at iteration \(iteration) (loss \(loss / Double(metaBatch))); lower the learning rates")
        }
        optimizer.step(&metaParameters, gradient: sum)
        iteration += 1
        return StepResult(loss: loss / Double(metaBatch), accuracy: classification ? Double(correct) / Double(count) : nil,
                          gradientNorm: norm)
    }
}
