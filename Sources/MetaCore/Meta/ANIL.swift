/// ANIL, "almost no inner loop" (Raghu et al. 2020): the inner loop adapts only the head (the last layer
/// with parameters, ``Model/head(layers:)``); the body is meta-learned through it, exactly.
///
/// With P the projection onto the head's parameters, θ_{k+1} = θ_k − α P ∇L_S(θ_k), so the reverse step is
/// g ← g − α H_S(θ_k) (P g): one Hessian-vector product along a head-only direction, whose result reaches
/// the body through the Hessian's off-diagonal blocks.
public struct ANIL: InnerUpdateLearner {
    public let inner: InnerLoop
    public init(inner: InnerLoop) { self.inner = inner }
    public var name: String { "anil" }

    public func innerUpdate(for model: Model) throws -> InnerUpdate {
        InnerUpdate(rate: .scalar(inner.learningRate), adapted: try model.head(layers: 1))
    }

    public func check(model: Model, tasks: any TaskDistribution) throws {
        try checkShapes(model: model, tasks: tasks)
        _ = try model.head(layers: 1)
    }

    static let registrations = [
        AlgorithmEntry(name: "anil", summary: "ANIL: only the head adapts; the body is meta-learned through it exactly") { config, _ in
            ANIL(inner: try config.innerLoop())
        },
    ]
}
