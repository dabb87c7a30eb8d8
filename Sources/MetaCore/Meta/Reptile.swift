/// Reptile (Nichol et al. 2018): adapt with K inner SGD steps, then move the initialisation towards the
/// adapted parameters, θ ← θ + ε (θ_K − θ).
///
/// Its "meta-gradient" is the update direction θ − θ_K: with a plain SGD meta-optimiser of learning rate ε
/// this is exactly Reptile's update (with Adam, the common adaptive variant). It is not the gradient of any
/// loss, so `metactl verify` does not apply to it.
///
/// The inner optimiser is SGD (as in the paper's sinusoid experiments) or Adam (as in its few-shot image
/// experiments), fresh for every task.
public struct Reptile: InnerUpdateLearner, StackableMetaLearner {
    public enum InnerOptimizer: String, Sendable, Codable, CaseIterable { case sgd, adam }
    public let inner: InnerLoop
    public let innerOptimizer: InnerOptimizer
    public init(inner: InnerLoop, innerOptimizer: InnerOptimizer = .sgd) {
        self.inner = inner
        self.innerOptimizer = innerOptimizer
    }
    public var name: String { "reptile" }

    /// SGD: the stateless inner step (Adam's state lives in ``adaptationCurve(_:task:steps:workspace:)``).
    public func innerUpdate(for model: Model) throws -> InnerUpdate { InnerUpdate(rate: .scalar(inner.learningRate)) }

    /// Parameters after `steps` inner steps with the chosen inner optimiser; `query` (if given) is measured
    /// before the first step and after each.
    func adapted(_ meta: [Float], support: Batch, steps: Int, query: Batch?, workspace: Workspace) throws -> ([Float], [LossValue]) {
        var theta = meta, curve: [LossValue] = [], gradient: [Float] = []
        var adam = try Adam(learningRate: inner.learningRate)
        if let query { curve.append(try workspace.loss(at: theta, on: query)) }
        for _ in 0 ..< steps {
            try workspace.gradient(at: theta, on: support, into: &gradient)
            switch innerOptimizer {
            case .sgd: theta.add(gradient, scaledBy: -inner.learningRate)
            case .adam: adam.step(&theta, gradient: gradient)
            }
            if let query { curve.append(try workspace.loss(at: theta, on: query)) }
        }
        return (theta, curve)
    }

    public func adaptationCurve(_ meta: [Float], task: Task, steps: Int, workspace: Workspace) throws -> [LossValue] {
        try adapted(meta, support: task.support, steps: steps, query: task.query, workspace: workspace).1
    }

    public func predict(_ meta: [Float], support: Batch, queries: Tensor, steps: Int, workspace: Workspace) throws -> Tensor {
        try workspace.predict(at: adapted(meta, support: support, steps: steps, query: nil, workspace: workspace).0, inputs: queries)
    }

    public func metaGradient(_ meta: [Float], task: Task, workspace: Workspace, into gradient: inout [Float]) throws -> LossValue {
        let adapted = try adapted(meta, support: task.support, steps: inner.steps, query: nil, workspace: workspace).0
        gradient = meta
        gradient.add(adapted, scaledBy: -1)
        return try workspace.loss(at: adapted, on: task.query)
    }
}

extension Reptile {
    static let registrations = [
        AlgorithmEntry(name: "reptile", summary: "Reptile: move the initialisation towards the adapted parameters",
                       options: [OptionSpec("inner-optimizer", .choice(InnerOptimizer.allCases.map(\.rawValue)), default: .string("sgd"),
                                            help: "Reptile's inner optimiser, fresh for every task")],
                       verifiable: false) { config, options in
            Reptile(inner: try config.innerLoop(), innerOptimizer: InnerOptimizer(rawValue: options.string("inner-optimizer")!)!)
        },
    ]
}
