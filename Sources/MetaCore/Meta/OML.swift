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
/// For classification, the output units of the trajectory's classes are reset to zero before the trajectory
/// (as the authors' code does), so the representation must support learning a class from scratch.
///
/// Second order (the default) is the exact meta-gradient through every online step: with P the projection
/// onto the PLN and θ_{k+1} = θ_k − β P ∇L_{B_k}(θ_k), the reverse step is g ← g − β H_{B_k}(θ_k) (P g) —
/// one Hessian-vector product per step, whose result reaches the RLN through the Hessian's off-diagonal
/// blocks (as in ``ANIL``). First order drops those terms: g = ∇L_Q(θ_K), which gives the RLN only the
/// query loss's direct gradient. The reset makes the meta-gradient of the reset entries zero.
public struct OML: MetaLearner {
    /// Step size β of the online SGD on the head.
    public let learningRate: Float
    /// Trajectory samples per online SGD step.
    public let onlineBatch: Int
    /// Number of layers with parameters, counted from the output, that form the prediction network.
    public let headLayers: Int
    public let order: MAML.Order

    public init(learningRate: Float, onlineBatch: Int = 1, headLayers: Int = 1, order: MAML.Order = .second) throws {
        guard learningRate > 0, learningRate.isFinite else {
            throw MetaCoreError.argument("OML's online learning rate must be a positive number, got \(learningRate)")
        }
        guard onlineBatch >= 1 else { throw MetaCoreError.argument("OML's online batch must be at least 1 sample, got \(onlineBatch)") }
        guard headLayers >= 1 else { throw MetaCoreError.argument("OML's prediction network needs at least 1 layer, got \(headLayers)") }
        self.learningRate = learningRate
        self.onlineBatch = onlineBatch
        self.headLayers = headLayers
        self.order = order
    }

    public var name: String { order == .second ? "oml" : "oml-fo" }

    public func check(model: Model, tasks: any TaskDistribution) throws {
        guard model.inputShape == tasks.inputShape, model.outputShape == tasks.outputShape else {
            throw MetaCoreError.shape("the tasks are \(describe(tasks.inputShape)) -> \(describe(tasks.outputShape)) but the model maps \(describe(model.inputShape)) -> \(describe(model.outputShape))")
        }
        _ = try Self.head(of: model, layers: headLayers)
    }

    /// The prediction network: the parameters of the last `layers` layers that have any.
    public static func head(of model: Model, layers: Int) throws -> Range<Int> {
        let parametrised = model.layers.indices.filter { !model.parameterRange(ofLayer: $0).isEmpty }
        guard layers <= parametrised.count else {
            throw MetaCoreError.argument("a \(layers)-layer prediction network needs \(layers) layers with parameters; the model has \(parametrised.count)")
        }
        if layers == parametrised.count {
            throw MetaCoreError.argument("a \(layers)-layer prediction network would leave no representation to meta-learn; the model has \(parametrised.count) layers with parameters")
        }
        let first = parametrised[parametrised.count - layers]
        return model.parameterRange(ofLayer: first).lowerBound ..< model.parameterCount
    }

    /// The parameter indices of the output units of `classes` (their rows of the last layer's weight and
    /// their biases), when the last layer is ``Linear``.
    static func outputUnits(of classes: Set<Int32>, model: Model) -> [Int] {
        guard let last = model.layers.last as? Linear else { return [] }
        let start = model.parameterRange(ofLayer: model.layers.count - 1).lowerBound
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

    /// One online SGD step of the head on `batch`.
    func onlineStep(_ theta: inout [Float], head: Range<Int>, batch: Batch, workspace: Workspace) throws {
        try workspace.gradient(at: theta, on: batch, into: &workspace.innerGradient)
        let beta = learningRate
        theta.withUnsafeMutableBufferPointer { t in
            workspace.innerGradient.withUnsafeBufferPointer { g in for i in head { t[i] -= beta * g[i] } }
        }
    }

    /// Parameters after the online trajectory through the task's support set, and the parameters before
    /// each step when `recording`.
    func adapt(_ meta: [Float], task: Task, workspace: Workspace, recording: Bool) throws -> (theta: [Float], before: [[Float]], steps: [Batch], reset: [Int]) {
        let model = workspace.model, head = try Self.head(of: model, layers: headLayers)
        var (theta, reset) = start(meta, task: task, model: model)
        let steps = try steps(of: task.support)
        workspace.heldPasses = recording ? steps.count : 0   // each step's pass, for its H·v
        var before: [[Float]] = []
        for batch in steps {
            if recording { before.append(theta) }
            try onlineStep(&theta, head: head, batch: batch, workspace: workspace)
        }
        return (theta, before, steps, reset)
    }

    public func metaLoss(_ meta: [Float], task: Task, workspace: Workspace) throws -> LossValue {
        try workspace.loss(at: adapt(meta, task: task, workspace: workspace, recording: false).theta, on: task.query)
    }

    public func metaGradient(_ meta: [Float], task: Task, workspace: Workspace, into gradient: inout [Float]) throws -> LossValue {
        let head = try Self.head(of: workspace.model, layers: headLayers)
        let (theta, before, steps, reset) = try adapt(meta, task: task, workspace: workspace, recording: order == .second)
        let value = order == .second ? try workspace.onQuerySet { try $0.gradient(at: theta, on: task.query, into: &gradient) }
                                     : try workspace.gradient(at: theta, on: task.query, into: &gradient)
        if order == .second {
            var direction = [Float](repeating: 0, count: gradient.count)
            for k in stride(from: steps.count - 1, through: 0, by: -1) {
                for i in head { direction[i] = gradient[i] }
                try workspace.hessianVectorProduct(at: before[k], on: steps[k], direction: direction,
                                                   into: &workspace.hessianVector, gradient: &workspace.innerGradient)
                gradient.add(workspace.hessianVector, scaledBy: -learningRate)
            }
        }
        for i in reset { gradient[i] = 0 }
        return value
    }

    /// The query loss before and after one pass over the trajectory (whatever `steps` is: the trajectory
    /// defines the online steps).
    public func adaptationCurve(_ meta: [Float], task: Task, steps: Int, workspace: Workspace) throws -> [LossValue] {
        let model = workspace.model
        let before = try workspace.loss(at: start(meta, task: task, model: model).theta, on: task.query)
        return [before, try metaLoss(meta, task: task, workspace: workspace)]
    }
}
