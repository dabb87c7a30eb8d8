/// Everything that defines a meta-training run: which algorithm, task family, backbone and meta-optimizer (by
/// their names in the ``Registry``), the settings every run has, and the components' own options. Stored in
/// every checkpoint, so that a checkpoint alone is enough to evaluate or resume the run.
public struct TrainingConfiguration: Codable, Sendable, Equatable {
    /// A registered algorithm: `maml`, `fomaml`, `reptile`, `metasgd`, `anil`, `pretrain`, `protonet`, … (``Registry/algorithms``).
    public var algorithm = "maml"
    /// A registered task family: `sine`, `omniglot`, `continual-omniglot`, `incremental-sine`, … (``Registry/taskFamilies``).
    public var task = "sine"
    /// A registered backbone (`conv4`, `mlp`); `nil`: the task family's default.
    public var backbone: String?
    /// Classes per episode (classification tasks); classes per trajectory (`continual-omniglot`); functions
    /// (`incremental-sine`).
    public var ways: Int?
    /// Support examples per task (per class for classification).
    public var shots = 10
    /// Query examples per task (per class for classification).
    public var queries = 10
    /// Where the dataset lives, for task families that read one.
    public var dataPath: String?
    public var innerSteps = 1
    public var innerLearningRate: Float = 0.01
    /// A registered meta-optimizer: `adam` or `sgd`.
    public var metaOptimizer = "adam"
    public var metaLearningRate: Float = 0.001
    public var metaBatch = 25
    public var clip: Float?
    /// Clamp each entry of the meta-gradient to ±this (OML's code clamps at 5).
    public var clipValue: Float?
    public var iterations = 70_000
    public var seed: UInt64 = 0
    /// The components' own options by name (`head-layers`, `channels`, `split`, …); an option not set here
    /// takes the task family's default for it, else its component's.
    public var options: [String: OptionValue] = [:]

    public init() {}

    /// Which characters episodes come from: meta-training or meta-testing ones (sinusoids have one distribution).
    public enum Split: Sendable { case train, test }

    // MARK: Components

    /// The registered components this configuration names.
    public struct Components: Sendable {
        public let algorithm: AlgorithmEntry
        public let taskFamily: TaskFamilyEntry
        public let backbone: BackboneEntry
        public let optimizer: OptimizerEntry
    }

    public func components() throws -> Components {
        let family = try Registry.taskFamily(task)
        return Components(algorithm: try Registry.algorithm(algorithm), taskFamily: family,
                          backbone: try Registry.backbone(backbone ?? family.defaultBackbone),
                          optimizer: try Registry.optimizer(metaOptimizer))
    }

    /// The options the run's components declare, by name (the task family's declaration wins a shared name).
    public func declaredOptions() throws -> [String: OptionSpec] {
        let c = try components()
        let all: [any Component] = [c.algorithm, c.backbone, c.optimizer, c.taskFamily]
        return Dictionary(all.flatMap(\.options).map { ($0.name, $0) }, uniquingKeysWith: { _, last in last })
    }

    /// The components' options with every given value checked; throws naming an option that none of the run's
    /// components declares, or a value out of range.
    public func resolvedOptions() throws -> ResolvedOptions {
        let c = try components(), specs = try declaredOptions()
        var given: [String: OptionValue] = [:]
        for (name, value) in options.sorted(by: { $0.key < $1.key }) {
            guard let spec = specs[name] else {
                let applicable = specs.keys.sorted()
                throw MetaCoreError.argument("option '\(name)' does not apply to this run (algorithm \(algorithm), task \(task), backbone \(c.backbone.name), meta-optimizer \(metaOptimizer)); "
                    + (applicable.isEmpty ? "its components take no options" : "its options are \(applicable.joined(separator: ", "))"))
            }
            given[name] = try spec.check(value, source: "configuration")
        }
        let familyDefaults = c.taskFamily.optionDefaults.filter { specs[$0.key] != nil }
        return ResolvedOptions(given: given, specs: specs, familyDefaults: familyDefaults)
    }

    /// The same run with everything spelled out: the backbone named and every option of its components set to
    /// the value it takes. What `--print-config` writes, so that the run repeats even if a default changes.
    public func resolved() throws -> TrainingConfiguration {
        let c = try components(), options = try resolvedOptions()
        var copy = self
        copy.backbone = c.backbone.name
        copy.options = [:]
        for name in try declaredOptions().keys { copy.options[name] = options.value(name) }
        return copy
    }

    // MARK: Building the run

    /// The inner loop of the gradient-based learners.
    public func innerLoop() throws -> InnerLoop { try InnerLoop(steps: innerSteps, learningRate: innerLearningRate) }

    public func makeLearner() throws -> any MetaLearner {
        try components().algorithm.make(self, resolvedOptions())
    }

    /// The task distribution of `split`, reading its dataset (if it has one) from `data`.
    public func makeTasks(_ split: Split = .train, data: DataSource = DataSource()) throws -> any TaskDistribution {
        try components().taskFamily.make(TaskRequest(configuration: self, options: resolvedOptions(), split: split, data: data))
    }

    /// The backbone for `tasks`: their input shape, and their outputs unless the algorithm embeds.
    public func makeModel(for tasks: any TaskDistribution) throws -> Model {
        let c = try components()
        guard let outputs = tasks.outputShape.first, tasks.outputShape.count == 1 else {
            throw MetaCoreError.shape("backbones produce vectors; the tasks want outputs of shape \(describe(tasks.outputShape))")
        }
        return try c.backbone.make(BackboneRequest(inputShape: tasks.inputShape, outputs: c.algorithm.embedding ? 0 : outputs,
                                                   options: resolvedOptions()))
    }

    /// The model of this run (for the meta-training tasks' shapes).
    public func makeModel(data: DataSource = DataSource()) throws -> Model { try makeModel(for: makeTasks(.train, data: data)) }

    public func makeOptimizer() throws -> any Optimizer {
        try components().optimizer.make(metaLearningRate, resolvedOptions())
    }

    /// A trainer at iteration 0 for this configuration, running tasks on `threads` threads (the results do not
    /// depend on it, so it is not part of the configuration).
    public func makeTrainer(data: DataSource = DataSource(), threads: Int = 1) throws -> MetaTrainer {
        try validate()
        let learner = try makeLearner(), tasks = try makeTasks(.train, data: data)
        var trainer = try MetaTrainer(learner: learner, model: makeModel(for: tasks), tasks: tasks, optimizer: makeOptimizer(),
                                      metaBatch: metaBatch, clip: clip, clipValue: clipValue, seed: seed, threads: threads)
        trainer.decay = try metaLearningRateDecay()
        return trainer
    }

    // MARK: Coding

    enum CodingKeys: String, CodingKey {
        case algorithm, task, backbone, ways, shots, queries, dataPath, innerSteps, innerLearningRate, metaOptimizer
        case metaLearningRate, metaBatch, clip, clipValue, iterations, seed, options
        // Written by MetaCore before components declared their options; read into `options`.
        case innerOptimizer, headLayers, onlineBatch, remember
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func value<T: Decodable>(_ key: CodingKeys, _ fallback: T) throws -> T { try c.decodeIfPresent(T.self, forKey: key) ?? fallback }
        algorithm = try value(.algorithm, algorithm); task = try value(.task, task)
        backbone = try c.decodeIfPresent(String.self, forKey: .backbone)
        ways = try c.decodeIfPresent(Int.self, forKey: .ways)
        shots = try value(.shots, shots); queries = try value(.queries, queries)
        dataPath = try c.decodeIfPresent(String.self, forKey: .dataPath)
        innerSteps = try value(.innerSteps, innerSteps); innerLearningRate = try value(.innerLearningRate, innerLearningRate)
        metaOptimizer = try value(.metaOptimizer, metaOptimizer); metaLearningRate = try value(.metaLearningRate, metaLearningRate)
        metaBatch = try value(.metaBatch, metaBatch)
        clip = try c.decodeIfPresent(Float.self, forKey: .clip)
        clipValue = try c.decodeIfPresent(Float.self, forKey: .clipValue)
        iterations = try value(.iterations, iterations); seed = try value(.seed, seed)
        options = try value(.options, [:])
        // Earlier checkpoints: the four options that had fields of their own, kept where the run's components
        // declare them (every one stored `innerOptimizer`, which only Reptile reads).
        let legacy: [(CodingKeys, String)] = [(.innerOptimizer, "inner-optimizer"), (.headLayers, "head-layers"),
                                              (.onlineBatch, "online-batch"), (.remember, "remember")]
        let declared = (try? declaredOptions()) ?? [:]
        for (key, name) in legacy where options[name] == nil && declared[name] != nil {
            if let text = (try? c.decodeIfPresent(String.self, forKey: key)) ?? nil { options[name] = .string(text) }
            else if let number = (try? c.decodeIfPresent(Int.self, forKey: key)) ?? nil { options[name] = .int(number) }
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(algorithm, forKey: .algorithm); try c.encode(task, forKey: .task)
        try c.encodeIfPresent(backbone, forKey: .backbone); try c.encodeIfPresent(ways, forKey: .ways)
        try c.encode(shots, forKey: .shots); try c.encode(queries, forKey: .queries)
        try c.encodeIfPresent(dataPath, forKey: .dataPath)
        try c.encode(innerSteps, forKey: .innerSteps); try c.encode(innerLearningRate, forKey: .innerLearningRate)
        try c.encode(metaOptimizer, forKey: .metaOptimizer); try c.encode(metaLearningRate, forKey: .metaLearningRate)
        try c.encode(metaBatch, forKey: .metaBatch); try c.encodeIfPresent(clip, forKey: .clip)
        try c.encodeIfPresent(clipValue, forKey: .clipValue)
        try c.encode(iterations, forKey: .iterations); try c.encode(seed, forKey: .seed)
        if !options.isEmpty { try c.encode(options, forKey: .options) }
    }
}
