/// ANIL, "almost no inner loop" (Raghu et al. 2020): the inner loop adapts only the head (the last layer
/// with parameters); the body is meta-learned through it, exactly.
///
/// With P the projection onto the head's parameters, θ_{k+1} = θ_k − α P ∇L_S(θ_k), so the reverse step is
/// g ← g − α H_S(θ_k) (P g): one Hessian-vector product along a head-only direction, whose result reaches
/// the body through the Hessian's off-diagonal blocks.
public struct ANIL: GradientMetaLearner {
    public let inner: InnerLoop
    public init(inner: InnerLoop) { self.inner = inner }
    public var name: String { "anil" }

    /// The head: the parameters of the last layer that has any.
    public static func head(of model: Model) -> Range<Int> {
        let layer = model.layout.entries.last?.layer ?? 0
        return model.parameterRange(ofLayer: layer)
    }

    public func innerStep(_ theta: inout [Float], meta: [Float], support: Batch, workspace: Workspace) throws {
        var gradient: [Float] = []
        try workspace.gradient(at: theta, on: support, into: &gradient)
        for i in Self.head(of: workspace.model) { theta[i] -= inner.learningRate * gradient[i] }
    }

    public func metaGradient(_ meta: [Float], task: Task, workspace: Workspace, into gradient: inout [Float]) throws -> LossValue {
        let head = Self.head(of: workspace.model)
        let (trajectory, value) = try heldTrajectory(meta, task: task, workspace: workspace, queryGradient: &gradient)
        var direction = [Float](repeating: 0, count: gradient.count), hv: [Float] = []
        for k in stride(from: inner.steps - 1, through: 0, by: -1) {
            for i in head { direction[i] = gradient[i] }
            try workspace.hessianVectorProduct(at: trajectory[k], on: task.support, direction: direction, into: &hv)
            gradient.add(hv, scaledBy: -inner.learningRate)
        }
        return value
    }
}
