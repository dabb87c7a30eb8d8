/// Model-Agnostic Meta-Learning (Finn et al. 2017).
///
/// Second order (the default) is the exact meta-gradient: with θ_{k+1} = θ_k − α ∇L_S(θ_k) and meta-loss
/// L_Q(θ_K), reverse accumulation through the inner steps gives g ← ∇L_Q(θ_K), then for k = K−1 … 0:
/// g ← g − α H_S(θ_k) g, one exact Hessian-vector product per step (``InnerUpdate``). Memory grows with the K
/// stored parameter vectors, not with a recorded graph; the inner steps' forward and backward passes are kept
/// for their products within ``Workspace/heldPassBytes`` (recomputed beyond it). First order drops the Hessian
/// terms: g = ∇L_Q(θ_K).
public struct MAML: InnerUpdateLearner, StackableMetaLearner {
    public enum Order: String, Sendable, Codable { case first, second }
    public let inner: InnerLoop
    public let order: Order

    public init(inner: InnerLoop, order: Order = .second) {
        self.inner = inner
        self.order = order
    }

    public var name: String { order == .second ? "maml" : "fomaml" }

    public func innerUpdate(for model: Model) throws -> InnerUpdate { InnerUpdate(rate: .scalar(inner.learningRate)) }

    public func metaGradient(_ meta: [Float], task: Task, workspace: Workspace, into gradient: inout [Float]) throws -> LossValue {
        guard order == .second else {
            workspace.heldPasses = 0   // first order revisits no inner step
            let theta = try adapt(meta, support: task.support, steps: inner.steps, workspace: workspace)
            return try workspace.gradient(at: theta, on: task.query, into: &gradient)
        }
        return try secondOrderMetaGradient(meta, task: task, workspace: workspace, into: &gradient)
    }
}

extension MAML {
    static let registrations = [
        AlgorithmEntry(name: "maml", summary: "MAML, exact second order (Finn et al. 2017)") { config, _ in
            MAML(inner: try config.innerLoop(), order: .second)
        },
        AlgorithmEntry(name: "fomaml", summary: "first-order MAML: the query gradient at the adapted parameters") { config, _ in
            MAML(inner: try config.innerLoop(), order: .first)
        },
    ]
}
