/// Reptile (Nichol et al. 2018): adapt with K inner SGD steps, then move the initialisation towards the
/// adapted parameters, θ ← θ + ε (θ_K − θ).
///
/// Its "meta-gradient" is the update direction θ − θ_K: with a plain SGD meta-optimiser of learning rate ε
/// this is exactly Reptile's update (with Adam, the common adaptive variant). It is not the gradient of any
/// loss, so `metactl verify` does not apply to it.
///
/// The inner optimiser is SGD (as in the paper's sinusoid experiments) or Adam (as in its few-shot image
/// experiments, there with β1 = 0), fresh for every task. Each inner step takes the whole support set, or, with
/// ``innerBatch``, the next mini-batch of a shuffle of it (reshuffled when used up), as the paper's few-shot
/// runs take 5 batches of 10 from 10 shots of 5 classes.
public struct Reptile: InnerUpdateLearner, StackableMetaLearner {
    public enum InnerOptimizer: String, Sendable, Codable, CaseIterable { case sgd, adam }
    public let inner: InnerLoop
    public let innerOptimizer: InnerOptimizer
    /// Samples per inner step (0: the whole support set).
    public let innerBatch: Int
    /// Adam's β1 for the inner optimiser.
    public let innerBeta1: Float

    public init(inner: InnerLoop, innerOptimizer: InnerOptimizer = .sgd, innerBatch: Int = 0, innerBeta1: Float = 0.9) throws {
        guard innerBatch >= 0 else { throw MetaCoreError.argument("Reptile's inner batch must be >= 0 (0: the whole support set), got \(innerBatch)") }
        _ = try Adam(learningRate: inner.learningRate, beta1: innerBeta1)   // Adam's own checks, at construction
        self.inner = inner
        self.innerOptimizer = innerOptimizer
        self.innerBatch = innerBatch
        self.innerBeta1 = innerBeta1
    }
    public var name: String { "reptile" }

    /// Mini-batches differ between the tasks of a stacked block, so only whole-support steps stack.
    public var isStackable: Bool { innerBatch == 0 }

    /// SGD: the stateless inner step (Adam's state lives in ``adaptationCurve(_:task:steps:workspace:)``).
    public func innerUpdate(for model: Model) throws -> InnerUpdate { InnerUpdate(rate: .scalar(inner.learningRate)) }

    /// Parameters after `steps` inner steps with the chosen inner optimiser; `query` (if given) is measured
    /// before the first step and after each.
    func adapted(_ meta: [Float], support: Batch, seed: UInt64, steps: Int, query: Batch?, workspace: Workspace) throws -> ([Float], [LossValue]) {
        var theta = meta, curve: [LossValue] = [], gradient: [Float] = []
        var adam = try Adam(learningRate: inner.learningRate, beta1: innerBeta1)
        var batches = try MiniBatches(support, size: innerBatch, seed: seed)
        if let query { curve.append(try workspace.loss(at: theta, on: query)) }
        for _ in 0 ..< steps {
            try workspace.gradient(at: theta, on: batches.next(), into: &gradient)
            switch innerOptimizer {
            case .sgd: theta.add(gradient, scaledBy: -inner.learningRate)
            case .adam: adam.step(&theta, gradient: gradient)
            }
            if let query { curve.append(try workspace.loss(at: theta, on: query)) }
        }
        return (theta, curve)
    }

    public func adaptationCurve(_ meta: [Float], task: Task, steps: Int, workspace: Workspace) throws -> [LossValue] {
        try adapted(meta, support: task.support, seed: task.seed, steps: steps, query: task.query, workspace: workspace).1
    }

    public func predict(_ meta: [Float], support: Batch, queries: Tensor, steps: Int, workspace: Workspace) throws -> Tensor {
        try workspace.predict(at: adapted(meta, support: support, seed: 0, steps: steps, query: nil, workspace: workspace).0, inputs: queries)
    }

    public func metaGradient(_ meta: [Float], task: Task, workspace: Workspace, into gradient: inout [Float]) throws -> LossValue {
        let adapted = try adapted(meta, support: task.support, seed: task.seed, steps: inner.steps, query: nil, workspace: workspace).0
        gradient = meta
        gradient.add(adapted, scaledBy: -1)
        return try workspace.loss(at: adapted, on: task.query)
    }
}

/// The inner steps' batches: the whole set each time, or consecutive `size`-sample slices of a seeded shuffle of
/// it, reshuffled when fewer than `size` samples are left (the rest carried into the next batch, as in Nichol's
/// `_mini_batches`).
struct MiniBatches {
    let batch: Batch, size: Int
    var random: RandomSource, order: [Int] = [], position = 0

    init(_ batch: Batch, size: Int, seed: UInt64) throws {
        self.batch = batch; self.size = size; random = RandomSource(seed: seed)
    }

    mutating func next() throws -> Batch {
        guard size > 0, size < batch.count else { return batch }
        var picked: [Int] = []
        while picked.count < size {
            if position == order.count { order = OmniglotTasks.choose(batch.count, from: batch.count, using: &random); position = 0 }
            let take = min(size - picked.count, order.count - position)
            picked += order[position ..< position + take]
            position += take
        }
        return try batch.samples(picked)
    }
}

extension Reptile {
    static let registrations = [
        AlgorithmEntry(name: "reptile", summary: "Reptile: move the initialisation towards the adapted parameters",
                       options: [OptionSpec("inner-optimizer", .choice(InnerOptimizer.allCases.map(\.rawValue)), default: .string("sgd"),
                                            help: "Reptile's inner optimiser, fresh for every task"),
                                 OptionSpec("inner-batch", .int(0 ... Int.max), default: .int(0),
                                            help: "support samples per inner step, from a shuffle of the support set (0: all of them)"),
                                 OptionSpec("inner-beta1", .float(0 ... 0.999999), default: .float(0.9),
                                            help: "β1 of the inner Adam (Nichol et al.'s few-shot runs: 0)")],
                       verifiable: false) { config, options in
            try Reptile(inner: try config.innerLoop(), innerOptimizer: InnerOptimizer(rawValue: options.string("inner-optimizer")!)!,
                        innerBatch: options.int("inner-batch")!, innerBeta1: Float(options.double("inner-beta1")!))
        },
    ]
}
