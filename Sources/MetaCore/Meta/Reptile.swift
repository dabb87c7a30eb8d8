/// Reptile (Nichol et al. 2018): adapt with K inner SGD steps, then move the initialisation towards the
/// adapted parameters, θ ← θ + ε (θ_K − θ).
///
/// Its "meta-gradient" is the update direction θ − θ_K: with a plain SGD meta-optimiser of learning rate ε
/// this is exactly Reptile's update (with Adam, the common adaptive variant). It is not the gradient of any
/// loss, so `metactl verify` does not apply to it.
public struct Reptile: MetaLearner {
    public let inner: InnerLoop
    public init(inner: InnerLoop) { self.inner = inner }
    public var name: String { "reptile" }

    public func innerStep(_ theta: inout [Float], meta: [Float], support: Batch, workspace: Workspace) throws {
        try sgdStep(&theta, learningRate: inner.learningRate, support: support, workspace: workspace)
    }

    public func metaGradient(_ meta: [Float], task: Task, workspace: Workspace, into gradient: inout [Float]) throws -> LossValue {
        let adapted = try adapt(meta, support: task.support, steps: inner.steps, workspace: workspace)
        gradient = meta
        gradient.add(adapted, scaledBy: -1)
        return try workspace.loss(at: adapted, on: task.query)
    }
}
