import CKernels

/// R2-D2 (Bertinetto, Henriques, Torr & Vedaldi 2019), the ridge-regression head also known as MetaOptNet-RR:
/// each episode's support embeddings are regressed in closed form onto one-hot targets, and the queries are
/// classified by that regression.
///
/// With X the support embeddings with a column of ones (rows and targets scaled by 1/√n, as in the reference
/// code), the solution in Woodbury form is W = Xᵀ(XXᵀ + λI)⁻¹Y — an n×n system for n support examples, solved
/// by Cholesky (LAPACKE, in double). The query logits are `scale · (z_q W + b) + bias`, with `scale` and `bias`
/// learned scalars, and λ learned too if asked. The meta-gradient flows exactly through the solve into the
/// embedding network: dK = −K⁻¹(dA)Aᵀ, one more solve with the same factor (``mc_ridge_loss``).
public struct RidgeRegressionHead: MetricMetaLearner {
    /// The regulariser λ: its value throughout, or its initial value when it is learned.
    public let lambda: Float
    public let learnsLambda: Bool
    /// The initial logit scale (the reference code uses 10 for Omniglot, 1e-4 for miniImageNet).
    public let initialScale: Float

    public init(lambda: Float = 50, learnsLambda: Bool = false, initialScale: Float = 10) throws {
        guard lambda > 0, lambda.isFinite else { throw MetaCoreError.argument("the ridge regulariser λ must be a positive number, got \(lambda)") }
        guard initialScale.isFinite, initialScale != 0 else { throw MetaCoreError.argument("the ridge head's logit scale must be a non-zero number, got \(initialScale)") }
        self.lambda = lambda; self.learnsLambda = learnsLambda; self.initialScale = initialScale
    }

    public var name: String { "r2d2" }

    public func initialMetaParameters(for model: Model, seed: UInt64) -> [Float] {
        model.initialParameters(seed: seed) + [initialScale, 0] + (learnsLambda ? [lambda] : [])
    }

    public func extraMetaParameters(for model: Model) -> [(name: String, range: Range<Int>)] {
        let p = model.parameterCount
        return [("r2d2.scale", p ..< p + 1), ("r2d2.bias", p + 1 ..< p + 2)] + (learnsLambda ? [("r2d2.lambda", p + 2 ..< p + 3)] : [])
    }

    public func episodeLoss(support: Int, query: Int, dimension: Int, ways: Int, z: UnsafePointer<Float>,
                            labels: UnsafePointer<Int32>, extra: UnsafeBufferPointer<Float>,
                            gradient: UnsafeMutablePointer<Float>?, extraGradient: UnsafeMutableBufferPointer<Float>,
                            correct: inout Int32) -> Double {
        var scratch = [Double](repeating: 0, count: mc_ridge_scratch(Int32(support), Int32(query), Int32(dimension), Int32(ways)))
        var d = [0.0, 0.0, 0.0]   // dλ, dscale, dbias
        let loss = mc_ridge_loss(Int32(support), Int32(query), Int32(dimension), Int32(ways), z, labels,
                                 learnsLambda ? extra[2] : lambda, extra[0], extra[1], gradient, &d, &scratch, &correct)
        if gradient != nil {
            extraGradient[0] = Float(d[1]); extraGradient[1] = Float(d[2])
            if learnsLambda { extraGradient[2] = Float(d[0]) }
        }
        return loss
    }
}

extension RidgeRegressionHead {
    static let registrations = [
        AlgorithmEntry(name: "r2d2", summary: "R2-D2: a ridge-regression head solved in closed form per episode, differentiated through the solve",
                       options: [OptionSpec("ridge-lambda", .float(1e-6 ... 1e6), default: .float(50), help: "the ridge regulariser λ (its initial value with --learn-lambda)"),
                                 OptionSpec("learn-lambda", .bool, default: .bool(false), help: "meta-learn λ as well"),
                                 OptionSpec("ridge-scale", .float(-1e6 ... 1e6), default: .float(10), help: "the initial scale of the query logits")],
                       embedding: true) { _, options in
            try RidgeRegressionHead(lambda: Float(options.double("ridge-lambda")!), learnsLambda: options.bool("learn-lambda")!,
                                    initialScale: Float(options.double("ridge-scale")!))
        },
    ]
}
