import CKernels

/// Batch normalisation over channels: `[N, C, H, W]` images or `[N, C]` features, with a learned scale
/// (`weight`, γ) and shift (`bias`, β) per channel.
///
/// The statistics come from the workspace's ``Normalization``: in `transductive` and `training` modes, the
/// batch's own mean and variance, and every derivative (gradient and Hessian-vector product) goes through
/// them, as exact second-order MAML requires; in `inference` mode, the running statistics (state tensors
/// `running_mean` and `running_var`, updated in `training` mode).
public struct BatchNorm: Layer {
    public var backwardReads: BackwardReads { .input }
    public let channels: Int
    public let epsilon: Float

    public init(_ channels: Int, epsilon: Float = 1e-5) throws {
        guard channels > 0, epsilon > 0 else {
            throw MetaCoreError.argument("BatchNorm needs channels > 0 and epsilon > 0, got \(channels), \(epsilon)")
        }
        self.channels = channels
        self.epsilon = epsilon
    }

    public func outputShape(for input: [Int]) throws -> [Int] {
        guard input.count >= 1, input[0] == channels else {
            throw MetaCoreError.shape("BatchNorm(\(channels)) expects \(channels) channels first, got \(describe(input))")
        }
        return input
    }

    public var parameterShapes: [(name: String, shape: [Int])] { [("weight", [channels]), ("bias", [channels])] }
    public var stateShapes: [(name: String, shape: [Int], initial: Float)] {
        [("running_mean", [channels], 0), ("running_var", [channels], 1)]
    }

    public func initialize(_ parameters: UnsafeMutableBufferPointer<Float>, using random: inout RandomSource) {
        for i in 0 ..< channels { parameters[i] = 1; parameters[channels + i] = 0 }
    }

    public func memory(batch: Int, input: [Int], threads: Int) -> LayerMemory {
        // saved: the batch mean and invstd; rSaved: mean(Rx) and mean(xhat Rx). Per channel only: the passes
        // recompute xhat (and Rxhat) from the input (and its R-derivative), which the workspace keeps.
        LayerMemory(saved: 2 * channels, rSaved: 2 * channels)
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
        channelParts(p) { n, c, s, c0, c1 in
            let gamma = p.theta, beta = p.theta + channels, mean = p.state, variance = p.state + channels
            switch p.normalization {
            case .inference:
                mc_batchnorm_inference_forward(n, c, s, c0, c1, epsilon, p.x, gamma, beta, mean, variance, p.y)
            case .transductive:
                mc_batchnorm_forward(n, c, s, c0, c1, epsilon, p.x, gamma, beta, p.y, p.saved, p.saved + channels)
            case .training(let momentum):
                mc_batchnorm_forward(n, c, s, c0, c1, epsilon, p.x, gamma, beta, p.y, p.saved, p.saved + channels)
                mc_batchnorm_update_running(n, c, s, c0, c1, momentum, p.x, mean, variance)
            }
        }
    }

    public func backward(_ p: LayerPass) {
        channelParts(p) { n, c, s, c0, c1 in
            if p.normalization == .inference {
                mc_batchnorm_inference_backward(n, c, s, c0, c1, epsilon, p.x, p.theta, p.state, p.state + channels, p.dy,
                                                p.dx, p.gradient, p.gradient + channels)
            } else {
                mc_batchnorm_backward(n, c, s, c0, c1, p.x, p.saved, p.saved + channels, p.theta, p.dy,
                                      p.dx, p.gradient, p.gradient + channels)
            }
        }
    }

    public func rForward(_ p: LayerPass) {
        channelParts(p) { n, c, s, c0, c1 in
            if p.normalization == .inference {
                mc_batchnorm_inference_rforward(n, c, s, c0, c1, epsilon, p.x, p.Rx, p.theta, p.v, p.v + channels,
                                                p.state, p.state + channels, p.Ry)
            } else {
                mc_batchnorm_rforward(n, c, s, c0, c1, p.x, p.saved, p.saved + channels, p.theta, p.Rx, p.v,
                                      p.v + channels, p.Ry, p.rSaved, p.rSaved + channels)
            }
        }
    }

    public func rBackward(_ p: LayerPass) {
        channelParts(p) { n, c, s, c0, c1 in
            if p.normalization == .inference {
                mc_batchnorm_inference_rbackward(n, c, s, c0, c1, epsilon, p.x, p.Rx, p.theta, p.v, p.state,
                                                 p.state + channels, p.dy, p.Rdy, p.Rdx, p.hv, p.hv + channels)
            } else {
                mc_batchnorm_rbackward(n, c, s, c0, c1, p.x, p.saved, p.saved + channels, p.theta, p.v, p.Rx,
                                       p.rSaved, p.rSaved + channels, p.dy, p.Rdy, p.Rdx, p.hv, p.hv + channels)
            }
        }
    }
}
