import Foundation
import Synchronization

/// What every registered component has: a name (what `--algorithm`, `--task`, `--backbone` or
/// `--meta-optimizer` take), a one-line summary for help texts, and the options it reads.
public protocol Component: Sendable {
    var name: String { get }
    var summary: String { get }
    var options: [OptionSpec] { get }
    /// "algorithm", "task family", … for messages.
    static var kind: String { get }
}

/// A meta-learning algorithm: how to build its ``MetaLearner`` from a configuration.
public struct AlgorithmEntry: Component {
    public static let kind = "algorithm"
    public let name: String, summary: String
    public let options: [OptionSpec]
    /// The learner compares embeddings: its model is the backbone without a classifier head.
    public let embedding: Bool
    /// Its meta-gradient is the gradient of its meta-loss, so `metactl verify` applies (not Reptile's update).
    public let verifiable: Bool
    public let make: @Sendable (TrainingConfiguration, ResolvedOptions) throws -> any MetaLearner

    public init(name: String, summary: String, options: [OptionSpec] = [], embedding: Bool = false, verifiable: Bool = true,
                make: @escaping @Sendable (TrainingConfiguration, ResolvedOptions) throws -> any MetaLearner) {
        self.name = name; self.summary = summary; self.options = options
        self.embedding = embedding; self.verifiable = verifiable; self.make = make
    }
}

/// What a task family is asked to build: the run's configuration and options, which split, and where data is.
public struct TaskRequest: Sendable {
    public let configuration: TrainingConfiguration
    public let options: ResolvedOptions
    public let split: TrainingConfiguration.Split
    public let data: DataSource

    /// Classes per episode, which classification families require.
    public func ways() throws -> Int {
        guard let ways = configuration.ways else {
            throw MetaCoreError.argument("\(configuration.task) tasks need a number of ways (classes per episode): pass --ways N")
        }
        return ways
    }
}

/// What `metactl continual` needs from a continual task family: its stream of stages.
public struct ContinualSupport: Sendable {
    /// What `metactl continual` asks for.
    public struct Request: Sendable {
        public let configuration: TrainingConfiguration
        public let options: ResolvedOptions
        public let data: DataSource
        /// Classes in the stream (classification) and per stage.
        public let classes: Int, stageSize: Int
        /// Training and held-out points per function (regression; `nil`: the family's default).
        public let trainPoints: Int?, testPoints: Int
        public let seed: UInt64
        public init(configuration: TrainingConfiguration, options: ResolvedOptions, data: DataSource, classes: Int, stageSize: Int,
                    trainPoints: Int?, testPoints: Int, seed: UInt64) {
            self.configuration = configuration; self.options = options; self.data = data; self.classes = classes
            self.stageSize = stageSize; self.trainPoints = trainPoints; self.testPoints = testPoints; self.seed = seed
        }
    }

    /// Classes (accuracy, higher is better) or functions (MSE).
    public let isClassification: Bool
    public let stream: @Sendable (Request) throws -> ContinualStream

    public init(isClassification: Bool, stream: @escaping @Sendable (Request) throws -> ContinualStream) {
        self.isClassification = isClassification
        self.stream = stream
    }
}

/// A family of tasks (sinusoids, Omniglot episodes, …): how to build its ``TaskDistribution``.
public struct TaskFamilyEntry: Component {
    public static let kind = "task family"
    public let name: String, summary: String
    public let options: [OptionSpec]
    /// The dataset it reads (`nil`: synthetic tasks).
    public let dataset: (any Dataset.Type)?
    /// The backbone a run uses unless `--backbone` says otherwise, and defaults this family sets for other
    /// components' options (a wider MLP, a net without batch-norm).
    public let defaultBackbone: String
    public let optionDefaults: [String: OptionValue]
    /// Query examples per task (per class) that `metactl eval` uses unless asked otherwise; `nil`: the training ones.
    public let evaluationQueries: Int?
    /// Set for continual-learning families (`metactl continual`).
    public let continual: ContinualSupport?
    /// Whether `ways` means something to this family (a `--ways` it would ignore is refused).
    public let takesWays: Bool
    public let make: @Sendable (TaskRequest) throws -> any TaskDistribution

    public init(name: String, summary: String, options: [OptionSpec] = [], dataset: (any Dataset.Type)? = nil,
                defaultBackbone: String, optionDefaults: [String: OptionValue] = [:], evaluationQueries: Int? = nil,
                continual: ContinualSupport? = nil, takesWays: Bool = true,
                make: @escaping @Sendable (TaskRequest) throws -> any TaskDistribution) {
        self.name = name; self.summary = summary; self.options = options; self.dataset = dataset
        self.defaultBackbone = defaultBackbone; self.optionDefaults = optionDefaults
        self.evaluationQueries = evaluationQueries; self.continual = continual; self.takesWays = takesWays; self.make = make
    }
}

/// What a backbone is asked to build: a model for inputs of `inputShape` with `outputs` outputs (`0`: no head,
/// an embedding network).
public struct BackboneRequest: Sendable {
    public let inputShape: [Int]
    public let outputs: Int
    public let options: ResolvedOptions
}

/// A network architecture (Conv-4, an MLP, …).
public struct BackboneEntry: Component {
    public static let kind = "backbone"
    public let name: String, summary: String
    public let options: [OptionSpec]
    public let make: @Sendable (BackboneRequest) throws -> Model

    public init(name: String, summary: String, options: [OptionSpec] = [], make: @escaping @Sendable (BackboneRequest) throws -> Model) {
        self.name = name; self.summary = summary; self.options = options; self.make = make
    }
}

/// A meta-optimiser (Adam, SGD, …).
public struct OptimizerEntry: Component {
    public static let kind = "meta-optimizer"
    public let name: String, summary: String
    public let options: [OptionSpec]
    public let make: @Sendable (_ learningRate: Float, ResolvedOptions) throws -> any Optimizer

    public init(name: String, summary: String, options: [OptionSpec] = [],
                make: @escaping @Sendable (_ learningRate: Float, ResolvedOptions) throws -> any Optimizer) {
        self.name = name; self.summary = summary; self.options = options; self.make = make
    }
}

/// The components MetaCore knows by name: the built-in ones, and any that a program (or a test) registers
/// before it builds a configuration. `metactl`'s help, its error messages and the checkpoint restore path all
/// read it, so a registered component is at once trainable, evaluable, resumable and verifiable.
///
/// ```swift
/// try Registry.register(AlgorithmEntry(name: "my-maml", summary: "MAML with my twist") { config, options in
///     MyMAML(inner: try config.innerLoop())
/// })
/// ```
public enum Registry {
    struct Catalogue: Sendable {
        var algorithms: [AlgorithmEntry]
        var tasks: [TaskFamilyEntry]
        var backbones: [BackboneEntry]
        var optimizers: [OptimizerEntry]
        var datasets: [any Dataset.Type]
    }

    private static let catalogue = Mutex(Catalogue(algorithms: builtInAlgorithms, tasks: builtInTaskFamilies,
                                                   backbones: builtInBackbones, optimizers: builtInOptimizers,
                                                   datasets: builtInDatasets))

    public static var algorithms: [AlgorithmEntry] { catalogue.withLock { $0.algorithms } }
    public static var taskFamilies: [TaskFamilyEntry] { catalogue.withLock { $0.tasks } }
    public static var backbones: [BackboneEntry] { catalogue.withLock { $0.backbones } }
    public static var optimizers: [OptimizerEntry] { catalogue.withLock { $0.optimizers } }
    public static var datasets: [any Dataset.Type] { catalogue.withLock { $0.datasets } }

    public static func algorithm(_ name: String) throws -> AlgorithmEntry { try find(name, in: algorithms) }
    public static func taskFamily(_ name: String) throws -> TaskFamilyEntry { try find(name, in: taskFamilies) }
    public static func backbone(_ name: String) throws -> BackboneEntry { try find(name, in: backbones) }
    public static func optimizer(_ name: String) throws -> OptimizerEntry { try find(name, in: optimizers) }

    public static func dataset(_ name: String) throws -> any Dataset.Type {
        let all = datasets
        guard let found = all.first(where: { $0.name == name }) else {
            throw MetaCoreError(.unknownName, "unknown dataset '\(name)'; choose one of \(all.map { $0.name }.joined(separator: ", "))")
        }
        return found
    }

    static func find<Entry: Component>(_ name: String, in entries: [Entry]) throws -> Entry {
        guard let entry = entries.first(where: { $0.name == name }) else {
            throw MetaCoreError(.unknownName, "unknown \(Entry.kind) '\(name)'; choose one of \(entries.map(\.name).joined(separator: ", "))")
        }
        return entry
    }

    public static func register(_ entry: AlgorithmEntry) throws { try catalogue.withLock { try add(entry, to: &$0.algorithms, in: $0) } }
    public static func register(_ entry: TaskFamilyEntry) throws { try catalogue.withLock { try add(entry, to: &$0.tasks, in: $0) } }
    public static func register(_ entry: BackboneEntry) throws { try catalogue.withLock { try add(entry, to: &$0.backbones, in: $0) } }
    public static func register(_ entry: OptimizerEntry) throws { try catalogue.withLock { try add(entry, to: &$0.optimizers, in: $0) } }
    public static func register(_ dataset: any Dataset.Type) throws {
        try catalogue.withLock {
            guard !$0.datasets.contains(where: { $0.name == dataset.name }) else {
                throw MetaCoreError.argument("a dataset named '\(dataset.name)' is already registered")
            }
            $0.datasets.append(dataset)
        }
    }

    /// Adds `entry` unless its name is taken or one of its options clashes with another component's option of
    /// the same name but a different kind (components share one command line, so a name means one thing).
    private static func add<Entry: Component>(_ entry: Entry, to entries: inout [Entry], in catalogue: Catalogue) throws {
        guard !entries.contains(where: { $0.name == entry.name }) else {
            throw MetaCoreError.argument("\(Entry.kind) '\(entry.name)' is already registered")
        }
        let others = catalogue.allOptions
        for option in entry.options {
            if let other = others.first(where: { $0.name == option.name }), other.kind != option.kind {
                throw MetaCoreError.argument("\(Entry.kind) '\(entry.name)' declares option '\(option.name)' as \(option.valueHint), but another component declares it as \(other.valueHint)")
            }
        }
        entries.append(entry)
    }

    /// Every option any registered component declares (the first declaration of each name).
    public static var allOptions: [OptionSpec] { catalogue.withLock { $0.allOptions } }
}

extension Registry.Catalogue {
    var allOptions: [OptionSpec] {
        var seen = Set<String>(), result: [OptionSpec] = []
        let all: [any Component] = algorithms + tasks + backbones + optimizers
        for option in all.flatMap(\.options) where seen.insert(option.name).inserted { result.append(option) }
        return result
    }
}

// MARK: - The built-in components (one line per file that defines some)

extension Registry {
    static let builtInAlgorithms = MAML.registrations + Reptile.registrations + MetaSGD.registrations + ANIL.registrations
        + Pretrained.registrations + PrototypicalNetworks.registrations + MatchingNetworks.registrations + RidgeRegressionHead.registrations
        + SiameseNetworks.registrations
        + ImplicitMAML.registrations + MAMLPlusPlus.registrations + OML.registrations
    static let builtInTaskFamilies = SinusoidTasks.registrations + OmniglotTasks.registrations
        + ContinualOmniglotTasks.registrations + IncrementalSineTasks.registrations + SyntheticImageTasks.registrations
        + ImageTasks.registrations
    static let builtInBackbones = Backbones.registrations
    static let builtInOptimizers = Adam.registrations + SGD.registrations
    static let builtInDatasets: [any Dataset.Type] = [Omniglot.self, ImageFolder.self]
}
