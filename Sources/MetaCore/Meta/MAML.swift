/// Model-Agnostic Meta-Learning (Finn et al. 2017).
///
/// Second order (the default) is the exact meta-gradient: with θ_{k+1} = θ_k − α ∇L_S(θ_k) and meta-loss
/// L_Q(θ_K), reverse accumulation through the inner steps gives g ← ∇L_Q(θ_K), then for k = K−1 … 0:
/// g ← g − α H_S(θ_k) g, one exact Hessian-vector product per step. Memory grows with the K stored
/// parameter vectors, not with a recorded graph; the inner steps' forward and backward passes are kept for
/// their products within ``Workspace/heldPassBytes`` (recomputed beyond it). First order drops the Hessian
/// terms: g = ∇L_Q(θ_K).
public struct MAML: GradientMetaLearner {
    public enum Order: String, Sendable, Codable { case first, second }
    public let inner: InnerLoop
    public let order: Order

    public init(inner: InnerLoop, order: Order = .second) {
        self.inner = inner
        self.order = order
    }

    public var name: String { order == .second ? "maml" : "fomaml" }

    public func innerStep(_ theta: inout [Float], meta: [Float], support: Batch, workspace: Workspace) throws {
        try sgdStep(&theta, learningRate: inner.learningRate, support: support, workspace: workspace)
    }

    public func metaGradient(_ meta: [Float], task: Task, workspace: Workspace, into gradient: inout [Float]) throws -> LossValue {
        guard order == .second else {
            workspace.heldPasses = 0   // first order revisits no inner step
            let theta = try adapt(meta, support: task.support, steps: inner.steps, workspace: workspace)
            return try workspace.gradient(at: theta, on: task.query, into: &gradient)
        }
        let (trajectory, value) = try heldTrajectory(meta, task: task, workspace: workspace, queryGradient: &gradient)
        for k in stride(from: inner.steps - 1, through: 0, by: -1) {
            try workspace.hessianVectorProduct(at: trajectory[k], on: task.support, direction: gradient,
                                               into: &workspace.hessianVector, gradient: &workspace.innerGradient)
            gradient.add(workspace.hessianVector, scaledBy: -inner.learningRate)
        }
        return value
    }
}
