/// Everything that defines a meta-training run: algorithm, task, model and optimiser settings. Stored in
/// every checkpoint, so that a checkpoint alone is enough to evaluate or resume the run.
public struct TrainingConfiguration: Codable, Sendable, Equatable {
    /// `maml`, `fomaml`, `reptile`, `metasgd`, `anil`, `pretrain` (multi-task baseline), `protonet`, `matchnet`,
    /// `oml` or `oml-fo` (first order).
    public var algorithm = "maml"
    /// `sine`, `omniglot`, or for continual learning `continual-omniglot` or `incremental-sine`.
    public var task = "sine"
    /// Classes per episode (classification tasks); classes per trajectory (`continual-omniglot`); functions
    /// (`incremental-sine`).
    public var ways: Int?
    /// Support examples per task (per class for classification).
    public var shots = 10
    /// Query examples per task (per class for classification).
    public var queries = 10
    /// Where the dataset lives (`omniglot`: the directory holding images_background and images_evaluation).
    public var dataPath: String?
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
    /// OML: layers with parameters in the prediction network (default 1, `incremental-sine` 2).
    public var headLayers: Int?
    /// OML: trajectory samples per online SGD step (default 1, `incremental-sine` 8).
    public var onlineBatch: Int?
    /// `continual-omniglot`: meta-loss drawings of classes outside the trajectory (default 15).
    public var remember: Int?

    public init() {}

    public static let metricAlgorithms = ["protonet", "matchnet"]
    public static let algorithms = ["maml", "fomaml", "reptile", "metasgd", "anil", "pretrain"] + metricAlgorithms + ["oml", "oml-fo"]
    public static let tasks = ["sine", "omniglot", "continual-omniglot", "incremental-sine"]

    /// The continual-learning tasks: a model with one output per class (or one regression output), trained
    /// for streams rather than episodes.
    public var isContinual: Bool { task == "continual-omniglot" || task == "incremental-sine" }

    /// Whether the task draws from the Omniglot dataset.
    public var usesOmniglot: Bool { task == "omniglot" || task == "continual-omniglot" }

    /// OML's prediction-network depth for this task.
    public var predictionLayers: Int { headLayers ?? (task == "incremental-sine" ? 2 : 1) }
    /// OML's online batch for this task.
    public var onlineBatchSize: Int { onlineBatch ?? (task == "incremental-sine" ? 8 : 1) }

    /// Which characters episodes come from: meta-training or meta-testing ones (sinusoids have one distribution).
    public enum Split: Sendable { case train, test }

    /// The Omniglot character split: 1200 meta-training and 423 meta-test characters, from this seed.
    public static let omniglotSplitSeed: UInt64 = 0
    /// Meta-training classes are every training character at 0°, 90°, 180° and 270°; test classes are unrotated.
    public static let omniglotTrainRotations = [0, 1, 2, 3]

    /// Whether the algorithm classifies by comparing embeddings (the model then has no classification head).
    public var isMetric: Bool { Self.metricAlgorithms.contains(algorithm) }

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
        case "protonet": return PrototypicalNetworks()
        case "matchnet": return MatchingNetworks()
        case "oml", "oml-fo":
            return try OML(learningRate: innerLearningRate, onlineBatch: onlineBatchSize, headLayers: predictionLayers,
                           order: algorithm == "oml" ? .second : .first)
        default:
            throw MetaCoreError(.unknownName, "unknown algorithm '\(algorithm)'; choose one of \(Self.algorithms.joined(separator: ", "))")
        }
    }

    public func makeModel() throws -> Model {
        switch task {
        case "sine": return try Model.mlp([1, 40, 40, 1])
        case "omniglot": return try Model.conv4(classes: isMetric ? 0 : omniglotWays())
        // OML's networks, scaled to this machine: a representation of three conv blocks without batch-norm
        // (online steps see one sample), and a linear prediction network with one unit per class; Kaiming-normal
        // weights and zero biases as the authors' code (the default init shrinks activations without batch-norm).
        case "continual-omniglot":
            return try Model.conv4(classes: ContinualOmniglotTasks.outputs, blocks: 3, batchNorm: false, initialization: .kaimingNormal)
        case "incremental-sine": return try Model.mlp([1 + (ways ?? 10), 100, 100, 100, 100, 1])
        default: throw unknownTask
        }
    }

    /// The task distribution of `split`; Omniglot tasks draw from `dataset` (see ``Omniglot/load(from:side:cacheDirectory:)``).
    public func makeTasks(_ split: Split = .train, dataset: Omniglot? = nil) throws -> any TaskDistribution {
        switch task {
        case "sine": return try SinusoidTasks(shots: shots, queries: queries)
        case "incremental-sine": return try IncrementalSineTasks(functions: ways ?? 10, shots: shots, queries: queries)
        case "omniglot", "continual-omniglot":
            guard let dataset else {
                throw MetaCoreError(.missingData, "\(task) tasks need the dataset: pass --data PATH (the directory with images_background and images_evaluation)")
            }
            if task == "continual-omniglot" {
                // OML's protocol: meta-train on the background alphabets, meet the evaluation ones in the stream.
                return try ContinualOmniglotTasks(dataset, characters: dataset.characters(in: split == .train ? .background : .evaluation),
                                                  ways: omniglotWays(), shots: shots, queries: queries, remember: remember ?? 15)
            }
            let characters = try dataset.split(seed: Self.omniglotSplitSeed)
            return try OmniglotTasks(dataset, characters: split == .train ? characters.train : characters.test,
                                     rotations: split == .train ? Self.omniglotTrainRotations : [0],
                                     ways: omniglotWays(), shots: shots, queries: queries)
        default: throw unknownTask
        }
    }

    private func omniglotWays() throws -> Int {
        guard let ways else { throw MetaCoreError.argument("omniglot tasks need a number of ways (classes per episode): pass --ways N") }
        return ways
    }

    private var unknownTask: MetaCoreError {
        MetaCoreError(.unknownName, "unknown task '\(task)'; choose one of \(Self.tasks.joined(separator: ", "))")
    }

    public func makeOptimizer() throws -> any Optimizer {
        switch metaOptimizer {
        case "adam": return try Adam(learningRate: metaLearningRate)
        case "sgd": return try SGD(learningRate: metaLearningRate)
        default: throw MetaCoreError(.unknownName, "unknown meta-optimizer '\(metaOptimizer)'; choose adam or sgd")
        }
    }

    /// A trainer at iteration 0 for this configuration, running tasks on `threads` threads (the results do not
    /// depend on it, so it is not part of the configuration).
    public func makeTrainer(dataset: Omniglot? = nil, threads: Int = 1) throws -> MetaTrainer {
        guard iterations >= 0 else { throw MetaCoreError.argument("iterations must be >= 0, got \(iterations)") }
        return try MetaTrainer(learner: makeLearner(), model: makeModel(), tasks: makeTasks(.train, dataset: dataset), optimizer: makeOptimizer(),
                               metaBatch: metaBatch, clip: clip, seed: seed, threads: threads)
    }
}
