/// Everything that defines a meta-training run: algorithm, task, model and optimiser settings. Stored in
/// every checkpoint, so that a checkpoint alone is enough to evaluate or resume the run.
public struct TrainingConfiguration: Codable, Sendable, Equatable {
    /// `maml`, `fomaml`, `reptile`, `metasgd`, `anil` or `pretrain` (multi-task baseline).
    public var algorithm = "maml"
    /// `sine`.
    public var task = "sine"
    public var shots = 10
    public var queries = 10
    public var innerSteps = 1
    public var innerLearningRate: Float = 0.01
    /// `adam` or `sgd`.
    public var metaOptimizer = "adam"
    /// Reptile's inner optimiser: `sgd` or `adam`.
    public var innerOptimizer = "sgd"
    public var metaLearningRate: Float = 0.001
    public var metaBatch = 25
    public var clip: Float?
    public var iterations = 70_000
    public var seed: UInt64 = 0

    public init() {}

    public static let algorithms = ["maml", "fomaml", "reptile", "metasgd", "anil", "pretrain"]
    public static let tasks = ["sine"]

    public func makeLearner() throws -> any MetaLearner {
        let inner = try InnerLoop(steps: innerSteps, learningRate: innerLearningRate)
        switch algorithm {
        case "maml": return MAML(inner: inner, order: .second)
        case "fomaml": return MAML(inner: inner, order: .first)
        case "reptile":
            guard let optimizer = Reptile.InnerOptimizer(rawValue: innerOptimizer) else {
                throw MetaCoreError(.unknownName, "unknown inner optimizer '\(innerOptimizer)'; choose sgd or adam")
            }
            return Reptile(inner: inner, innerOptimizer: optimizer)
        case "metasgd": return MetaSGD(inner: inner)
        case "anil": return ANIL(inner: inner)
        case "pretrain": return Pretrained(inner: inner)
        default:
            throw MetaCoreError(.unknownName, "unknown algorithm '\(algorithm)'; choose one of \(Self.algorithms.joined(separator: ", "))")
        }
    }

    public func makeModel() throws -> Model {
        switch task {
        case "sine": return try Model.mlp([1, 40, 40, 1])
        default: throw MetaCoreError(.unknownName, "unknown task '\(task)'; choose one of \(Self.tasks.joined(separator: ", "))")
        }
    }

    public func makeTasks() throws -> any TaskDistribution {
        switch task {
        case "sine": return try SinusoidTasks(shots: shots, queries: queries)
        default: throw MetaCoreError(.unknownName, "unknown task '\(task)'; choose one of \(Self.tasks.joined(separator: ", "))")
        }
    }

    public func makeOptimizer() throws -> any Optimizer {
        switch metaOptimizer {
        case "adam": return try Adam(learningRate: metaLearningRate)
        case "sgd": return try SGD(learningRate: metaLearningRate)
        default: throw MetaCoreError(.unknownName, "unknown meta-optimizer '\(metaOptimizer)'; choose adam or sgd")
        }
    }

    /// A trainer at iteration 0 for this configuration.
    public func makeTrainer() throws -> MetaTrainer {
        guard iterations >= 0 else { throw MetaCoreError.argument("iterations must be >= 0, got \(iterations)") }
        return try MetaTrainer(learner: makeLearner(), model: makeModel(), tasks: makeTasks(), optimizer: makeOptimizer(),
                               metaBatch: metaBatch, clip: clip, seed: seed)
    }
}
