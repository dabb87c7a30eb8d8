/// The inner loop every gradient-based meta-learner shares: `steps` steps of SGD on the support set.
public struct InnerLoop: Sendable, Codable, Equatable {
    public var steps: Int
    public var learningRate: Float

    public init(steps: Int, learningRate: Float) throws {
        guard steps >= 0 else { throw MetaCoreError.argument("inner steps must be >= 0, got \(steps)") }
        guard learningRate > 0, learningRate.isFinite else {
            throw MetaCoreError.argument("inner learning rate must be a positive number, got \(learningRate)")
        }
        self.steps = steps
        self.learningRate = learningRate
    }
}

/// A meta-learning algorithm.
///
/// A learner owns a vector of *meta-parameters* — the model's initial parameters θ, plus whatever else it
/// learns (Meta-SGD's per-parameter learning rates) — and knows how to turn a task's support set into a
/// prediction on its query set and how to differentiate the query loss with respect to its meta-parameters.
/// Gradient-based learners (the MAML family) adapt by inner SGD steps (``GradientMetaLearner``); metric-based
/// ones (Prototypical and Matching Networks) classify queries by comparing embeddings with the support's.
/// Adding an algorithm means one new type conforming to this protocol, and an ``AlgorithmEntry`` that tells
/// the ``Registry`` (and so `metactl`) its name, help, options and how to build it from a configuration.
public protocol MetaLearner: Sendable {
    /// Short identifier (`maml`, `protonet`, ...), used by the CLI and stored in checkpoints.
    var name: String { get }

    /// The meta-parameters a fresh run starts from, for `model`.
    func initialMetaParameters(for model: Model, seed: UInt64) -> [Float]
    /// Named pieces of the meta-parameter vector beyond the model's parameters (for checkpoints).
    func extraMetaParameters(for model: Model) -> [(name: String, range: Range<Int>)]

    /// Throws, naming the mismatch, unless this learner can meta-train `model` on `tasks` (default: the model
    /// maps the tasks' input shape to their output shape).
    func check(model: Model, tasks: any TaskDistribution) throws

    /// The query loss after adaptation from `meta`, and the meta-gradient (for Reptile, its update direction)
    /// with respect to the meta-parameters, written into `gradient`.
    func metaGradient(_ meta: [Float], task: Task, workspace: Workspace, into gradient: inout [Float]) throws -> LossValue

    /// The meta-loss alone: the query loss after adaptation (what ``metaGradient(_:task:workspace:into:)`` differentiates).
    func metaLoss(_ meta: [Float], task: Task, workspace: Workspace) throws -> LossValue

    /// The query loss after 0, 1, ..., `steps` adaptation steps. A learner that adapts without gradient steps
    /// (metric-based) returns its one post-adaptation value whatever `steps` is.
    func adaptationCurve(_ meta: [Float], task: Task, steps: Int, workspace: Workspace) throws -> [LossValue]

    /// What the learner predicts for `queries` `[n, ...]` after adapting to `support` in `steps` steps (metric
    /// learners adapt without steps and ignore it): `[n, ways]` class scores for classification — logits, or
    /// log-probabilities, whose softmax is the class distribution the query loss is the cross-entropy of — and
    /// the model's outputs for regression. Queries are one batch, as in evaluation: batch-norm in its
    /// transductive mode normalises them with their own statistics, so predict them together.
    func predict(_ meta: [Float], support: Batch, queries: Tensor, steps: Int, workspace: Workspace) throws -> Tensor
}

extension MetaLearner {
    public func extraMetaParameters(for model: Model) -> [(name: String, range: Range<Int>)] { [] }

    public func initialMetaParameters(for model: Model, seed: UInt64) -> [Float] { model.initialParameters(seed: seed) }

    public func check(model: Model, tasks: any TaskDistribution) throws { try checkShapes(model: model, tasks: tasks) }

    /// Throws unless `model` maps the tasks' input shape to their output shape.
    public func checkShapes(model: Model, tasks: any TaskDistribution) throws {
        guard model.inputShape == tasks.inputShape, model.outputShape == tasks.outputShape else {
            throw MetaCoreError.shape("the tasks are \(describe(tasks.inputShape)) -> \(describe(tasks.outputShape)) but the model maps \(describe(model.inputShape)) -> \(describe(model.outputShape))")
        }
    }

    /// The model-parameter part θ of a meta-parameter vector.
    public func modelParameters(_ meta: [Float], model: Model) -> [Float] {
        meta.count == model.parameterCount ? meta : Array(meta[0 ..< model.parameterCount])
    }
}

/// A learner whose training changes with the iteration (MAML++'s annealed loss weights, derivative order and
/// meta learning rate): ``MetaTrainer`` meta-trains iteration t with ``scheduled(at:)`` and multiplies the
/// meta learning rate by ``metaLearningRateFactor(at:)``. Both are pure functions of the iteration, so a
/// resumed run follows the same schedule.
public protocol ScheduledMetaLearner: MetaLearner {
    /// The learner as it meta-trains iteration `iteration` (counted from 0).
    func scheduled(at iteration: Int) -> any MetaLearner
    /// The factor of the meta learning rate at `iteration` (1: none).
    func metaLearningRateFactor(at iteration: Int) -> Float
}

/// A learner that carries state from one iteration to the next in part of its meta-parameters, which the
/// meta-optimiser does not move (Reptile's persistent inner Adam). In that range each task's
/// ``MetaLearner/metaGradient(_:task:workspace:into:)`` writes the state the task ends with instead of a
/// gradient; ``MetaTrainer`` leaves the range out of the step, its norm and its clipping, and then sets it to the
/// mean over the meta-batch. Checkpoints keep it with the meta-parameters, and evaluation adapts from it.
public protocol CarriedStateMetaLearner: MetaLearner {
    /// The range of the meta-parameters that is carried state (`nil`: none in this configuration).
    func carriedState(for model: Model) -> Range<Int>?
}

/// A learner whose meta-gradients for several tasks are its meta-gradient on one task of the model stacked
/// across them (``ModelStack``), side by side: its meta-parameters are the model's parameters, and it treats
/// them elementwise between passes (a scalar inner rate on all of them, updates of θ by θ). ``MetaTrainer``
/// then runs a thread's tasks as one.
public protocol StackableMetaLearner: MetaLearner {
    /// Whether this configuration of the learner stacks (default true; Reptile's inner mini-batches do not).
    var isStackable: Bool { get }
}

extension StackableMetaLearner {
    public var isStackable: Bool { true }
}

/// A meta-learner that adapts by gradient steps on the support set: the MAML family.
public protocol GradientMetaLearner: MetaLearner {
    /// The inner loop used for meta-training.
    var inner: InnerLoop { get }

    /// One inner-loop update of the model parameters `theta` on `support`.
    func innerStep(_ theta: inout [Float], meta: [Float], support: Batch, workspace: Workspace) throws
}

extension GradientMetaLearner {
    /// Model parameters after `steps` inner steps on `support`.
    public func adapt(_ meta: [Float], support: Batch, steps: Int, workspace: Workspace) throws -> [Float] {
        var theta = modelParameters(meta, model: workspace.model)
        for _ in 0 ..< steps { try innerStep(&theta, meta: meta, support: support, workspace: workspace) }
        return theta
    }

    public func adaptationCurve(_ meta: [Float], task: Task, steps: Int, workspace: Workspace) throws -> [LossValue] {
        try wholeModelAdaptationCurve(meta, task: task, steps: steps, workspace: workspace)
    }

    /// ``adaptationCurve(_:task:steps:workspace:)`` by inner steps and query losses on the whole model.
    func wholeModelAdaptationCurve(_ meta: [Float], task: Task, steps: Int, workspace: Workspace) throws -> [LossValue] {
        var theta = modelParameters(meta, model: workspace.model)
        var curve = [try workspace.loss(at: theta, on: task.query)]
        for _ in 0 ..< steps {
            try innerStep(&theta, meta: meta, support: task.support, workspace: workspace)
            curve.append(try workspace.loss(at: theta, on: task.query))
        }
        return curve
    }

    /// The adapted model's outputs on `queries` after `steps` inner steps on `support`.
    public func predict(_ meta: [Float], support: Batch, queries: Tensor, steps: Int, workspace: Workspace) throws -> Tensor {
        try workspace.predict(at: adapt(meta, support: support, steps: steps, workspace: workspace), inputs: queries)
    }

    /// The query loss after ``inner`` adaptation.
    public func metaLoss(_ meta: [Float], task: Task, workspace: Workspace) throws -> LossValue {
        try workspace.loss(at: adapt(meta, support: task.support, steps: inner.steps, workspace: workspace), on: task.query)
    }

    /// The start of a second-order meta-gradient: θ_0 … θ_K with every inner step's pass held for the
    /// Hessian-vector product that revisits it, and the query gradient at θ_K written into `queryGradient` —
    /// computed on the query set's own workspace, so that the held passes stay.
    func heldTrajectory(_ meta: [Float], task: Task, workspace: Workspace,
                        queryGradient: inout [Float]) throws -> (trajectory: [[Float]], value: LossValue) {
        workspace.heldPasses = inner.steps
        let trajectory = try innerTrajectory(meta, support: task.support, workspace: workspace)
        let value = try workspace.onQuerySet { try $0.gradient(at: trajectory[inner.steps], on: task.query, into: &queryGradient) }
        return (trajectory, value)
    }

    /// θ_0 … θ_K of the inner loop from `meta` (K + 1 parameter vectors).
    func innerTrajectory(_ meta: [Float], support: Batch, workspace: Workspace) throws -> [[Float]] {
        var trajectory = [modelParameters(meta, model: workspace.model)]
        for _ in 0 ..< inner.steps {
            var theta = trajectory[trajectory.count - 1]
            try innerStep(&theta, meta: meta, support: support, workspace: workspace)
            trajectory.append(theta)
        }
        return trajectory
    }
}
