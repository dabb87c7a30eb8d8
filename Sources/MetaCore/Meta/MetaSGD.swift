/// Meta-SGD (Li et al. 2017): a learned per-parameter inner learning rate α, θ_{k+1} = θ_k − α ⊙ ∇L_S(θ_k),
/// meta-trained together with θ. Meta-parameters are θ followed by α (initialised to the inner learning rate).
///
/// Exact second order: with g = ∂L_Q/∂θ_{k+1}, each step back gives ∂/∂α += −∇L_S(θ_k) ⊙ g and
/// g ← g − H_S(θ_k) (α ⊙ g). The Hessian-vector product also returns ∇L_S(θ_k), so a step costs one R-pass.
public struct MetaSGD: GradientMetaLearner {
    public let inner: InnerLoop
    public init(inner: InnerLoop) { self.inner = inner }
    public var name: String { "metasgd" }

    public func initialMetaParameters(for model: Model, seed: UInt64) -> [Float] {
        model.initialParameters(seed: seed) + [Float](repeating: inner.learningRate, count: model.parameterCount)
    }

    public func extraMetaParameters(for model: Model) -> [(name: String, range: Range<Int>)] {
        model.layout.entries.map { ("alpha.\($0.name)", model.parameterCount + $0.offset ..< model.parameterCount + $0.range.upperBound) }
    }

    public func innerStep(_ theta: inout [Float], meta: [Float], support: Batch, workspace: Workspace) throws {
        let count = workspace.model.parameterCount
        guard meta.count == 2 * count else {
            throw MetaCoreError.shape("Meta-SGD meta-parameters have \(meta.count) entries; expected \(2 * count) (θ and α)")
        }
        var gradient: [Float] = []
        try workspace.gradient(at: theta, on: support, into: &gradient)
        for i in 0 ..< count { theta[i] -= meta[count + i] * gradient[i] }
    }

    public func metaGradient(_ meta: [Float], task: Task, workspace: Workspace, into gradient: inout [Float]) throws -> LossValue {
        let count = workspace.model.parameterCount
        var g: [Float] = []
        let (trajectory, value) = try heldTrajectory(meta, task: task, workspace: workspace, queryGradient: &g)
        var alphaGradient = [Float](repeating: 0, count: count)
        var direction = [Float](repeating: 0, count: count), hv: [Float] = [], supportGradient: [Float] = []
        for k in stride(from: inner.steps - 1, through: 0, by: -1) {
            for i in 0 ..< count { direction[i] = meta[count + i] * g[i] }
            try workspace.hessianVectorProduct(at: trajectory[k], on: task.support, direction: direction,
                                               into: &hv, gradient: &supportGradient)
            for i in 0 ..< count {
                alphaGradient[i] -= supportGradient[i] * g[i]
                g[i] -= hv[i]
            }
        }
        gradient = g + alphaGradient
        return value
    }
}
