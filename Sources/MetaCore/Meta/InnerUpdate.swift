/// The one inner-update rule of the gradient-based learners, θₖ₊₁ = θₖ − D ∇L_B(θₖ), and its exact reverse
/// step. D is α·P — a scalar rate on the ``adapted`` parameters, zero elsewhere (MAML: all of them; ANIL and
/// OML: the head) — or diag(α) with α a learned part of the meta-parameters (Meta-SGD).
///
/// Reverse accumulation through a step, with g = ∂L/∂θₖ₊₁: ∂L/∂θₖ = g − H_B(θₖ) (D g), and for a learned rate
/// ∂L/∂α += −∇L_B(θₖ) ⊙ g — one exact Hessian-vector product per step, which returns ∇L_B(θₖ) as well.
public struct InnerUpdate: Sendable {
    public enum Rate: Sendable, Equatable {
        /// α·I on the adapted parameters.
        case scalar(Float)
        /// diag(α), α read from the meta-parameters: the rate of parameter i is `meta[offset + i]`.
        case perParameter(offset: Int)
    }

    public let rate: Rate
    /// The parameters the step changes; `nil`: every one.
    public let adapted: Range<Int>?

    public init(rate: Rate, adapted: Range<Int>? = nil) {
        self.rate = rate
        self.adapted = adapted
    }

    /// θ ← θ − D `gradient`.
    public func apply(_ theta: inout [Float], gradient: [Float], meta: [Float]) throws {
        precondition(gradient.count == theta.count, "a gradient of \(gradient.count) for \(theta.count) parameters")
        let range = adapted ?? 0 ..< theta.count
        switch rate {
        case .scalar(let alpha) where adapted == nil:
            // Into a new vector: θ is usually the previous point of a trajectory, kept, which an update in place
            // would first copy.
            theta = theta.withUnsafeBufferPointer { t in
                gradient.withUnsafeBufferPointer { g in
                    [Float](unsafeUninitializedCapacity: t.count) { out, count in
                        for i in 0 ..< t.count { out[i] = t[i] - alpha * g[i] }
                        count = t.count
                    }
                }
            }
        case .scalar(let alpha):
            theta.withUnsafeMutableBufferPointer { t in
                gradient.withUnsafeBufferPointer { g in for i in range { t[i] -= alpha * g[i] } }
            }
        case .perParameter(let offset):
            guard meta.count >= offset + theta.count else {
                throw MetaCoreError.shape("per-parameter learning rates need \(offset + theta.count) meta-parameters (θ and α), got \(meta.count)")
            }
            for i in range { theta[i] -= meta[offset + i] * gradient[i] }
        }
    }

    /// One gradient step on `batch` from `theta`.
    public func step(_ theta: inout [Float], meta: [Float], batch: Batch, workspace: Workspace) throws {
        try workspace.gradient(at: theta, on: batch, into: &workspace.innerGradient)
        try apply(&theta, gradient: workspace.innerGradient, meta: meta)
    }

    /// Reverse accumulation through inner steps taken from `points[k]` on `batch(k)`: `g` enters as the
    /// derivative with respect to the parameters after the last step and leaves as the one with respect to
    /// the first point; with a per-parameter rate, the returned vector is ∂L/∂α (empty otherwise).
    public func backpropagate(_ g: inout [Float], points: ArraySlice<[Float]>, batch: (Int) -> Batch, meta: [Float],
                              workspace: Workspace) throws -> [Float] {
        let count = g.count, range = adapted ?? 0 ..< count
        var rateGradient: [Float] = []
        // D g, where it is not g itself (zero outside the adapted parameters)
        var direction = adapted == nil ? [] : [Float](repeating: 0, count: count)
        if case .perParameter = rate { rateGradient = [Float](repeating: 0, count: count) }
        for k in points.indices.reversed() {
            switch rate {
            case .scalar(let alpha):
                if adapted != nil { for i in range { direction[i] = g[i] } }
                try workspace.hessianVectorProduct(at: points[k], on: batch(k), direction: adapted == nil ? g : direction,
                                                   into: &workspace.hessianVector)
                g.add(workspace.hessianVector, scaledBy: -alpha)
            case .perParameter(let offset):
                if direction.isEmpty { direction = [Float](repeating: 0, count: count) }
                for i in range { direction[i] = meta[offset + i] * g[i] }
                try workspace.hessianVectorProduct(at: points[k], on: batch(k), direction: direction,
                                                   into: &workspace.hessianVector, gradient: &workspace.innerGradient)
                let hv = workspace.hessianVector, supportGradient = workspace.innerGradient
                for i in 0 ..< count {
                    rateGradient[i] -= supportGradient[i] * g[i]
                    g[i] -= hv[i]
                }
            }
        }
        return rateGradient
    }
}

/// A gradient-based learner whose inner step is an ``InnerUpdate``: it gets the inner step and the exact
/// second-order meta-gradient from the rule.
public protocol InnerUpdateLearner: GradientMetaLearner {
    /// The inner-update rule on `model`.
    func innerUpdate(for model: Model) throws -> InnerUpdate
}

extension InnerUpdateLearner {
    public func innerStep(_ theta: inout [Float], meta: [Float], support: Batch, workspace: Workspace) throws {
        try innerUpdate(for: workspace.model).step(&theta, meta: meta, batch: support, workspace: workspace)
    }

    /// The exact meta-gradient through every inner step: the query gradient at θ_K, carried back to the
    /// meta-parameters by ``InnerUpdate/backpropagate(_:points:batch:meta:workspace:)`` (the learned rates'
    /// part appended).
    public func secondOrderMetaGradient(_ meta: [Float], task: Task, workspace: Workspace, into gradient: inout [Float]) throws -> LossValue {
        let update = try innerUpdate(for: workspace.model)
        let (trajectory, value) = try heldTrajectory(meta, task: task, workspace: workspace, queryGradient: &gradient)
        let rateGradient = try update.backpropagate(&gradient, points: trajectory.dropLast(), batch: { _ in task.support },
                                                    meta: meta, workspace: workspace)
        if !rateGradient.isEmpty { gradient += rateGradient }
        return value
    }

    public func metaGradient(_ meta: [Float], task: Task, workspace: Workspace, into gradient: inout [Float]) throws -> LossValue {
        try secondOrderMetaGradient(meta, task: task, workspace: workspace, into: &gradient)
    }
}

/// Steps of a scalar-rate rule on a head alone, over features a body computed once (ANIL's inner loop, OML's
/// online steps), and their exact reverse pass.
extension InnerUpdate {
    /// The head's parameters after one step on each of `batches` from `w`, and, when `recording`, those before
    /// each step (each step's pass then held for the Hessian-vector product that revisits it).
    func steps(from w: [Float], over batches: [Batch], head: Workspace, recording: Bool) throws -> (w: [Float], before: [[Float]]) {
        head.heldPasses = recording ? batches.count : 0
        var w = w, before: [[Float]] = []
        for batch in batches {
            if recording { before.append(w) }
            try step(&w, meta: [], batch: batch, workspace: head)
        }
        return (w, before)
    }

    /// Reverse accumulation through ``steps(from:over:head:recording:)``: g ← g − α H_{B_k}(w_k) g on the head, and
    /// onto the features of step k's samples, from `offsets[k]` in `featureDerivative`, the body's part of the same
    /// product, −α ∂⟨∇_w L_{B_k}, g⟩/∂F (added). `head.differentiatesInput` must have been on for the steps too.
    func backpropagate(_ g: inout [Float], before: [[Float]], batches: [Batch], offsets: [Int], head: Workspace,
                       featureDerivative: UnsafeMutableBufferPointer<Float>) throws {
        guard case .scalar(let alpha) = rate, adapted == nil else { preconditionFailure("a head's steps have one rate on all its parameters") }
        for k in before.indices.reversed() {
            try head.hessianVectorProduct(at: before[k], on: batches[k], direction: g, into: &head.hessianVector, gradient: &head.innerGradient)
            for (i, x) in head.inputHessianVector.enumerated() { featureDerivative[offsets[k] + i] -= alpha * x }
            g.add(head.hessianVector, scaledBy: -alpha)
        }
    }
}
