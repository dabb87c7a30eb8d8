import Foundation

/// MAML++ (Antoniou, Edwards & Storkey 2019, "How to train your MAML"): MAML with its training fixed, each
/// change switchable.
///
/// - **Multi-step loss** (`msl`): the meta-loss is Σₖ vₖ L_Q(θₖ₊₁), the query loss after every inner step,
///   weighted; the weights start equal and anneal, over ``Schedule/multiStepIterations``, towards the last step
///   (the non-final ones down to 0.03/K each), as in the reference code.
/// - **Learned per-layer per-step learning rates** (`lslr`): step k updates parameter tensor t with its own
///   rate αₖₜ, a meta-parameter (from the inner learning rate).
/// - **Per-step batch-norm weights and biases** (`perStepBatchNorm`): step k's support pass, and the query
///   pass after it, use batch-norm parameters βₖ of their own, meta-learned and not adapted by the inner
///   loop (β₀ are the model's own).
/// - **Derivative-order annealing**: first order before ``Schedule/firstOrderIterations``, then second.
/// - **Cosine annealing** of the meta learning rate over ``Schedule/cosineIterations`` down to
///   ``Schedule/minimumLearningRateFactor`` of it.
///
/// Second order is exact: with g entering as v_{K−1}∇L_Q(θ_K), each step back from θₖ₊₁ = θₖ − Dₖ∇L_S(θₖ)
/// gives ∂/∂αₖₜ = −Σ_{i∈t} ∇L_S(θₖ)ᵢ gᵢ and g ← g − H_S(θₖ)(Dₖ g) + v_{k−1}∇L_Q(θₖ) — one Hessian-vector product
/// and one query gradient per step. With per-step batch-norm, the products and gradients are taken with βₖ in
/// the batch-norm slots, and their batch-norm parts go to βₖ: −(H(Dₖ g)) there is the mixed derivative through
/// the step. First order drops the Hessian term and keeps the rates' gradient. (MAML++'s per-step running
/// statistics have no counterpart: MetaCore's batch-norm uses each batch's own statistics.)
public struct MAMLPlusPlus: ScheduledMetaLearner, GradientMetaLearner {
    public struct Schedule: Sendable, Equatable {
        /// Iterations over which the multi-step loss weights anneal towards the last step (MAML++: 10 epochs
        /// of 500).
        public var multiStepIterations = 5000
        /// Iterations trained in first order before second order (0: second order throughout).
        public var firstOrderIterations = 0
        /// The cosine annealing's period in iterations (0: a constant meta learning rate).
        public var cosineIterations = 0
        /// The meta learning rate's floor, as a fraction of it (MAML++: 1e-5 / 1e-3).
        public var minimumLearningRateFactor: Float = 0.01
        public init() {}
    }

    public let inner: InnerLoop
    public let multiStepLoss: Bool
    public let learnsRates: Bool
    public let perStepBatchNorm: Bool
    public let schedule: Schedule
    /// The weights of the query losses after steps 1 … K at the current iteration (see ``scheduled(at:)``).
    public let lossWeights: [Double]
    public let order: MAML.Order

    public init(inner: InnerLoop, multiStepLoss: Bool = true, learnsRates: Bool = true, perStepBatchNorm: Bool = true,
                schedule: Schedule = Schedule()) throws {
        guard inner.steps >= 1 else { throw MetaCoreError.argument("MAML++ needs at least 1 inner step, got \(inner.steps)") }
        guard schedule.multiStepIterations >= 0, schedule.firstOrderIterations >= 0, schedule.cosineIterations >= 0 else {
            throw MetaCoreError.argument("MAML++'s schedule lengths must be >= 0")
        }
        guard schedule.minimumLearningRateFactor >= 0, schedule.minimumLearningRateFactor <= 1 else {
            throw MetaCoreError.argument("MAML++'s minimum meta learning rate factor must be in [0, 1], got \(schedule.minimumLearningRateFactor)")
        }
        self.inner = inner; self.multiStepLoss = multiStepLoss; self.learnsRates = learnsRates; self.schedule = schedule
        self.perStepBatchNorm = perStepBatchNorm
        self.lossWeights = Self.lossWeights(steps: inner.steps, iteration: 0, annealing: schedule.multiStepIterations, enabled: multiStepLoss)
        self.order = schedule.firstOrderIterations > 0 ? .first : .second
    }

    private init(_ base: MAMLPlusPlus, lossWeights: [Double], order: MAML.Order) {
        inner = base.inner; multiStepLoss = base.multiStepLoss; learnsRates = base.learnsRates; schedule = base.schedule
        perStepBatchNorm = base.perStepBatchNorm
        self.lossWeights = lossWeights; self.order = order
    }

    public var name: String { "maml++" }

    /// MAML++'s per-step loss importance at `iteration`: 1/K each at first; the non-final weights fall
    /// linearly to 0.03/K over `annealing` iterations, and the last rises to 1 − (K−1)·0.03/K. Without the
    /// multi-step loss, only the last step counts.
    public static func lossWeights(steps k: Int, iteration: Int, annealing: Int, enabled: Bool) -> [Double] {
        guard enabled else { return (0 ..< k).map { $0 == k - 1 ? 1 : 0 } }
        let n = Double(k), progress = annealing > 0 ? Double(iteration) / Double(annealing) : .infinity
        let floor = 0.03 / n, decay = progress / n   // the reference's epoch × (1/K / epochs)
        var weights = [Double](repeating: max(1 / n - decay, floor), count: k)
        weights[k - 1] = min(1 / n + decay * (n - 1), 1 - (n - 1) * floor)
        return weights
    }

    public func scheduled(at iteration: Int) -> any MetaLearner {
        MAMLPlusPlus(self, lossWeights: Self.lossWeights(steps: inner.steps, iteration: iteration, annealing: schedule.multiStepIterations,
                                                         enabled: multiStepLoss),
                     order: iteration < schedule.firstOrderIterations ? .first : .second)
    }

    public func metaLearningRateFactor(at iteration: Int) -> Float {
        guard schedule.cosineIterations > 0,
              let cosine = try? LearningRateDecay(shape: .cosine, iterations: schedule.cosineIterations, finalFactor: schedule.minimumLearningRateFactor)
        else { return 1 }
        return cosine.factor(at: iteration)
    }

    // MARK: Meta-parameters: θ; with learned rates, αₖₜ for step k and tensor t (step-major); with per-step
    // batch-norm, β₁ … β_{K−1} (each the model's batch-norm parameters in layout order).

    /// The batch-norm parameters' ranges in θ (none without per-step batch-norm).
    func batchNormRanges(_ model: Model) -> [Range<Int>] {
        guard perStepBatchNorm else { return [] }
        return model.layout.entries.filter { entry in
            if case .layer(let layer) = model.nodes[entry.layer].step { return layer is BatchNorm }
            return false
        }.map(\.range)
    }

    private func rateCount(_ model: Model) -> Int { learnsRates ? inner.steps * model.layout.entries.count : 0 }

    /// Where step `step`'s batch-norm parameters start in the meta-parameters (step 0: θ's own).
    private func batchNormOffset(_ model: Model, step: Int) -> Int {
        let size = batchNormRanges(model).reduce(0) { $0 + $1.count }
        return model.parameterCount + rateCount(model) + (step - 1) * size
    }

    public func initialMetaParameters(for model: Model, seed: UInt64) -> [Float] {
        let theta = model.initialParameters(seed: seed), bn = batchNormRanges(model).flatMap { theta[$0] }
        return theta + [Float](repeating: inner.learningRate, count: rateCount(model))
            + (1 ..< max(1, inner.steps)).flatMap { _ in bn }
    }

    /// `lslr.<k>`: step k's rates, one per parameter tensor in the model's layout order; `bn.<k>`: step k's
    /// batch-norm parameters.
    public func extraMetaParameters(for model: Model) -> [(name: String, range: Range<Int>)] {
        let p = model.parameterCount, t = model.layout.entries.count
        let size = batchNormRanges(model).reduce(0) { $0 + $1.count }
        let rates = learnsRates ? (0 ..< inner.steps).map { k in ("lslr.\(k)", p + k * t ..< p + (k + 1) * t) } : []
        let norms = size == 0 ? [] : (1 ..< inner.steps).map { k in ("bn.\(k)", batchNormOffset(model, step: k) ..< batchNormOffset(model, step: k) + size) }
        return rates + norms
    }

    /// The rate of tensor `tensor` at inner step `step` (steps beyond K use the last step's).
    func rate(_ meta: [Float], model: Model, step: Int, tensor: Int) -> Float {
        learnsRates ? meta[model.parameterCount + min(step, inner.steps - 1) * model.layout.entries.count + tensor] : inner.learningRate
    }

    /// `theta` with step `step`'s batch-norm parameters in their slots (steps beyond K use the last step's).
    func withBatchNorm(_ theta: [Float], meta: [Float], model: Model, step: Int) -> [Float] {
        let step = min(step, inner.steps - 1)
        guard step > 0, perStepBatchNorm else { return theta }
        var point = theta, source = batchNormOffset(model, step: step)
        for range in batchNormRanges(model) {
            point.replaceSubrange(range, with: meta[source ..< source + range.count])
            source += range.count
        }
        return point
    }

    /// θ ← θ − Dₖ `gradient` (batch-norm parameters stay, with per-step batch-norm).
    func update(_ theta: inout [Float], gradient: [Float], meta: [Float], model: Model, step: Int) {
        let fixed = Set(batchNormRanges(model).map(\.lowerBound))
        for (t, entry) in model.layout.entries.enumerated() where !fixed.contains(entry.offset) {
            let alpha = rate(meta, model: model, step: step, tensor: t)
            for i in entry.range { theta[i] -= alpha * gradient[i] }
        }
    }

    /// Inner step k from `theta` (its support pass with βₖ); returns the support gradient it took.
    @discardableResult
    func innerStep(_ theta: inout [Float], step: Int, meta: [Float], support: Batch, workspace: Workspace) throws -> [Float] {
        try workspace.gradient(at: withBatchNorm(theta, meta: meta, model: workspace.model, step: step), on: support, into: &workspace.innerGradient)
        update(&theta, gradient: workspace.innerGradient, meta: meta, model: workspace.model, step: step)
        return workspace.innerGradient
    }

    /// The first step's rule (``GradientMetaLearner``'s; MAML++'s own passes number their steps).
    public func innerStep(_ theta: inout [Float], meta: [Float], support: Batch, workspace: Workspace) throws {
        try innerStep(&theta, step: 0, meta: meta, support: support, workspace: workspace)
    }

    public func adaptationCurve(_ meta: [Float], task: Task, steps: Int, workspace: Workspace) throws -> [LossValue] {
        var theta = modelParameters(meta, model: workspace.model)
        var curve = [try workspace.loss(at: theta, on: task.query)]
        for k in 0 ..< steps {
            try innerStep(&theta, step: k, meta: meta, support: task.support, workspace: workspace)
            curve.append(try workspace.loss(at: withBatchNorm(theta, meta: meta, model: workspace.model, step: k), on: task.query))
        }
        return curve
    }

    /// The outputs after `steps` steps, with the batch-norm weights of the last step taken (as ``adaptationCurve(_:task:steps:workspace:)`` measures them).
    public func predict(_ meta: [Float], support: Batch, queries: Tensor, steps: Int, workspace: Workspace) throws -> Tensor {
        var theta = modelParameters(meta, model: workspace.model)
        for k in 0 ..< steps { try innerStep(&theta, step: k, meta: meta, support: support, workspace: workspace) }
        return try workspace.predict(at: steps > 0 ? withBatchNorm(theta, meta: meta, model: workspace.model, step: steps - 1) : theta, inputs: queries)
    }

    /// Σₖ vₖ L_Q(θₖ₊₁), with the accuracy after the last step.
    public func metaLoss(_ meta: [Float], task: Task, workspace: Workspace) throws -> LossValue {
        let curve = try adaptationCurve(meta, task: task, steps: inner.steps, workspace: workspace)
        var value = curve[inner.steps]
        value.loss = zip(lossWeights, curve.dropFirst()).reduce(0) { $0 + $1.0 * $1.1.loss }
        return value
    }

    public func metaGradient(_ meta: [Float], task: Task, workspace: Workspace, into gradient: inout [Float]) throws -> LossValue {
        let model = workspace.model, p = model.parameterCount, k = inner.steps, bn = batchNormRanges(model)
        workspace.heldPasses = order == .second ? k : 0
        var trajectory = [modelParameters(meta, model: model)], supportGradients: [[Float]] = []
        for step in 0 ..< k {
            var theta = trajectory[step]
            supportGradients.append(try innerStep(&theta, step: step, meta: meta, support: task.support, workspace: workspace))
            trajectory.append(theta)
        }
        gradient = [Float](repeating: 0, count: meta.count)
        var last = LossValue(loss: 0, correct: nil, count: 0), loss = 0.0
        var queryGradient: [Float] = []
        /// Adds `scale` times the batch-norm part of `v` to βₖ's gradient.
        func addToBatchNorm(_ v: [Float], step: Int, scale: Float) {
            var target = step == 0 ? 0 : batchNormOffset(model, step: step)
            for range in bn {
                for i in range { gradient[step == 0 ? i : target + i - range.lowerBound] += scale * v[i] }
                target += range.count
            }
        }
        /// The gradient of vₖ L_Q after step k (with βₖ): into g, or βₖ's part into βₖ's gradient.
        func addQueryGradient(after step: Int, to g: inout [Float]) throws {
            guard lossWeights[step] != 0 else { return }
            let point = withBatchNorm(trajectory[step + 1], meta: meta, model: model, step: step)
            let value = try workspace.onQuerySet { try $0.gradient(at: point, on: task.query, into: &queryGradient) }
            loss += lossWeights[step] * value.loss
            if step == k - 1 { last = value }
            let w = Float(lossWeights[step])
            addToBatchNorm(queryGradient, step: step, scale: w)
            for range in bn { for i in range { queryGradient[i] = 0 } }
            g.add(queryGradient, scaledBy: w)
        }
        var g = [Float](repeating: 0, count: p)
        try addQueryGradient(after: k - 1, to: &g)
        if lossWeights[k - 1] == 0 {   // the final accuracy is reported even when its loss carries no weight
            last = try workspace.onQuerySet { try $0.loss(at: withBatchNorm(trajectory[k], meta: meta, model: model, step: k - 1), on: task.query) }
        }
        var direction = [Float](repeating: 0, count: p)
        let fixed = Set(bn.map(\.lowerBound))
        for step in stride(from: k - 1, through: 0, by: -1) {
            let s = supportGradients[step]
            for (t, entry) in model.layout.entries.enumerated() {
                let alpha = fixed.contains(entry.offset) ? 0 : rate(meta, model: model, step: step, tensor: t)
                var dot = 0.0
                for i in entry.range { direction[i] = alpha * g[i]; dot += Double(s[i]) * Double(g[i]) }
                if learnsRates && !fixed.contains(entry.offset) { gradient[p + step * model.layout.entries.count + t] = Float(-dot) }
            }
            if order == .second {
                try workspace.hessianVectorProduct(at: withBatchNorm(trajectory[step], meta: meta, model: model, step: step), on: task.support,
                                                   direction: direction, into: &workspace.hessianVector, gradient: &workspace.innerGradient)
                addToBatchNorm(workspace.hessianVector, step: step, scale: -1)
                for range in bn { for i in range { workspace.hessianVector[i] = 0 } }
                g.add(workspace.hessianVector, scaledBy: -1)
            }
            if step > 0 { try addQueryGradient(after: step - 1, to: &g) }
        }
        for i in 0 ..< p { gradient[i] += g[i] }
        last.loss = loss
        return last
    }

    static let registrations = [
        AlgorithmEntry(name: "maml++", summary: "MAML++: multi-step loss, learned per-layer per-step rates, derivative-order and cosine annealing",
                       options: [OptionSpec("msl", .bool, default: .bool(true), help: "multi-step loss: the weighted query loss after every inner step"),
                                 OptionSpec("msl-iterations", .int(0 ... Int.max), default: .int(5000), help: "iterations over which the multi-step loss anneals towards the last step"),
                                 OptionSpec("lslr", .bool, default: .bool(true), help: "learn a rate per parameter tensor per inner step"),
                                 OptionSpec("per-step-bn", .bool, default: .bool(true), help: "batch-norm weights and biases of their own for every inner step, not adapted by it"),
                                 OptionSpec("first-order-iterations", .int(0 ... Int.max), default: .int(0), help: "train in first order for this many iterations, then second"),
                                 OptionSpec("cosine-iterations", .int(0 ... Int.max), default: .int(0), help: "cosine-anneal the meta learning rate over this many iterations (0: constant)"),
                                 OptionSpec("min-meta-lr-factor", .float(0 ... 1), default: .float(0.01), help: "the cosine annealing's floor, as a fraction of --meta-lr")]) { config, options in
            var schedule = Schedule()
            schedule.multiStepIterations = options.int("msl-iterations")!
            schedule.firstOrderIterations = options.int("first-order-iterations")!
            schedule.cosineIterations = options.int("cosine-iterations")!
            schedule.minimumLearningRateFactor = Float(options.double("min-meta-lr-factor")!)
            return try MAMLPlusPlus(inner: try config.innerLoop(), multiStepLoss: options.bool("msl")!, learnsRates: options.bool("lslr")!,
                                    perStepBatchNorm: options.bool("per-step-bn")!, schedule: schedule)
        },
    ]
}
