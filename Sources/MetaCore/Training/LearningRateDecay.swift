import Foundation

/// A decay of the meta learning rate over a run: the factor ``MetaTrainer`` multiplies `--meta-lr` by at each
/// iteration, a pure function of the iteration, so a resumed run follows the same schedule.
///
/// The meta-optimizers' options `meta-lr-decay`, `meta-lr-decay-iterations` and `final-meta-lr-factor` ask for
/// one (``TrainingConfiguration/metaLearningRateDecay()``): Nichol et al.'s Reptile anneals its meta step
/// linearly to 0 over the run; MAML++ anneals by a cosine (its own option, ``MAMLPlusPlus/Schedule``).
public struct LearningRateDecay: Sendable, Equatable {
    public enum Shape: String, Sendable, CaseIterable {
        /// 1 at iteration 0 to the final factor at the last, in a straight line.
        case linear
        /// Half a cosine period from 1 to the final factor (Loshchilov & Hutter's annealing without restarts).
        case cosine
    }
    public let shape: Shape
    /// Iterations over which the factor falls; it stays at ``finalFactor`` after them.
    public let iterations: Int
    /// The factor at the end, as a fraction of the initial learning rate.
    public let finalFactor: Float

    public init(shape: Shape, iterations: Int, finalFactor: Float) throws {
        guard iterations > 0 else { throw MetaCoreError.argument("a learning-rate decay needs at least 1 iteration, got \(iterations)") }
        guard (0 ... 1).contains(finalFactor) else {
            throw MetaCoreError.argument("the final learning-rate factor must be in [0, 1], got \(finalFactor)")
        }
        self.shape = shape; self.iterations = iterations; self.finalFactor = finalFactor
    }

    /// The factor at `iteration` (counted from 0).
    public func factor(at iteration: Int) -> Float {
        let t = Double(min(max(iteration, 0), iterations)), n = Double(iterations), low = Double(finalFactor)
        switch shape {
        case .linear: return Float(low + (1 - low) * (1 - t / n))
        case .cosine: return Float(low + (1 - low) * (1 + cos(Double.pi * t / n)) / 2)
        }
    }

    /// The options of every built-in meta-optimizer that ask for a decay.
    static let options = [
        OptionSpec("meta-lr-decay", .choice(["none"] + Shape.allCases.map(\.rawValue)), default: .string("none"),
                   help: "decay the meta learning rate over the run: linearly or by a cosine"),
        OptionSpec("meta-lr-decay-iterations", .int(0 ... Int.max), default: .int(0),
                   help: "iterations the decay takes (0: --iterations)"),
        OptionSpec("final-meta-lr-factor", .float(0 ... 1), default: .float(0),
                   help: "the decay's end, as a fraction of --meta-lr"),
    ]
}

extension TrainingConfiguration {
    /// The decay of the meta learning rate the meta-optimizer's options ask for; `nil` for none (or a registered
    /// meta-optimizer that does not declare them).
    public func metaLearningRateDecay() throws -> LearningRateDecay? {
        let options = try resolvedOptions()
        guard options.specs["meta-lr-decay"] != nil, let shape = LearningRateDecay.Shape(rawValue: options.string("meta-lr-decay")!) else {
            return nil
        }
        let length = options.int("meta-lr-decay-iterations")!
        return try LearningRateDecay(shape: shape, iterations: length == 0 ? iterations : length,
                                     finalFactor: Float(options.double("final-meta-lr-factor")!))
    }
}
