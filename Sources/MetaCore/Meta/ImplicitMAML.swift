/// Implicit MAML (Rajeswaran, Finn, Kakade & Levine 2019): the inner problem is regularised towards the
/// initialisation, φ* = argmin_φ L_S(φ) + λ/2 ‖φ − θ‖², and the meta-gradient is the implicit one at its
/// solution, dL_Q(φ*)/dθ = (I + H_S(φ*)/λ)⁻¹ ∇L_Q(φ*).
///
/// The inner problem is solved approximately by ``inner`` steps of gradient descent from θ,
/// φ ← φ − α (∇L_S(φ) + λ (φ − θ)). The linear system is solved by conjugate gradient on exact Hessian-vector
/// products at φ (at most ``cgSteps`` of them, stopping once the residual is below ``cgTolerance`` of
/// ∇L_Q(φ)). Nothing of the inner trajectory is kept — memory does not grow with the inner steps — and the
/// products reuse one held pass at φ, so each costs its R-passes only.
///
/// Conjugate gradient needs I + H/λ positive definite, which holds near a minimum of the regularised problem
/// (H + λI ⪰ 0 there). Where a direction of non-positive curvature turns up, the solve stops at the last
/// iterate; if that is the first, the meta-gradient is ∇L_Q(φ) itself, the first-order approximation.
///
/// Damping (``damping`` δ, ``lambdaDamping`` μ; both 0 by default) solves ((1 + δ) I + H/(λ + μ)) x = b
/// instead, as the authors' code does (δ = 1, μ = 10 in its Omniglot runs): further from the implicit
/// gradient, but positive definite for far more negative curvature, and so a steadier meta-gradient on a
/// network whose inner problem is not convex.
///
/// ``InnerProblem/pullBack`` solves the inner problem as the authors' code does instead: plain gradient steps
/// on L_S alone, then one step on the proximal term alone, φ ← φ − αλ (φ − θ); the products are taken at that
/// φ, and evaluation adapts by the plain steps only (their tests run with λ = 0).
public struct ImplicitMAML: GradientMetaLearner {
    /// How the inner loop treats the proximal term.
    public enum InnerProblem: String, Sendable, CaseIterable {
        /// Every step descends L_S(φ) + λ/2 ‖φ − θ‖², in training and in evaluation.
        case proximal
        /// Plain steps on L_S, then one step on λ/2 ‖φ − θ‖² in training; plain steps only in evaluation.
        case pullBack = "pull-back"
    }

    public let inner: InnerLoop
    public let innerProblem: InnerProblem
    /// The proximal regulariser's strength λ.
    public let lambda: Float
    public let cgSteps: Int
    /// Relative residual ‖r‖ / ‖∇L_Q(φ)‖ at which conjugate gradient stops early.
    public let cgTolerance: Double
    /// δ: the solve's identity term is (1 + δ) I.
    public let damping: Float
    /// μ: the solve's Hessian term is H/(λ + μ).
    public let lambdaDamping: Float

    public init(inner: InnerLoop, lambda: Float, cgSteps: Int = 5, cgTolerance: Double = 1e-10, damping: Float = 0,
                lambdaDamping: Float = 0, innerProblem: InnerProblem = .proximal) throws {
        guard lambda > 0, lambda.isFinite else { throw MetaCoreError.argument("iMAML's regulariser λ must be a positive number, got \(lambda)") }
        guard cgSteps >= 1 else { throw MetaCoreError.argument("iMAML needs at least 1 conjugate-gradient step, got \(cgSteps)") }
        guard cgTolerance >= 0, cgTolerance.isFinite else { throw MetaCoreError.argument("the conjugate-gradient tolerance must be >= 0, got \(cgTolerance)") }
        guard damping >= 0, damping.isFinite, lambdaDamping >= 0, lambdaDamping.isFinite else {
            throw MetaCoreError.argument("iMAML's damping must be numbers >= 0, got \(damping) and \(lambdaDamping)")
        }
        self.inner = inner; self.lambda = lambda; self.cgSteps = cgSteps; self.cgTolerance = cgTolerance
        self.damping = damping; self.lambdaDamping = lambdaDamping; self.innerProblem = innerProblem
    }

    public var name: String { "imaml" }

    /// φ ← φ − α (∇L_S(φ) + λ (φ − θ)), with θ the meta-parameters; for ``InnerProblem/pullBack``, the plain
    /// step φ ← φ − α ∇L_S(φ).
    public func innerStep(_ theta: inout [Float], meta: [Float], support: Batch, workspace: Workspace) throws {
        try workspace.gradient(at: theta, on: support, into: &workspace.innerGradient)
        let (alpha, lambda) = (inner.learningRate, innerProblem == .proximal ? lambda : 0)
        theta.withUnsafeMutableBufferPointer { phi in
            workspace.innerGradient.withUnsafeBufferPointer { g in
                meta.withUnsafeBufferPointer { start in
                    for i in phi.indices { phi[i] -= alpha * (g[i] + lambda * (phi[i] - start[i])) }
                }
            }
        }
    }

    /// The meta-training inner problem's solution φ: ``inner`` steps from θ, and for ``InnerProblem/pullBack``
    /// the proximal step φ ← θ + (1 − αλ)(φ − θ) after them.
    public func innerSolution(_ meta: [Float], support: Batch, workspace: Workspace) throws -> [Float] {
        let keep = 1 - inner.learningRate * lambda
        if innerProblem == .pullBack, !(keep > 0) {
            // Checked here, not in init: evaluation, which may change the rate, takes the plain steps only.
            throw MetaCoreError.argument("iMAML's pull-back φ ← θ + (1 − αλ)(φ − θ) needs αλ < 1, got α = \(inner.learningRate), λ = \(lambda): it would land on θ or beyond it")
        }
        var phi = try adapt(meta, support: support, steps: inner.steps, workspace: workspace)
        if innerProblem == .pullBack {
            for i in phi.indices { phi[i] = meta[i] + keep * (phi[i] - meta[i]) }
        }
        return phi
    }

    /// The query loss at the meta-training inner solution (what the implicit gradient differentiates).
    public func metaLoss(_ meta: [Float], task: Task, workspace: Workspace) throws -> LossValue {
        try workspace.loss(at: innerSolution(meta, support: task.support, workspace: workspace), on: task.query)
    }

    public func metaGradient(_ meta: [Float], task: Task, workspace: Workspace, into gradient: inout [Float]) throws -> LossValue {
        workspace.heldPasses = 0   // the inner steps are not revisited
        let phi = try innerSolution(meta, support: task.support, workspace: workspace)
        let value = try workspace.onQuerySet { try $0.gradient(at: phi, on: task.query, into: &gradient) }
        workspace.heldPasses = 1   // the support pass at φ, for every product of the solve
        defer { workspace.heldPasses = 0 }
        gradient = try solve(at: phi, support: task.support, rightHandSide: gradient, workspace: workspace)
        return value
    }

    /// x ≈ ((1 + δ) I + H_S(φ)/(λ + μ))⁻¹ b by conjugate gradient from x = 0 (dot products in double).
    public func solve(at phi: [Float], support: Batch, rightHandSide b: [Float], workspace: Workspace) throws -> [Float] {
        func dot(_ u: [Float], _ v: [Float]) -> Double { zip(u, v).reduce(0.0) { $0 + Double($1.0) * Double($1.1) } }
        var x = [Float](repeating: 0, count: b.count), r = b, p = b, ap: [Float] = []
        var rr = dot(r, r)
        let stop = cgTolerance * cgTolerance * rr
        var steps = 0
        while steps < cgSteps && rr > stop {
            try workspace.hessianVectorProduct(at: phi, on: support, direction: p, into: &ap)
            ap.scale(by: 1 / (lambda + lambdaDamping))
            ap.add(p, scaledBy: 1 + damping)
            let curvature = dot(p, ap)
            guard curvature > 0, curvature.isFinite else { break }
            let step = Float(rr / curvature)
            x.add(p, scaledBy: step)
            r.add(ap, scaledBy: -step)
            let next = dot(r, r)
            p.scale(by: Float(next / rr))
            p.add(r)
            rr = next
            steps += 1
        }
        return steps == 0 ? b : x
    }

    static let registrations = [
        AlgorithmEntry(name: "imaml", summary: "implicit MAML: proximal inner problem, implicit meta-gradient by conjugate gradient on H·v",
                       options: [OptionSpec("imaml-lambda", .float(1e-6 ... 1e6), default: .float(2), help: "the proximal regulariser λ of the inner problem"),
                                 OptionSpec("cg-steps", .int(1 ... 10_000), default: .int(5), help: "conjugate-gradient steps (Hessian-vector products) per task"),
                                 OptionSpec("cg-tolerance", .float(0 ... 1), default: .float(1e-10), help: "stop conjugate gradient once the residual is this fraction of the query gradient"),
                                 OptionSpec("cg-damping", .float(0 ... 1e6), default: .float(0), help: "δ: solve ((1 + δ) I + H/(λ + μ)) x = b (the authors' code: 1)"),
                                 OptionSpec("cg-lambda-damping", .float(0 ... 1e6), default: .float(0), help: "μ: solve ((1 + δ) I + H/(λ + μ)) x = b (the authors' code: 10)"),
                                 OptionSpec("imaml-inner", .choice(InnerProblem.allCases.map(\.rawValue)), default: .string("proximal"),
                                            help: "proximal: every step descends L_S + λ/2 ‖φ − θ‖²; pull-back: plain steps, then one step on the proximal term (plain steps in evaluation), as the authors' code")]) { config, options in
            try ImplicitMAML(inner: try config.innerLoop(), lambda: Float(options.double("imaml-lambda")!),
                             cgSteps: options.int("cg-steps")!, cgTolerance: options.double("cg-tolerance")!,
                             damping: Float(options.double("cg-damping")!), lambdaDamping: Float(options.double("cg-lambda-damping")!),
                             innerProblem: InnerProblem(rawValue: options.string("imaml-inner")!)!)
        },
    ]
}
