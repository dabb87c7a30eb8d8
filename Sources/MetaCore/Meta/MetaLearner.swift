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

/// A gradient-based meta-learning algorithm.
///
/// A learner owns a vector of *meta-parameters* — the model's initial parameters θ, plus whatever else it
/// learns (Meta-SGD's per-parameter learning rates) — and knows how to adapt θ to a task's support set and
/// how to differentiate the query loss after adaptation with respect to its meta-parameters. Adding an
/// algorithm means one new type conforming to this protocol.
public protocol MetaLearner: Sendable {
    /// Short identifier (`maml`, `fomaml`, ...), used by the CLI and stored in checkpoints.
    var name: String { get }
    /// The inner loop used for meta-training.
    var inner: InnerLoop { get }

    /// The meta-parameters a fresh run starts from, for `model`.
    func initialMetaParameters(for model: Model, seed: UInt64) -> [Float]
    /// Named pieces of the meta-parameter vector beyond the model's parameters (for checkpoints).
    func extraMetaParameters(for model: Model) -> [(name: String, range: Range<Int>)]

    /// One inner-loop update of the model parameters `theta` on `support`.
    func innerStep(_ theta: inout [Float], meta: [Float], support: Batch, workspace: Workspace) throws

    /// The query loss after ``inner`` adaptation from `meta`, and the meta-gradient (for Reptile, its update
    /// direction) with respect to the meta-parameters, written into `gradient`.
    func metaGradient(_ meta: [Float], task: Task, workspace: Workspace, into gradient: inout [Float]) throws -> LossValue

    /// The query loss after 0, 1, ..., `steps` inner steps (default: repeated ``innerStep(_:meta:support:workspace:)``;
    /// a learner whose inner loop carries state, such as Reptile with Adam, provides its own).
    func adaptationCurve(_ meta: [Float], task: Task, steps: Int, workspace: Workspace) throws -> [LossValue]
}

extension MetaLearner {
    public func extraMetaParameters(for model: Model) -> [(name: String, range: Range<Int>)] { [] }

    public func initialMetaParameters(for model: Model, seed: UInt64) -> [Float] { model.initialParameters(seed: seed) }

    /// The model-parameter part θ of a meta-parameter vector.
    public func modelParameters(_ meta: [Float], model: Model) -> [Float] {
        meta.count == model.parameterCount ? meta : Array(meta[0 ..< model.parameterCount])
    }

    /// Model parameters after `steps` inner steps on `support`.
    public func adapt(_ meta: [Float], support: Batch, steps: Int, workspace: Workspace) throws -> [Float] {
        var theta = modelParameters(meta, model: workspace.model)
        for _ in 0 ..< steps { try innerStep(&theta, meta: meta, support: support, workspace: workspace) }
        return theta
    }

    public func adaptationCurve(_ meta: [Float], task: Task, steps: Int, workspace: Workspace) throws -> [LossValue] {
        var theta = modelParameters(meta, model: workspace.model)
        var curve = [try workspace.loss(at: theta, on: task.query)]
        for _ in 0 ..< steps {
            try innerStep(&theta, meta: meta, support: task.support, workspace: workspace)
            curve.append(try workspace.loss(at: theta, on: task.query))
        }
        return curve
    }

    /// The meta-loss alone: the query loss after ``inner`` adaptation (what the meta-gradient differentiates).
    public func metaLoss(_ meta: [Float], task: Task, workspace: Workspace) throws -> LossValue {
        try workspace.loss(at: adapt(meta, support: task.support, steps: inner.steps, workspace: workspace), on: task.query)
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

/// Plain SGD on the support loss: the inner step of MAML, first-order MAML and Reptile.
func sgdStep(_ theta: inout [Float], learningRate: Float, support: Batch, workspace: Workspace) throws {
    var gradient: [Float] = []
    try workspace.gradient(at: theta, on: support, into: &gradient)
    theta.add(gradient, scaledBy: -learningRate)
}
