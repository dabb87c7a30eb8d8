/// Meta-SGD (Li et al. 2017): a learned per-parameter inner learning rate α, θ_{k+1} = θ_k − α ⊙ ∇L_S(θ_k),
/// meta-trained together with θ. Meta-parameters are θ followed by α (initialised to the inner learning rate).
///
/// Exact second order (``InnerUpdate``): with g = ∂L_Q/∂θ_{k+1}, each step back gives ∂/∂α += −∇L_S(θ_k) ⊙ g
/// and g ← g − H_S(θ_k) (α ⊙ g). The Hessian-vector product also returns ∇L_S(θ_k), so a step costs one R-pass.
public struct MetaSGD: InnerUpdateLearner {
    public let inner: InnerLoop
    public init(inner: InnerLoop) { self.inner = inner }
    public var name: String { "metasgd" }

    public func initialMetaParameters(for model: Model, seed: UInt64) -> [Float] {
        model.initialParameters(seed: seed) + [Float](repeating: inner.learningRate, count: model.parameterCount)
    }

    public func extraMetaParameters(for model: Model) -> [(name: String, range: Range<Int>)] {
        model.layout.entries.map { ("alpha.\($0.name)", model.parameterCount + $0.offset ..< model.parameterCount + $0.range.upperBound) }
    }

    public func innerUpdate(for model: Model) throws -> InnerUpdate { InnerUpdate(rate: .perParameter(offset: model.parameterCount)) }

    static let registrations = [
        AlgorithmEntry(name: "metasgd", summary: "Meta-SGD: learned per-parameter inner learning rates, exact second order") { config, _ in
            MetaSGD(inner: try config.innerLoop())
        },
    ]
}
