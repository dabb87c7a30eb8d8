/// Online-aware Meta-Learning, OML (Javed & White 2019): meta-learns a representation such that plain
/// online SGD on a small prediction head, one sample (or small batch) at a time along a trajectory of new
/// classes or functions, learns them quickly without wiping out what was learned before.
///
/// The model is split into a representation (RLN, every layer before the head) and a prediction network
/// (PLN, the last ``headLayers`` layers with parameters). A task's support set is the *trajectory*, consumed
/// in order, ``onlineBatch`` samples per SGD step on the PLN alone; its query set is what the adapted model is
/// judged on — the trajectory's classes again plus a "remember" set of other classes (see
/// ``ContinualOmniglotTasks``), so that the meta-loss punishes both slow learning and interference.
///
/// For classification, the output units of the trajectory's classes are reset to zero before the trajectory,
/// so the representation must support learning a class from scratch. (The authors' code resets them too, by
/// drawing the weight rows afresh, Kaiming-normal, and keeping the biases; zero keeps the start deterministic.)
///
/// Second order (the default) is the exact meta-gradient through every online step: with P the projection
/// onto the PLN and θ_{k+1} = θ_k − β P ∇L_{B_k}(θ_k), the reverse step is g ← g − β H_{B_k}(θ_k) (P g) —
/// one Hessian-vector product per step, whose result reaches the RLN through the Hessian's off-diagonal
/// blocks (as in ``ANIL``). First order drops those terms: g = ∇L_Q(θ_K), which gives the RLN only the
/// query loss's direct gradient. The reset makes the meta-gradient of the reset entries zero.
///
/// Only the PLN changes along a trajectory, so the RLN's features of a task's samples are the same at every
/// step: with ``precomputesFeatures``, they are computed once, in one batched pass over the trajectory and the
/// query together, the online steps and their reverse pass run on the PLN alone, and the derivatives they
/// leave on the features (the query loss's, and −β ∂⟨∇L_{B_k}, P g⟩/∂F for step k's samples — the RLN part of
/// the Hessian-vector product) go back through the RLN in one batched vector-Jacobian product.
public struct OML: MetaLearner {
    /// Step size β of the online SGD on the head.
    public let learningRate: Float
    /// Trajectory samples per online SGD step.
    public let onlineBatch: Int
    /// Number of layers with parameters, counted from the output, that form the prediction network.
    public let headLayers: Int
    public let order: MAML.Order
    /// Whether a task runs the RLN once on its samples' features (see above) where that is the same
    /// computation: on a model without batch statistics (no running state), whose layers see each sample on its
    /// own. The same derivative, up to the order of float sums; otherwise every pass runs the whole model.
    public let precomputesFeatures: Bool

    public init(learningRate: Float, onlineBatch: Int = 1, headLayers: Int = 1, order: MAML.Order = .second,
                precomputesFeatures: Bool = true) throws {
        guard learningRate > 0, learningRate.isFinite else {
            throw MetaCoreError.argument("OML's online learning rate must be a positive number, got \(learningRate)")
        }
        guard onlineBatch >= 1 else { throw MetaCoreError.argument("OML's online batch must be at least 1 sample, got \(onlineBatch)") }
        guard headLayers >= 1 else { throw MetaCoreError.argument("OML's prediction network needs at least 1 layer, got \(headLayers)") }
        self.learningRate = learningRate
        self.onlineBatch = onlineBatch
        self.headLayers = headLayers
        self.order = order
        self.precomputesFeatures = precomputesFeatures
    }

    public var name: String { order == .second ? "oml" : "oml-fo" }

    public func check(model: Model, tasks: any TaskDistribution) throws {
        try checkShapes(model: model, tasks: tasks)
        _ = try model.head(layers: headLayers)
    }

    /// The online step: SGD at rate β on the prediction network.
    func update(for model: Model) throws -> InnerUpdate {
        InnerUpdate(rate: .scalar(learningRate), adapted: try model.head(layers: headLayers))
    }

    /// The parameter indices of the output units of `classes` (their rows of the last layer's weight and
    /// their biases), when the model's output is a ``Linear`` node with parameters of its own.
    static func outputUnits(of classes: Set<Int32>, model: Model) -> [Int] {
        let index = model.nodes.count - 1
        guard let last = model.nodes[index].layer as? Linear, model.output == model.value(ofNode: index),
              model.nodes[index].owner == index else { return [] }
        let start = model.parameterRange(ofLayer: index).lowerBound
        return classes.sorted().flatMap { c -> [Int] in
            let row = start + Int(c) * last.inputs
            return Array(row ..< row + last.inputs) + [start + last.outputs * last.inputs + Int(c)]
        }
    }

    /// The online steps: the trajectory cut into consecutive batches of ``onlineBatch`` samples.
    func steps(of trajectory: Batch) throws -> [Batch] {
        try stride(from: 0, to: trajectory.count, by: onlineBatch).map {
            try trajectory.samples($0 ..< min($0 + onlineBatch, trajectory.count))
        }
    }

    /// The starting point of a trajectory: `meta` with the trajectory's output units reset.
    func start(_ meta: [Float], task: Task, model: Model) -> (theta: [Float], reset: [Int]) {
        var theta = meta
        guard case .labels(let labels) = task.support.targets else { return (theta, []) }
        let reset = Self.outputUnits(of: Set(labels), model: model)
        for i in reset { theta[i] = 0 }
        return (theta, reset)
    }

    /// Whether the passes on `model` run on precomputed features (see ``precomputesFeatures``).
    func runsOnFeatures(_ model: Model) -> Bool {
        precomputesFeatures && model.stateLayout.count == 0 && model.groups == 1 && model.inputShapes.count == 1
    }

    /// Parameters after the online trajectory through the task's support set, and the parameters before
    /// each step when `recording` (on the whole model).
    func adapt(_ meta: [Float], task: Task, workspace: Workspace, recording: Bool) throws -> (theta: [Float], before: [[Float]], steps: [Batch], reset: [Int]) {
        let model = workspace.model, update = try update(for: model)
        var (theta, reset) = start(meta, task: task, model: model)
        if !recording && runsOnFeatures(model) {
            try workspace.onSplit(headLayers: headLayers) { body, head in
                let cut = body.model.parameterCount, phi = Array(theta[..<cut])
                let features = try Batch(inputs: body.predict(at: phi, inputs: task.support.inputs), targets: task.support.targets)
                theta = try phi + headTrajectory(Array(theta[cut...]), on: features, head: head, recording: false).w
            }
            return (theta, [], [], reset)
        }
        let steps = try steps(of: task.support)
        workspace.heldPasses = recording ? steps.count : 0   // each step's pass, for its H·v
        var before: [[Float]] = []
        for batch in steps {
            if recording { before.append(theta) }
            try update.step(&theta, meta: meta, batch: batch, workspace: workspace)
        }
        return (theta, before, steps, reset)
    }

    /// The online trajectory on the PLN alone (`head`), from its parameters `w`, on the trajectory's `features`:
    /// the parameters after it, and with `recording` those before each step, and the steps.
    private func headTrajectory(_ w: [Float], on features: Batch, head: Workspace, recording: Bool) throws -> (w: [Float], before: [[Float]], steps: [Batch]) {
        let steps = try steps(of: features)
        let (w, before) = try InnerUpdate(rate: .scalar(learningRate)).steps(from: w, over: steps, head: head, recording: recording)
        return (w, before, steps)
    }

    /// The meta-gradient on features computed once (see ``precomputesFeatures``): the RLN's forward pass on
    /// the trajectory and the query together, the trajectory, the query and the reverse steps on the PLN,
    /// then the RLN's backward pass with every feature's derivative.
    private func featureMetaGradient(_ meta: [Float], task: Task, workspace: Workspace, into gradient: inout [Float]) throws -> LossValue {
        let (theta, reset) = start(meta, task: task, model: workspace.model), samples = try task.support.concatenated(with: task.query)
        return try workspace.onSplit(headLayers: headLayers) { body, head in
            let cut = body.model.parameterCount, support = task.support.count, second = order == .second
            var headGradient: [Float] = [], bodyGradient: [Float] = []
            head.differentiatesInput = second   // the steps' passes too, so that their H·v start from them
            defer { head.differentiatesInput = false }
            let value = try body.gradient(at: Array(theta[..<cut]), inputs: samples.inputs, into: &bodyGradient) { outputs, derivative in
                let width = outputs.count / samples.count, derivative = derivative!
                let features = try Batch(inputs: Tensor(shape: [samples.count] + body.model.outputShape, scalars: Array(outputs)),
                                         targets: samples.targets)
                let (w, before, steps) = try headTrajectory(Array(theta[cut...]), on: features.samples(0 ..< support), head: head,
                                                            recording: second)
                let value = try head.onQuerySet { query in
                    query.differentiatesInput = true
                    defer { query.differentiatesInput = false }
                    let value = try query.gradient(at: w, on: features.samples(support ..< samples.count), into: &headGradient)
                    _ = UnsafeMutableBufferPointer(rebasing: derivative[(support * width)...]).update(fromContentsOf: query.inputGradient)
                    return value
                }
                // The trajectory's features: nothing from first order; from second, step k's samples get
                // −β ∂⟨∇L_{B_k}, g⟩/∂F, with g the derivative after the step.
                UnsafeMutableBufferPointer(rebasing: derivative[..<(support * width)]).update(repeating: 0)
                if second {
                    try InnerUpdate(rate: .scalar(learningRate)).backpropagate(&headGradient, before: before, batches: steps,
                                                                               offsets: steps.indices.map { $0 * onlineBatch * width },
                                                                               head: head, featureDerivative: derivative)
                }
                return value
            }
            gradient = bodyGradient + headGradient
            for i in reset { gradient[i] = 0 }
            return value
        }
    }

    public func metaLoss(_ meta: [Float], task: Task, workspace: Workspace) throws -> LossValue {
        try workspace.loss(at: adapt(meta, task: task, workspace: workspace, recording: false).theta, on: task.query)
    }

    public func metaGradient(_ meta: [Float], task: Task, workspace: Workspace, into gradient: inout [Float]) throws -> LossValue {
        if runsOnFeatures(workspace.model) { return try featureMetaGradient(meta, task: task, workspace: workspace, into: &gradient) }
        let (theta, before, steps, reset) = try adapt(meta, task: task, workspace: workspace, recording: order == .second)
        let value = order == .second ? try workspace.onQuerySet { try $0.gradient(at: theta, on: task.query, into: &gradient) }
                                     : try workspace.gradient(at: theta, on: task.query, into: &gradient)
        if order == .second {
            _ = try update(for: workspace.model).backpropagate(&gradient, points: before[...], batch: { steps[$0] }, meta: meta, workspace: workspace)
        }
        for i in reset { gradient[i] = 0 }
        return value
    }

    /// The outputs after the online pass over `support`, the trajectory (whatever `steps` is).
    public func predict(_ meta: [Float], support: Batch, queries: Tensor, steps: Int, workspace: Workspace) throws -> Tensor {
        let theta = try adapt(meta, task: Task(support: support, query: support), workspace: workspace, recording: false).theta
        return try workspace.predict(at: theta, inputs: queries)
    }

    /// The query loss before and after one pass over the trajectory (whatever `steps` is: the trajectory
    /// defines the online steps).
    public func adaptationCurve(_ meta: [Float], task: Task, steps: Int, workspace: Workspace) throws -> [LossValue] {
        let model = workspace.model
        let before = try workspace.loss(at: start(meta, task: task, model: model).theta, on: task.query)
        return [before, try metaLoss(meta, task: task, workspace: workspace)]
    }
}

extension OML {
    /// The prediction network's size and the online batch, declared by OML and by the continual task families
    /// (which set their own defaults).
    static let headOption = OptionSpec("head-layers", .int(1 ... 1000), default: .int(1),
                                       help: "layers with parameters in the prediction network (OML's PLN; the head continual learners adapt)")
    static let onlineBatchOption = OptionSpec("online-batch", .int(1 ... 1_000_000), default: .int(1),
                                              help: "trajectory samples per online SGD step")

    static let registrations = [MAML.Order.second, .first].map { order in
        AlgorithmEntry(name: order == .second ? "oml" : "oml-fo",
                       summary: order == .second ? "OML: online-aware meta-learning for continual learning, exact second order"
                                                 : "OML, first order",
                       options: [headOption, onlineBatchOption]) { config, options in
            try OML(learningRate: config.innerLearningRate, onlineBatch: options.int("online-batch")!,
                    headLayers: options.int("head-layers")!, order: order)
        }
    }
}
