import CKernels

/// A first-order optimiser over a flat parameter vector. Its state (e.g. Adam's moments) is part of it, so a
/// checkpoint that saves ``state`` and restores it resumes the exact trajectory.
public protocol Optimizer: Sendable {
    /// parameters ← parameters − update(gradient).
    mutating func step(_ parameters: inout [Float], gradient: [Float])
    /// The same step with the learning rate multiplied by `learningRateFactor` (a schedule's, such as MAML++'s
    /// cosine annealing). The default scales the gradient, which is right for optimisers linear in it (SGD);
    /// scale-invariant ones (Adam) implement it.
    mutating func step(_ parameters: inout [Float], gradient: [Float], learningRateFactor: Float)
    /// Named state vectors and the step count, for checkpoints.
    var state: (step: Int, vectors: [String: [Float]]) { get }
    /// Restores ``state``; throws if the vectors do not fit `parameterCount`.
    mutating func restore(step: Int, vectors: [String: [Float]], parameterCount: Int) throws
}

extension Optimizer {
    public mutating func step(_ parameters: inout [Float], gradient: [Float], learningRateFactor: Float) {
        guard learningRateFactor != 1 else { return step(&parameters, gradient: gradient) }
        var scaled = gradient
        scaled.scale(by: learningRateFactor)
        step(&parameters, gradient: scaled)
    }
}

/// Plain stochastic gradient descent.
public struct SGD: Optimizer {
    public let learningRate: Float
    public private(set) var steps = 0

    public init(learningRate: Float) throws {
        guard learningRate > 0, learningRate.isFinite else {
            throw MetaCoreError.argument("SGD learning rate must be a positive number, got \(learningRate)")
        }
        self.learningRate = learningRate
    }

    public mutating func step(_ parameters: inout [Float], gradient: [Float]) {
        parameters.add(gradient, scaledBy: -learningRate)
        steps += 1
    }

    public var state: (step: Int, vectors: [String: [Float]]) { (steps, [:]) }
    public mutating func restore(step: Int, vectors: [String: [Float]], parameterCount: Int) throws {
        try checkStep(step)
        steps = step
    }
}

/// Adam (Kingma & Ba 2015) with bias correction, as `torch.optim.Adam` and `optax.adam` define it.
public struct Adam: Optimizer {
    public let learningRate: Float, beta1: Float, beta2: Float, epsilon: Float
    private var m: [Float] = [], v: [Float] = []
    public private(set) var steps = 0

    public init(learningRate: Float, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8) throws {
        guard learningRate > 0, learningRate.isFinite else {
            throw MetaCoreError.argument("Adam learning rate must be a positive number, got \(learningRate)")
        }
        guard (0 ..< 1).contains(beta1), (0 ..< 1).contains(beta2), epsilon > 0 else {
            throw MetaCoreError.argument("Adam needs betas in [0, 1) and epsilon > 0, got \(beta1), \(beta2), \(epsilon)")
        }
        self.learningRate = learningRate; self.beta1 = beta1; self.beta2 = beta2; self.epsilon = epsilon
    }

    public mutating func step(_ parameters: inout [Float], gradient: [Float]) {
        step(&parameters, gradient: gradient, learningRateFactor: 1)
    }

    public mutating func step(_ parameters: inout [Float], gradient: [Float], learningRateFactor: Float) {
        precondition(gradient.count == parameters.count, "gradient has \(gradient.count) entries, parameters \(parameters.count)")
        if m.count != parameters.count {
            m = [Float](repeating: 0, count: parameters.count)
            v = m
        }
        steps += 1
        let c1 = 1 - pow(Double(beta1), Double(steps)), c2 = 1 - pow(Double(beta2), Double(steps))
        let rate = Float(Double(learningRate) * Double(learningRateFactor) * c2.squareRoot() / c1), eps = Float(Double(epsilon) * c2.squareRoot())
        guard !parameters.isEmpty else { return }
        parameters.withUnsafeMutableBufferPointer { p in
            m.withUnsafeMutableBufferPointer { m in
                v.withUnsafeMutableBufferPointer { v in
                    gradient.withUnsafeBufferPointer { g in
                        mc_adam_step(p.count, p.baseAddress!, m.baseAddress!, v.baseAddress!, g.baseAddress!,
                                     beta1, beta2, rate, eps)
                    }
                }
            }
        }
    }

    public var state: (step: Int, vectors: [String: [Float]]) { (steps, m.isEmpty ? [:] : ["m": m, "v": v]) }

    public mutating func restore(step: Int, vectors: [String: [Float]], parameterCount: Int) throws {
        if step == 0 && vectors.isEmpty { steps = 0; m = []; v = []; return }
        guard let m = vectors["m"], let v = vectors["v"], m.count == parameterCount, v.count == parameterCount else {
            throw MetaCoreError(.corruptData, "Adam state needs moment vectors 'm' and 'v' of \(parameterCount) entries each")
        }
        try checkStep(step)
        guard m.allSatisfy(\.isFinite) else { throw MetaCoreError(.corruptData, "Adam's first moments 'm' contain NaN or infinity") }
        guard v.allSatisfy({ $0.isFinite && $0 >= 0 }) else {
            throw MetaCoreError(.corruptData, "Adam's second moments 'v' must be finite and non-negative")
        }
        self.steps = step; self.m = m; self.v = v
    }
}

/// The most optimiser steps a checkpoint may claim (far beyond any run; it keeps `step + 1` from overflowing).
public let maximumOptimizerSteps = 1 << 50

func checkStep(_ step: Int) throws {
    guard (0 ... maximumOptimizerSteps).contains(step) else {
        throw MetaCoreError(.corruptData, "optimizer step \(step) is not between 0 and \(maximumOptimizerSteps)")
    }
}

/// Scales `gradient` so that its norm is at most `maxNorm`; returns the norm before clipping.
@discardableResult
public func clipNorm(_ gradient: inout [Float], maxNorm: Float) -> Double {
    let norm = gradient.norm
    if norm > Double(maxNorm) { gradient.scale(by: Float(Double(maxNorm) / norm)) }
    return norm
}

#if canImport(Glibc)
import Glibc
#endif

extension Adam {
    static let registrations = [
        OptimizerEntry(name: "adam", summary: "Adam with bias correction (torch.optim.Adam, optax.adam)",
                       options: LearningRateDecay.options + [
                           OptionSpec("adam-beta1", .float(0 ... 1), default: .float(0.9), help: "β1, the decay of the first moments"),
                           OptionSpec("adam-beta2", .float(0 ... 1), default: .float(0.999), help: "β2, the decay of the second moments"),
                           OptionSpec("adam-epsilon", .float(1e-30 ... 1), default: .float(1e-8),
                                      help: "ε added to the root of the second moments (iMAML's code: 1e-3)"),
                       ]) { rate, options in
            try Adam(learningRate: rate, beta1: Float(options.double("adam-beta1")!), beta2: Float(options.double("adam-beta2")!),
                     epsilon: Float(options.double("adam-epsilon")!))
        },
    ]
}

extension SGD {
    static let registrations = [
        OptimizerEntry(name: "sgd", summary: "plain gradient descent", options: LearningRateDecay.options) { rate, _ in try SGD(learningRate: rate) },
    ]
}
