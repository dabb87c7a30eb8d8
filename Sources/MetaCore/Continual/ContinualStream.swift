/// What a continual learner meets: stages (a group of new classes, or a new function) one after another,
/// each with training samples seen once, in order, and held-out test samples to measure it by afterwards.
public struct ContinualStream: Sendable {
    public struct Stage: Sendable {
        /// Seen once, in this order (class after class within a stage).
        public let train: Batch
        public let test: Batch
    }

    public let stages: [Stage]
    /// Classification: the number of classes seen once stage `i` is learned (labels are `0 ..< classes` in
    /// stream order, and predictions are made among the classes seen so far). `nil` for regression.
    public let classesSeen: [Int]?

    public var isClassification: Bool { classesSeen != nil }

    /// Class-incremental Omniglot, as OML evaluates (Javed & White 2019): `classes` characters drawn (seeded)
    /// from `characters`, learned one after another from `trainDrawings` of their 20 drawings each and tested
    /// on the others; a stage is `stageSize` consecutive classes.
    public static func omniglot(_ dataset: Omniglot, characters: [Int], classes: Int, stageSize: Int,
                                trainDrawings: Int = 15, seed: UInt64) throws -> ContinualStream {
        guard classes >= 1, classes <= characters.count else {
            throw MetaCoreError.argument("a stream of \(classes) classes needs between 1 and \(characters.count) characters")
        }
        guard classes <= ContinualOmniglotTasks.outputs else {
            throw MetaCoreError.argument("a stream of \(classes) classes exceeds the classifier's \(ContinualOmniglotTasks.outputs) outputs")
        }
        guard stageSize >= 1, classes % stageSize == 0 else {
            throw MetaCoreError.argument("\(classes) classes do not split into stages of \(stageSize) classes")
        }
        guard trainDrawings >= 1, trainDrawings < Omniglot.drawingsPerCharacter else {
            throw MetaCoreError.argument("training drawings per class must be between 1 and \(Omniglot.drawingsPerCharacter - 1), got \(trainDrawings)")
        }
        var random = RandomSource(seed: seed)
        let chosen = OmniglotTasks.choose(classes, from: characters.count, using: &random).map { characters[$0] }
        let order = chosen.map { _ in OmniglotTasks.choose(Omniglot.drawingsPerCharacter, from: Omniglot.drawingsPerCharacter, using: &random) }
        let stages = try stride(from: 0, to: classes, by: stageSize).map { first -> Stage in
            func batch(_ drawings: Range<Int>) throws -> Batch {
                var items: [Omniglot.Drawing] = [], labels: [Int32] = []
                for label in first ..< first + stageSize {
                    for d in order[label][drawings] { items.append(Omniglot.Drawing(character: chosen[label], drawing: d)); labels.append(Int32(label)) }
                }
                return try dataset.batch(items, labels: labels)
            }
            return Stage(train: try batch(0 ..< trainDrawings), test: try batch(trainDrawings ..< Omniglot.drawingsPerCharacter))
        }
        return ContinualStream(stages: stages, classesSeen: stages.indices.map { ($0 + 1) * stageSize })
    }

    /// Incremental sine waves: one stage per function of `tasks`, `trainPoints` seen once and `testPoints` held out.
    public static func incrementalSines(_ tasks: IncrementalSineTasks, trainPoints: Int, testPoints: Int, seed: UInt64) throws -> ContinualStream {
        guard trainPoints >= 1, testPoints >= 1 else {
            throw MetaCoreError.argument("each function needs at least 1 training and 1 test point, got \(trainPoints) and \(testPoints)")
        }
        var random = RandomSource(seed: seed)
        let waves = tasks.waves(&random)
        let stages = try waves.indices.map {
            Stage(train: try tasks.points(of: $0, in: waves, count: trainPoints, &random),
                  test: try tasks.points(of: $0, in: waves, count: testPoints, &random))
        }
        return ContinualStream(stages: stages, classesSeen: nil)
    }

    /// The same stream with every input replaced by `body`'s output at `parameters` (e.g. a frozen
    /// representation's features), so that a learner adapting only the head can run on the head model alone.
    /// (Features are computed `chunk` samples at a time: a body with batch statistics would see those batches.)
    public func features(of body: Model, parameters: [Float], chunk: Int = 256) throws -> ContinualStream {
        let workspace = Workspace(model: body)
        func map(_ batch: Batch) throws -> Batch {
            var outputs: [Float] = []
            for start in stride(from: 0, to: batch.count, by: chunk) {
                let part = try batch.samples(start ..< min(start + chunk, batch.count))
                outputs += try workspace.predict(at: parameters, inputs: part.inputs).scalars
            }
            return try Batch(inputs: Tensor(shape: [batch.count] + body.outputShape, scalars: outputs), targets: batch.targets)
        }
        return ContinualStream(stages: try stages.map { Stage(train: try map($0.train), test: try map($0.test)) }, classesSeen: classesSeen)
    }
}
