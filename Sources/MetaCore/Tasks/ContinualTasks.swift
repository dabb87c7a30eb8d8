#if canImport(Glibc)
import Glibc
#endif

/// Meta-training episodes for continual learning on Omniglot, as OML trains (Javed & White 2019): a
/// *trajectory* of a few classes to be learned online, class after class, and a meta-loss on other drawings
/// of those classes plus a "remember" set of drawings of other classes.
///
/// Labels are global: a class's label is its position in ``characters`` (every one of the model's
/// ``outputs`` units stands for one class), so a network pretrained on these episodes is an ordinary
/// many-way classifier. The support set is the trajectory (`shots` drawings of each class, class-major, in
/// the order to be learned); the query set is `queries` further drawings of each trajectory class followed by
/// `remember` drawings of random other classes.
public struct ContinualOmniglotTasks: TaskDistribution {
    /// The width of the classifier's output layer (more units than any stream needs, as in OML).
    public static let outputs = 1000

    public let dataset: Omniglot
    /// The characters classes come from; class `i` (label `i`) is `characters[i]`.
    public let characters: [Int]
    /// Classes per trajectory.
    public let ways: Int
    /// Trajectory drawings per class.
    public let shots: Int
    /// Meta-loss drawings per trajectory class.
    public let queries: Int
    /// Meta-loss drawings of other classes.
    public let remember: Int

    public init(_ dataset: Omniglot, characters: [Int], ways: Int, shots: Int, queries: Int, remember: Int) throws {
        guard !characters.isEmpty, characters.count <= Self.outputs else {
            throw MetaCoreError.argument("continual Omniglot needs between 1 and \(Self.outputs) classes, got \(characters.count)")
        }
        if let bad = characters.first(where: { !dataset.characters.indices.contains($0) }) {
            throw MetaCoreError.argument("character index \(bad) is outside the dataset's \(dataset.characters.count) characters")
        }
        guard ways >= 1, ways < characters.count else {
            throw MetaCoreError.argument("a trajectory needs between 1 and \(characters.count - 1) classes (the rest feed the remember set), got \(ways)")
        }
        guard shots >= 1, queries >= 0, remember >= 0, queries + remember >= 1 else {
            throw MetaCoreError.argument("a trajectory needs shots >= 1 and a meta-loss of at least one drawing, got shots \(shots), queries \(queries), remember \(remember)")
        }
        guard shots + queries <= Omniglot.drawingsPerCharacter else {
            throw MetaCoreError.argument("\(shots) shots + \(queries) queries per class exceed the \(Omniglot.drawingsPerCharacter) drawings of an Omniglot character")
        }
        self.dataset = dataset; self.characters = characters
        self.ways = ways; self.shots = shots; self.queries = queries; self.remember = remember
    }

    public var inputShape: [Int] { [1, dataset.side, dataset.side] }
    public var outputShape: [Int] { [Self.outputs] }
    public var isClassification: Bool { true }

    public func sample(_ random: inout RandomSource, queryCount: Int?) throws -> Task {
        let queries = queryCount ?? self.queries
        guard shots + queries <= Omniglot.drawingsPerCharacter else {
            throw MetaCoreError.argument("\(shots) shots + \(queries) queries per class exceed the \(Omniglot.drawingsPerCharacter) drawings of an Omniglot character")
        }
        let chosen = OmniglotTasks.choose(ways, from: characters.count, using: &random)
        let picked = chosen.map { _ in OmniglotTasks.choose(shots + queries, from: Omniglot.drawingsPerCharacter, using: &random) }
        func drawings(_ range: Range<Int>) -> ([Omniglot.Drawing], [Int32]) {
            var drawings: [Omniglot.Drawing] = [], labels: [Int32] = []
            for (j, c) in chosen.enumerated() {
                for d in picked[j][range] { drawings.append(Omniglot.Drawing(character: characters[c], drawing: d)); labels.append(Int32(c)) }
            }
            return (drawings, labels)
        }
        let trajectory = drawings(0 ..< shots)
        var (query, labels) = drawings(shots ..< shots + queries)
        let inTrajectory = Set(chosen)
        while labels.count < ways * queries + remember {
            let c = Int(random.next() % UInt64(characters.count))
            if inTrajectory.contains(c) { continue }
            query.append(Omniglot.Drawing(character: characters[c], drawing: Int(random.next() % UInt64(Omniglot.drawingsPerCharacter))))
            labels.append(Int32(c))
        }
        return Task(support: try dataset.batch(trajectory.0, labels: trajectory.1), query: try dataset.batch(query, labels: labels))
    }
}

/// Incremental sine waves, after OML's regression benchmark (Javed & White 2019): `functions` random sine
/// waves y = a sin(x − φ), a ∈ [0.1, 5], φ ∈ [0, π], x ∈ [−5, 5], learned one after another. The input is x
/// followed by a one-hot code of which function the sample belongs to (`1 + functions` values), so one
/// network can represent all of them at once — what it must not forget.
///
/// A task's support set is the trajectory: `shots` points of function 0, then of function 1, …; its query set
/// is `queries` points of every function.
public struct IncrementalSineTasks: TaskDistribution {
    public let functions: Int
    /// Trajectory points per function.
    public let shots: Int
    /// Meta-loss points per function.
    public let queries: Int
    public let amplitude: ClosedRange<Float> = 0.1 ... 5
    public let phase: ClosedRange<Float> = 0 ... .pi
    public let domain: ClosedRange<Float> = -5 ... 5

    public init(functions: Int = 10, shots: Int, queries: Int) throws {
        guard (1 ... 1000).contains(functions) else {
            throw MetaCoreError.argument("incremental sines need between 1 and 1000 functions (each adds an input), got \(functions)")
        }
        guard shots >= 1, queries >= 1 else {
            throw MetaCoreError.argument("incremental sines need at least 1 trajectory and 1 meta-loss point per function, got \(shots) and \(queries)")
        }
        self.functions = functions; self.shots = shots; self.queries = queries
    }

    public var inputShape: [Int] { [1 + functions] }
    public var outputShape: [Int] { [1] }
    public var isClassification: Bool { false }

    /// One sine wave: amplitude and phase.
    public struct Wave: Sendable { public let amplitude: Float, phase: Float }

    /// `functions` random waves.
    public func waves(_ random: inout RandomSource) -> [Wave] {
        (0 ..< functions).map { _ in
            Wave(amplitude: random.uniform(amplitude.lowerBound, amplitude.upperBound), phase: random.uniform(phase.lowerBound, phase.upperBound))
        }
    }

    /// `count` random points of wave `index` of `waves`, encoded as inputs `[count, 1 + functions]`.
    public func points(of index: Int, in waves: [Wave], count: Int, _ random: inout RandomSource) throws -> Batch {
        var inputs = [Float](repeating: 0, count: count * (1 + functions)), values: [Float] = []
        for i in 0 ..< count {
            let x = random.uniform(domain.lowerBound, domain.upperBound)
            inputs[i * (1 + functions)] = x
            inputs[i * (1 + functions) + 1 + index] = 1
            values.append(waves[index].amplitude * sin(x - waves[index].phase))
        }
        return try Batch(inputs: Tensor(shape: [count, 1 + functions], scalars: inputs), values: Tensor(shape: [count, 1], scalars: values))
    }

    public func sample(_ random: inout RandomSource, queryCount: Int?) throws -> Task {
        let waves = waves(&random)
        var support = try points(of: 0, in: waves, count: shots, &random)
        var query = try points(of: 0, in: waves, count: queryCount ?? queries, &random)
        for k in 1 ..< functions {
            support = try support.concatenated(with: points(of: k, in: waves, count: shots, &random))
            query = try query.concatenated(with: points(of: k, in: waves, count: queryCount ?? queries, &random))
        }
        return Task(support: support, query: query)
    }
}

extension ContinualOmniglotTasks {
    static let registrations = [
        TaskFamilyEntry(
            name: "continual-omniglot",
            summary: "OML's continual Omniglot: trajectories of new classes, meta-trained on the background alphabets",
            options: [OptionSpec("remember", .int(0 ... 1_000_000), default: .int(15), help: "meta-loss drawings of classes outside the trajectory"),
                      OML.headOption, OML.onlineBatchOption, Omniglot.imageSizeOption],
            dataset: Omniglot.self, defaultBackbone: "conv4",
            // OML's networks, scaled to this machine: a representation of three conv blocks without batch-norm
            // (online steps see one sample), and a linear prediction network with one unit per class;
            // Kaiming-normal weights and zero biases as the authors' code (the default init shrinks activations
            // without batch-norm).
            optionDefaults: ["blocks": .int(3), "batch-norm": .bool(false), "init": .string("kaiming-normal")],
            continual: ContinualSupport(isClassification: true) { request in
                let data = try request.data.load(Omniglot.self, for: request.options)
                return try ContinualStream.omniglot(data, characters: data.characters(in: .evaluation), classes: request.classes,
                                                    stageSize: request.stageSize, seed: request.seed)
            }
        ) { request in
            // OML's protocol: meta-train on the background alphabets, meet the evaluation ones in the stream.
            let dataset = try request.data.load(Omniglot.self, for: request.options), config = request.configuration
            return try ContinualOmniglotTasks(dataset, characters: dataset.characters(in: request.split == .train ? .background : .evaluation),
                                              ways: request.ways(), shots: config.shots, queries: config.queries,
                                              remember: request.options.int("remember")!)
        },
    ]
}

extension IncrementalSineTasks {
    static let registrations = [
        TaskFamilyEntry(
            name: "incremental-sine",
            summary: "OML's incremental sine waves: --ways functions (default 10) learned one after another",
            options: [OptionSpec("head-layers", .int(1 ... 1000), default: .int(2), help: OML.headOption.help),
                      OptionSpec("online-batch", .int(1 ... 1_000_000), default: .int(8), help: OML.onlineBatchOption.help)],
            defaultBackbone: "mlp", optionDefaults: ["hidden": .string("100,100,100,100")], evaluationQueries: 100,
            continual: ContinualSupport(isClassification: false) { request in
                let config = request.configuration
                let tasks = try IncrementalSineTasks(functions: config.ways ?? 10, shots: config.shots, queries: config.queries)
                return try ContinualStream.incrementalSines(tasks, trainPoints: request.trainPoints ?? config.shots,
                                                            testPoints: request.testPoints, seed: request.seed)
            }
        ) { request in
            let config = request.configuration
            return try IncrementalSineTasks(functions: config.ways ?? 10, shots: config.shots, queries: config.queries)
        },
    ]
}
