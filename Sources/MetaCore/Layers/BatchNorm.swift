import CKernels

/// Batch normalisation over channels: `[N, C, H, W]` images or `[N, C]` features, with a learned scale
/// (`weight`, γ) and shift (`bias`, β) per channel, or the shift alone (``learnsScale`` false: γ is 1).
///
/// The statistics come from the workspace's ``Normalization``: in `transductive` and `training` modes, the
/// batch's own mean and variance, and every derivative (gradient and Hessian-vector product) goes through
/// them, as exact second-order MAML requires; in `inference` mode, the running statistics (state tensors
/// `running_mean` and `running_var`, updated in `training` mode).
public struct BatchNorm: Layer {
    public var backwardReads: BackwardReads { .input }
    public let channels: Int
    public let epsilon: Float
    /// Whether γ is a parameter; without it the layer learns β alone and γ is 1, as in Finn et al.'s MAML code
    /// (TensorFlow's `batch_norm` has `scale=False` by default).
    public let learnsScale: Bool

    public init(_ channels: Int, epsilon: Float = 1e-5, learnsScale: Bool = true) throws {
        guard channels > 0, epsilon > 0 else {
            throw MetaCoreError.argument("BatchNorm needs channels > 0 and epsilon > 0, got \(channels), \(epsilon)")
        }
        self.channels = channels
        self.epsilon = epsilon
        self.learnsScale = learnsScale
    }

    public func outputShape(for input: [Int]) throws -> [Int] {
        guard input.count >= 1, input[0] == channels else {
            throw MetaCoreError.shape("BatchNorm(\(channels)) expects \(channels) channels first, got \(describe(input))")
        }
        return input
    }

    public var parameterShapes: [(name: String, shape: [Int])] {
        learnsScale ? [("weight", [channels]), ("bias", [channels])] : [("bias", [channels])]
    }
    public var stateShapes: [(name: String, shape: [Int], initial: Float)] {
        [("running_mean", [channels], 0), ("running_var", [channels], 1)]
    }

    public func initialize(_ parameters: UnsafeMutableBufferPointer<Float>, using random: inout RandomSource) {
        parameters.update(repeating: 0)
        if learnsScale { parameters[0 ..< channels].update(repeating: 1) }
    }

    public func memory(batch: Int, input: [Int], threads: Int) -> LayerMemory {
        // saved: the batch mean and invstd; rSaved: mean(Rx) and mean(xhat Rx). Per channel only: the passes
        // recompute xhat (and Rxhat) from the input (and its R-derivative), which the workspace keeps.
        // scratch, without a learned scale: γ = 1, its direction 0, and a sink for its derivatives (``affine(_:)``).
        LayerMemory(saved: 2 * channels, rSaved: 2 * channels, scratch: learnsScale ? 0 : 3 * channels)
    }

    /// Where a pass finds γ and β, their directions, and where their gradient and Hessian-vector product go.
    struct Affine {
        let gamma, beta, vGamma, vBeta: UnsafePointer<Float>
        let gradientGamma, gradientBeta, hvGamma, hvBeta: UnsafeMutablePointer<Float>
    }

    /// The pass's γ and β: `theta`'s, or without a learned scale γ = 1 with direction 0 in the pass's scratch,
    /// whose derivatives the kernels write to scratch too (a constant has none).
    func affine(_ p: LayerPass) -> Affine {
        let c = channels
        guard !learnsScale else {
            return Affine(gamma: p.theta, beta: p.theta + c, vGamma: p.v, vBeta: p.v + c,
                          gradientGamma: p.gradient, gradientBeta: p.gradient + c, hvGamma: p.hv, hvBeta: p.hv + c)
        }
        let ones = p.scratch, zeros = p.scratch + c, sink = p.scratch + 2 * c
        ones.update(repeating: 1, count: c)
        zeros.update(repeating: 0, count: c)
        return Affine(gamma: ones, beta: p.theta, vGamma: zeros, vBeta: p.v,
                      gradientGamma: sink, gradientBeta: p.gradient, hvGamma: sink, hvBeta: p.hv)
    }

    /// Runs `body(n, c, s, c0, c1)` — batch, channels, values per channel per sample, and a range of
    /// channels — over the channels, split across the pass's threads (channels are independent; samples are
    /// not, through the batch statistics).
    private func channelParts(_ p: LayerPass, _ body: (Int32, Int32, Int32, Int32, Int32) -> Void) {
        let s = p.inputCount / channels
        BatchSplit(batch: channels, outputCount: p.batch * s, threads: p.threads).forEach { range in
            body(Int32(p.batch), Int32(channels), Int32(s), Int32(range.lowerBound), Int32(range.upperBound))
        }
    }

    public func forward(_ p: LayerPass) {
        let a = affine(p)
        channelParts(p) { n, c, s, c0, c1 in
            let mean = p.state, variance = p.state + channels
            switch p.normalization {
            case .inference:
                mc_batchnorm_inference_forward(n, c, s, c0, c1, epsilon, p.x, a.gamma, a.beta, mean, variance, p.y)
            case .transductive:
                mc_batchnorm_forward(n, c, s, c0, c1, epsilon, p.x, a.gamma, a.beta, p.y, p.saved, p.saved + channels)
            case .training(let momentum):
                mc_batchnorm_forward(n, c, s, c0, c1, epsilon, p.x, a.gamma, a.beta, p.y, p.saved, p.saved + channels)
                mc_batchnorm_update_running(n, c, s, c0, c1, momentum, p.x, mean, variance)
            }
        }
    }

    public func backward(_ p: LayerPass) {
        let a = affine(p)
        channelParts(p) { n, c, s, c0, c1 in
            if p.normalization == .inference {
                mc_batchnorm_inference_backward(n, c, s, c0, c1, epsilon, p.x, a.gamma, p.state, p.state + channels, p.dy,
                                                p.dx, a.gradientGamma, a.gradientBeta)
            } else {
                mc_batchnorm_backward(n, c, s, c0, c1, p.x, p.saved, p.saved + channels, a.gamma, p.dy,
                                      p.dx, a.gradientGamma, a.gradientBeta)
            }
        }
    }

    public func rForward(_ p: LayerPass) {
        let a = affine(p)
        channelParts(p) { n, c, s, c0, c1 in
            if p.normalization == .inference {
                mc_batchnorm_inference_rforward(n, c, s, c0, c1, epsilon, p.x, p.Rx, a.gamma, a.vGamma, a.vBeta,
                                                p.state, p.state + channels, p.Ry)
            } else {
                mc_batchnorm_rforward(n, c, s, c0, c1, p.x, p.saved, p.saved + channels, a.gamma, p.Rx, a.vGamma,
                                      a.vBeta, p.Ry, p.rSaved, p.rSaved + channels)
            }
        }
    }

    public func rBackward(_ p: LayerPass) {
        let a = affine(p)
        channelParts(p) { n, c, s, c0, c1 in
            if p.normalization == .inference {
                mc_batchnorm_inference_rbackward(n, c, s, c0, c1, epsilon, p.x, p.Rx, a.gamma, a.vGamma, p.state,
                                                 p.state + channels, p.dy, p.Rdy, p.Rdx, a.hvGamma, a.hvBeta)
            } else {
                mc_batchnorm_rbackward(n, c, s, c0, c1, p.x, p.saved, p.saved + channels, a.gamma, a.vGamma, p.Rx,
                                       p.rSaved, p.rSaved + channels, p.dy, p.Rdy, p.Rdx, a.hvGamma, a.hvBeta)
            }
        }
    }
}
