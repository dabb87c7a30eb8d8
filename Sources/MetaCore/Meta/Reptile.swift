import CKernels

/// Reptile (Nichol et al. 2018): adapt with K inner SGD steps, then move the initialisation towards the
/// adapted parameters, θ ← θ + ε (θ_K − θ).
///
/// Its "meta-gradient" is the update direction θ − θ_K: with a plain SGD meta-optimiser of learning rate ε
/// this is exactly Reptile's update (with Adam, the common adaptive variant). It is not the gradient of any
/// loss, so `metactl verify` does not apply to it.
///
/// The inner optimiser is SGD (as in the paper's sinusoid experiments) or Adam (as in its few-shot image
/// experiments, there with β1 = 0). Each inner step takes the whole support set, or, with ``innerBatch``, the
/// next mini-batch of a shuffle of it (reshuffled when used up), as the paper's few-shot runs take 5 batches of
/// 10 from 10 shots of 5 classes.
///
/// The inner Adam is fresh for every task, as the paper describes it, or, with ``InnerState/persistent``, its
/// moments and step count carry over from iteration to iteration, as Nichol et al.'s code runs it (there
/// TensorFlow's Adam slots are not among the variables each task resets). They are then meta-parameters after
/// θ (`reptile.inner_adam.m`, `.v`, `.step`) that the meta-optimiser does not move (``CarriedStateMetaLearner``):
/// every task of a meta-batch starts from the same state and the state becomes the mean of the states they end
/// with (in Nichol's code the tasks run one after another, each from the last one's state; averaging keeps the
/// tasks independent, so threads and ranks do not change the result). Evaluation adapts from the trained state,
/// as his does.
public struct Reptile: InnerUpdateLearner, StackableMetaLearner, CarriedStateMetaLearner {
    public enum InnerOptimizer: String, Sendable, Codable, CaseIterable { case sgd, adam }
    /// Whether the inner Adam starts fresh for every task or carries its state over from the previous iteration.
    public enum InnerState: String, Sendable, Codable, CaseIterable { case fresh, persistent }
    public let inner: InnerLoop
    public let innerOptimizer: InnerOptimizer
    /// Samples per inner step (0: the whole support set).
    public let innerBatch: Int
    /// Adam's β1 for the inner optimiser.
    public let innerBeta1: Float
    public let innerState: InnerState
    /// Whether the adapted model sees the support set and the queries as one batch when it predicts and measures
    /// the queries in evaluation, so that batch-norm's statistics include the support set, as Nichol et al.'s
    /// transductive evaluation does (default: the queries alone, as MAML's).
    public let predictsWithSupport: Bool

    public init(inner: InnerLoop, innerOptimizer: InnerOptimizer = .sgd, innerBatch: Int = 0, innerBeta1: Float = 0.9,
                innerState: InnerState = .fresh, predictsWithSupport: Bool = false) throws {
        guard innerBatch >= 0 else { throw MetaCoreError.argument("Reptile's inner batch must be >= 0 (0: the whole support set), got \(innerBatch)") }
        guard innerState == .fresh || innerOptimizer == .adam else {
            throw MetaCoreError.argument("a persistent inner state needs the Adam inner optimiser (SGD has no state)")
        }
        _ = try Adam(learningRate: inner.learningRate, beta1: innerBeta1)   // Adam's own checks, at construction
        self.inner = inner
        self.innerOptimizer = innerOptimizer
        self.innerBatch = innerBatch
        self.innerBeta1 = innerBeta1
        self.innerState = innerState
        self.predictsWithSupport = predictsWithSupport
    }
    public var name: String { "reptile" }

    /// Mini-batches differ between the tasks of a stacked block, and the carried state is not the model's, so
    /// only whole-support steps from a fresh state stack.
    public var isStackable: Bool { innerBatch == 0 && innerState == .fresh }

    /// Where the carried inner Adam sits in the meta-parameters: its first and second moments, then its step.
    func carriedAdam(for model: Model) -> (m: Range<Int>, v: Range<Int>, step: Int)? {
        guard innerState == .persistent else { return nil }
        let p = model.parameterCount
        return (p ..< 2 * p, 2 * p ..< 3 * p, 3 * p)
    }

    public func carriedState(for model: Model) -> Range<Int>? {
        carriedAdam(for: model).map { $0.m.lowerBound ..< $0.step + 1 }
    }

    public func initialMetaParameters(for model: Model, seed: UInt64) -> [Float] {
        let theta = model.initialParameters(seed: seed)
        guard let state = carriedState(for: model) else { return theta }
        return theta + [Float](repeating: 0, count: state.count)
    }

    public func extraMetaParameters(for model: Model) -> [(name: String, range: Range<Int>)] {
        guard let adam = carriedAdam(for: model) else { return [] }
        return [("reptile.inner_adam.m", adam.m), ("reptile.inner_adam.v", adam.v), ("reptile.inner_adam.step", adam.step ..< adam.step + 1)]
    }

    /// The inner Adam a task starts with: fresh, or the carried state in `meta`.
    func innerAdam(_ meta: [Float], model: Model) throws -> Adam {
        var adam = try Adam(learningRate: inner.learningRate, beta1: innerBeta1)
        if let state = carriedAdam(for: model) {
            let step = meta[state.step]
            guard step >= 0, step <= Float(Self.maximumCarriedStep), step == step.rounded() else {
                throw MetaCoreError(.corruptData, "the carried inner Adam's step count must be a whole number from 0 to \(Self.maximumCarriedStep), got \(step)")
            }
            try adam.restore(step: Int(step), vectors: ["m": Array(meta[state.m]), "v": Array(meta[state.v])], parameterCount: model.parameterCount)
        }
        return adam
    }

    /// The carried step count stops here, where a Float still counts in ones; Adam's bias corrections are 1 long before.
    static let maximumCarriedStep = 1 << 24

    /// SGD: the stateless inner step (Adam's state lives in ``adaptationCurve(_:task:steps:workspace:)``).
    public func innerUpdate(for model: Model) throws -> InnerUpdate { InnerUpdate(rate: .scalar(inner.learningRate)) }

    /// Parameters after `steps` inner steps with the chosen inner optimiser; `query` (if given) is measured
    /// before the first step and after each. Also the inner Adam as it ends.
    func adapted(_ meta: [Float], support: Batch, seed: UInt64, steps: Int, query: Batch?,
                 workspace: Workspace) throws -> ([Float], [LossValue], Adam) {
        var theta = modelParameters(meta, model: workspace.model), curve: [LossValue] = [], gradient: [Float] = []
        var adam = try innerAdam(meta, model: workspace.model)
        var batches = try MiniBatches(support, size: innerBatch, seed: seed)
        if let query { curve.append(try queryLoss(at: theta, support: support, query: query, workspace: workspace)) }
        for _ in 0 ..< steps {
            try workspace.gradient(at: theta, on: batches.next(), into: &gradient)
            switch innerOptimizer {
            case .sgd: theta.add(gradient, scaledBy: -inner.learningRate)
            case .adam: adam.step(&theta, gradient: gradient)
            }
            if let query { curve.append(try queryLoss(at: theta, support: support, query: query, workspace: workspace)) }
        }
        return (theta, curve, adam)
    }

    /// The loss on `query` of the model at `theta`: on the queries alone, or, with ``predictsWithSupport``, on
    /// their rows of one batch of the support set followed by them.
    func queryLoss(at theta: [Float], support: Batch, query: Batch, workspace: Workspace) throws -> LossValue {
        guard predictsWithSupport else { return try workspace.loss(at: theta, on: query) }
        try query.check(against: workspace.model)
        let outputs = try queryOutputs(at: theta, support: support, queries: query.inputs, workspace: workspace)
        let q = query.count, width = outputs.scalars.count / q
        switch query.targets {
        case .labels(let labels):
            var probabilities = [Float](repeating: 0, count: q * width), correct: Int32 = 0
            let loss = labels.withUnsafeBufferPointer { mc_softmax_xent_forward(Int32(q), Int32(width), outputs.scalars, $0.baseAddress!, &probabilities, &correct) }
            return LossValue(loss: loss, correct: Int(correct), count: q)
        case .values(let targets):
            return LossValue(loss: mc_mse_forward(q * width, outputs.scalars, targets.scalars), correct: nil, count: q)
        }
    }

    /// The outputs of the model at `theta` for `queries`: from a batch of them alone, or, with
    /// ``predictsWithSupport``, their rows of one batch of the support inputs followed by them.
    func queryOutputs(at theta: [Float], support: Batch, queries: Tensor, workspace: Workspace) throws -> Tensor {
        guard predictsWithSupport else { return try workspace.predict(at: theta, inputs: queries) }
        guard support.inputs.shape.dropFirst() == queries.shape.dropFirst() else {
            throw MetaCoreError.shape("the support inputs are \(describe(support.inputs.shape)) and the queries \(describe(queries.shape)); they cannot be one batch")
        }
        let both = try Tensor(shape: [support.count + queries.shape[0]] + queries.shape.dropFirst(), scalars: support.inputs.scalars + queries.scalars)
        let outputs = try workspace.predict(at: theta, inputs: both)
        let width = outputs.scalars.count / both.shape[0]
        return try Tensor(shape: [queries.shape[0]] + outputs.shape.dropFirst(), scalars: Array(outputs.scalars.suffix(queries.shape[0] * width)))
    }

    public func adaptationCurve(_ meta: [Float], task: Task, steps: Int, workspace: Workspace) throws -> [LossValue] {
        try adapted(meta, support: task.support, seed: task.seed, steps: steps, query: task.query, workspace: workspace).1
    }

    public func predict(_ meta: [Float], support: Batch, queries: Tensor, steps: Int, workspace: Workspace) throws -> Tensor {
        let theta = try adapted(meta, support: support, seed: 0, steps: steps, query: nil, workspace: workspace).0
        return try queryOutputs(at: theta, support: support, queries: queries, workspace: workspace)
    }

    public func metaGradient(_ meta: [Float], task: Task, workspace: Workspace, into gradient: inout [Float]) throws -> LossValue {
        let model = workspace.model
        let (adapted, _, adam) = try adapted(meta, support: task.support, seed: task.seed, steps: inner.steps, query: nil, workspace: workspace)
        gradient = meta
        gradient.withUnsafeMutableBufferPointer { g in
            adapted.withUnsafeBufferPointer { a in for i in a.indices { g[i] -= a[i] } }
        }
        if let state = carriedAdam(for: model) {   // the state the task ends with, for the trainer to average
            let (step, vectors) = adam.state
            if let m = vectors["m"], let v = vectors["v"] {
                gradient.replaceSubrange(state.m, with: m)
                gradient.replaceSubrange(state.v, with: v)
            }
            gradient[state.step] = Float(min(step, Self.maximumCarriedStep))
        }
        // The training log's query loss, on the queries alone: a batch with the training support set (10 shots in
        // Nichol et al.'s runs) would cost a third of the inner steps again.
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
                                            help: "Reptile's inner optimiser"),
                                 OptionSpec("inner-batch", .int(0 ... Int.max), default: .int(0),
                                            help: "support samples per inner step, from a shuffle of the support set (0: all of them)"),
                                 OptionSpec("inner-beta1", .float(0 ... 0.999999), default: .float(0.9),
                                            help: "β1 of the inner Adam (Nichol et al.'s few-shot runs: 0)"),
                                 OptionSpec("inner-state", .choice(InnerState.allCases.map(\.rawValue)), default: .string("fresh"),
                                            help: "the inner Adam fresh for every task, or its moments carried from iteration to iteration (Nichol et al.'s code)"),
                                 OptionSpec("predict-with-support", .bool, default: .bool(false), evaluationMayChange: true,
                                            help: "predict the queries in one batch with the support set, so that batch-norm's statistics include it (Nichol et al.'s transductive evaluation)")],
                       verifiable: false) { config, options in
            try Reptile(inner: try config.innerLoop(), innerOptimizer: InnerOptimizer(rawValue: options.string("inner-optimizer")!)!,
                        innerBatch: options.int("inner-batch")!, innerBeta1: Float(options.double("inner-beta1")!),
                        innerState: InnerState(rawValue: options.string("inner-state")!)!,
                        predictsWithSupport: options.bool("predict-with-support")!)
        },
    ]
}
