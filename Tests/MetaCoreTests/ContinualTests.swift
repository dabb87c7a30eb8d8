import Testing
@testable import MetaCore

/// Episodes of `base` with label l moved to 2l, on a model with `2 × ways` outputs: a trajectory then
/// touches only some output units, so OML's reset of them is exercised next to units it leaves alone.
struct SpreadLabels: TaskDistribution {
    let base: SyntheticImageTasks
    var inputShape: [Int] { base.inputShape }
    var outputShape: [Int] { [2 * base.ways] }
    var isClassification: Bool { true }
    func sample(_ random: inout RandomSource, queryCount: Int?) throws -> Task {
        let task = try base.sample(&random, queryCount: queryCount)
        func spread(_ batch: Batch) throws -> Batch {
            guard case .labels(let labels) = batch.targets else { return batch }
            return try Batch(inputs: batch.inputs, labels: labels.map { 2 * $0 })
        }
        return Task(support: try spread(task.support), query: try spread(task.query))
    }
}

let smallSines = { @Sendable () throws -> any TaskDistribution in try IncrementalSineTasks(functions: 3, shots: 2, queries: 2) }
let sineMLP = { @Sendable in try Model.mlp([4, 12, 12, 1], activation: .tanh) }
let spreadImages = { @Sendable () throws -> any TaskDistribution in
    SpreadLabels(base: try SyntheticImageTasks(ways: 2, shots: 2, queries: 2, inputShape: [1, 8, 8]))
}
/// `smallConv4` with four outputs (two per trajectory class slot).
let smallConv4FourWay = { @Sendable in try Model(inputShape: [1, 8, 8], layers: Array(try smallConv4().layers.dropLast()) + [Linear(16, 4)]) }

/// OML's kind of network, small: strided convolutions, no batch-norm, two fully connected layers (the PLN),
/// on 9x9 images with two trajectory classes spread over four outputs.
let smallStridedConv = { @Sendable in
    try Model.stridedConv(classes: 4, inputShape: [1, 9, 9], channels: 3, strides: [2, 1], hidden: [5], activation: .tanh)
}
let spreadImages9 = { @Sendable () throws -> any TaskDistribution in
    SpreadLabels(base: try SyntheticImageTasks(ways: 2, shots: 2, queries: 2, inputShape: [1, 9, 9]))
}

let omlCases: [MetaCase] = [
    MetaCase(name: "OML, incremental sines, 1-layer head, online batch 1",
             learner: { try OML(learningRate: 0.1, onlineBatch: 1, headLayers: 1) }, model: sineMLP, tasks: smallSines),
    MetaCase(name: "OML, incremental sines, 2-layer head, online batch 2",
             learner: { try OML(learningRate: 0.1, onlineBatch: 2, headLayers: 2) }, model: sineMLP, tasks: smallSines),
    MetaCase(name: "OML, Conv-4 with BatchNorm, output units reset, online batch 1",
             learner: { try OML(learningRate: 0.3, onlineBatch: 1, headLayers: 1) }, model: smallConv4FourWay, tasks: spreadImages),
    MetaCase(name: "OML on precomputed features, strided convolutions, 2-layer head, output units reset",
             learner: { try OML(learningRate: 0.3, onlineBatch: 1, headLayers: 2) }, model: smallStridedConv, tasks: spreadImages9),
    MetaCase(name: "OML on the whole model (features not precomputed), incremental sines, 2-layer head, online batch 2",
             learner: { try OML(learningRate: 0.1, onlineBatch: 2, headLayers: 2, precomputesFeatures: false) }, model: sineMLP, tasks: smallSines),
]

@Suite("Continual learning")
struct ContinualTests {
    @Test(arguments: omlCases)
    func omlMetaGradientMatchesFiniteDifferences(_ c: MetaCase) throws {
        let (error, detail) = try metaGradientError(c.learner(), model: c.model(), tasks: c.tasks(), seed: 41)
        #expect(error < 5e-3, "\(c.name): relative error \(error) on \(detail)")
    }

    /// The checks can fail: first-order OML leaves out the path through the online steps, and the finite
    /// differences notice.
    @Test func firstOrderOMLIsNotTheExactMetaGradient() throws {
        let learner = try OML(learningRate: 0.1, onlineBatch: 1, headLayers: 1, order: .first)
        let (error, _) = try metaGradientError(learner, model: sineMLP(), tasks: smallSines(), seed: 41)
        #expect(error > 5e-2, "first-order OML agreed with the finite differences (relative error \(error))")
    }

    /// First order is the query gradient at the end of the trajectory, with the reset units' entries zero.
    @Test func firstOrderOMLIsTheQueryGradientAfterTheTrajectory() throws {
        let model = try smallConv4FourWay(), workspace = Workspace(model: model)
        var random = RandomSource(seed: 3)
        let task = try spreadImages().sample(&random)
        let meta = model.initialParameters(seed: 2)
        let learner = try OML(learningRate: 0.3, order: .first)
        var gradient: [Float] = [], expected: [Float] = []
        _ = try learner.metaGradient(meta, task: task, workspace: workspace, into: &gradient)
        let adapted = try learner.adapt(meta, task: task, workspace: workspace, recording: false)
        try workspace.gradient(at: adapted.theta, on: task.query, into: &expected)
        // Classes 0 and 2 were in the trajectory: their rows (16 weights + bias each) are reset.
        let head = model.parameterRange(ofLayer: model.layers.count - 1).lowerBound
        #expect(Set(adapted.reset) == Set(Array(head ..< head + 16) + Array(head + 32 ..< head + 48) + [head + 64, head + 66]))
        for i in adapted.reset { expected[i] = 0 }
        #expect(gradient == expected)
        // Only the head moved along the trajectory.
        let body = try 0 ..< model.head(layers: 1).lowerBound
        #expect(adapted.theta[body] == meta[body])
    }

    /// The RLN run once on a task's features gives what the whole model run at every online step gives: the
    /// same meta-loss and meta-gradient, up to the order of float sums, in both orders; a model with
    /// batch statistics runs whole.
    @Test func omlOnPrecomputedFeaturesAgreesWithTheWholeModel() throws {
        let model = try smallStridedConv(), workspace = Workspace(model: model)
        var random = RandomSource(seed: 5)
        let task = try spreadImages9().sample(&random)
        let meta = generalParameters(model, seed: 6)
        for order in [MAML.Order.second, .first] {
            let onFeatures = try OML(learningRate: 0.3, headLayers: 2, order: order)
            let whole = try OML(learningRate: 0.3, headLayers: 2, order: order, precomputesFeatures: false)
            #expect(onFeatures.runsOnFeatures(model) && !whole.runsOnFeatures(model))
            var a: [Float] = [], b: [Float] = []
            let valueA = try onFeatures.metaGradient(meta, task: task, workspace: workspace, into: &a)
            let valueB = try whole.metaGradient(meta, task: task, workspace: workspace, into: &b)
            #expect(relativeError(valueA.loss, valueB.loss) < 1e-5 && valueA.correct == valueB.correct)
            #expect(relativeError(a.map(Double.init), b.map(Double.init)) < 1e-5, "\(order): the meta-gradients differ")
            let lossA = try onFeatures.metaLoss(meta, task: task, workspace: workspace).loss
            #expect(relativeError(lossA, try whole.metaLoss(meta, task: task, workspace: workspace).loss) < 1e-5)
        }
        #expect(try !OML(learningRate: 0.3).runsOnFeatures(smallConv4FourWay()))
    }

    @Test func omlRejectsAHeadThatLeavesNoRepresentation() throws {
        let learner = try OML(learningRate: 0.1, headLayers: 3)
        #expect(throws: MetaCoreError.self) { try learner.check(model: sineMLP(), tasks: smallSines()) }
        #expect(throws: MetaCoreError.self) { try OML(learningRate: 0, headLayers: 1) }
        #expect(throws: MetaCoreError.self) { try OML(learningRate: 0.1, onlineBatch: 0) }
    }

    /// A hand-made matrix: three stages, accuracies after each.
    @Test func metricsOnAHandMadeMatrix() throws {
        let metrics = try ContinualMetrics(matrix: [[0.9], [0.7, 0.8], [0.6, 0.85, 0.5]], higherIsBetter: true)
        #expect(metrics.averages.map { ($0 * 1e6).rounded() } == [900_000, 750_000, 650_000])
        // Stage 0: best before the end 0.9, final 0.6 -> 0.3; stage 1: best before the end 0.8, final 0.85 -> -0.05.
        #expect(abs(metrics.forgetting! - 0.125) < 1e-12)
        // (0.6 - 0.9 + 0.85 - 0.8) / 2
        #expect(abs(metrics.backwardTransfer! - (-0.125)) < 1e-12)
        // A loss: lower is better, the signs turn.
        let loss = try ContinualMetrics(matrix: [[1.0], [3.0, 0.5], [2.0, 0.7, 0.2]], higherIsBetter: false)
        #expect(abs(loss.forgetting! - ((2.0 - 1.0) + (0.7 - 0.5)) / 2) < 1e-12)
        #expect(abs(loss.backwardTransfer! - ((1.0 - 2.0) + (0.5 - 0.7)) / 2) < 1e-12)
        #expect(try ContinualMetrics(matrix: [[0.4]], higherIsBetter: true).forgetting == nil)
        #expect(throws: MetaCoreError.self) { try ContinualMetrics(matrix: [[0.4], [0.3]], higherIsBetter: true) }
    }

    @Test func streamsAreReproducibleFromASeed() throws {
        let tasks = try IncrementalSineTasks(functions: 4, shots: 3, queries: 2)
        let a = try ContinualStream.incrementalSines(tasks, trainPoints: 5, testPoints: 7, seed: 9)
        let b = try ContinualStream.incrementalSines(tasks, trainPoints: 5, testPoints: 7, seed: 9)
        let c = try ContinualStream.incrementalSines(tasks, trainPoints: 5, testPoints: 7, seed: 10)
        #expect(a.stages.count == 4 && !a.isClassification)
        #expect(zip(a.stages, b.stages).allSatisfy { $0.train == $1.train && $0.test == $1.test })
        #expect(a.stages[0].train != c.stages[0].train)
        // Each stage's inputs carry its function's one-hot code.
        for (k, stage) in a.stages.enumerated() {
            for n in 0 ..< 5 { #expect(stage.train.inputs.scalars[n * 5 + 1 ..< n * 5 + 5] == ArraySlice((0 ..< 4).map { $0 == k ? 1 : 0 })) }
        }
    }

    /// MER with one batch of one sample and β = γ = 1 is exactly online SGD; with replay it is not, and its
    /// memory never exceeds its size.
    @Test func merReducesToOnlineSGDWithoutReplay() throws {
        let model = try sineMLP(), workspace = Workspace(model: model)
        let stream = try ContinualStream.incrementalSines(smallSines() as! IncrementalSineTasks, trainPoints: 6, testPoints: 4, seed: 1)
        let theta = model.initialParameters(seed: 0), all = 0 ..< model.parameterCount
        var sgd = try OnlineSGD(learningRate: 0.05, adapted: all)
        var plain = try MER(learningRate: 0.05, withinBatch: 1, acrossBatches: 1, batches: 1, batchSize: 1, memorySize: 5, adapted: all)
        var replay = try MER(learningRate: 0.05, withinBatch: 0.5, acrossBatches: 0.7, batches: 2, batchSize: 3, memorySize: 5, adapted: all)
        let a = try ContinualEvaluation.run(&sgd, parameters: theta, stream: stream, workspace: workspace, seed: 2)
        let b = try ContinualEvaluation.run(&plain, parameters: theta, stream: stream, workspace: workspace, seed: 2)
        let c = try ContinualEvaluation.run(&replay, parameters: theta, stream: stream, workspace: workspace, seed: 2)
        #expect(a.parameters == b.parameters && a.metrics == b.metrics)
        #expect(c.parameters != a.parameters)
        #expect(c.metrics.matrix.count == 3 && !c.metrics.higherIsBetter)
        #expect(throws: MetaCoreError.self) { try MER(learningRate: 0.1, withinBatch: 1.5, acrossBatches: 1, batches: 1, batchSize: 1, memorySize: 1, adapted: all) }
    }

    /// Online SGD on the head alone leaves the representation untouched; learning a function lowers its error.
    @Test func onlineSGDAdaptsOnlyWhatItIsGiven() throws {
        let model = try sineMLP(), workspace = Workspace(model: model)
        let stream = try ContinualStream.incrementalSines(smallSines() as! IncrementalSineTasks, trainPoints: 40, testPoints: 50, seed: 3)
        let theta = model.initialParameters(seed: 0), head = try model.head(layers: 2)
        var learner = try OnlineSGD(learningRate: 0.05, batchSize: 4, adapted: head)
        let (metrics, after) = try ContinualEvaluation.run(&learner, parameters: theta, stream: stream, workspace: workspace, seed: 0)
        #expect(after[0 ..< head.lowerBound] == theta[0 ..< head.lowerBound])
        let before = try workspace.loss(at: theta, on: stream.stages[0].test).loss
        #expect(metrics.matrix[0][0] < before, "learning function 0 did not lower its error: \(metrics.matrix[0][0]) vs \(before)")
    }

    /// The i.i.d. bound restarts from the initial parameters on everything seen: after the last stage it
    /// does not depend on the order the stages came in beyond the shuffling seed.
    @Test func offlineIIDTrainsOnEverythingSeen() throws {
        let model = try sineMLP(), workspace = Workspace(model: model)
        let stream = try ContinualStream.incrementalSines(smallSines() as! IncrementalSineTasks, trainPoints: 20, testPoints: 30, seed: 4)
        let theta = model.initialParameters(seed: 0), all = 0 ..< model.parameterCount
        var iid = try OfflineIID(learningRate: 0.02, batchSize: 5, epochs: 20, adapted: all)
        var online = try OnlineSGD(learningRate: 0.02, batchSize: 5, adapted: all)
        let bound = try ContinualEvaluation.run(&iid, parameters: theta, stream: stream, workspace: workspace, seed: 0).metrics
        let sequential = try ContinualEvaluation.run(&online, parameters: theta, stream: stream, workspace: workspace, seed: 0).metrics
        #expect(bound.final < sequential.final, "i.i.d. MSE \(bound.final) vs online \(sequential.final)")
        #expect(bound.forgetting! < sequential.forgetting!)
    }

    /// The continual network (no batch-norm) starts from Kaiming-normal weights and zero biases.
    @Test func kaimingNormalInitialisation() throws {
        let model = try Model.conv4(classes: 10, blocks: 2, batchNorm: false, initialization: .kaimingNormal)
        let theta = model.initialParameters(seed: 1)
        for entry in model.layout.entries {
            let values = theta[entry.range].map(Double.init)
            if entry.name.hasSuffix("bias") { #expect(values.allSatisfy { $0 == 0 }); continue }
            let fanIn = Double(entry.shape.dropFirst().reduce(1, *))
            let std = (values.reduce(0) { $0 + $1 * $1 } / Double(values.count)).squareRoot()
            #expect(abs(std / (2 / fanIn).squareRoot() - 1) < 0.1, "\(entry.name): std \(std) for fan-in \(fanIn)")
        }
        #expect(try Model.conv4(classes: 10).initialParameters(seed: 1) != theta)
    }

    /// Glorot-uniform (TensorFlow's default): weights uniform in ±√(6 / (fan-in + fan-out)), so their standard
    /// deviation is that bound over √3, and zero biases; the option selects it.
    @Test func glorotUniformInitialisation() throws {
        let config = try TrainingConfiguration().applying(["--task", "omniglot", "--ways", "5", "--backbone", "strided-conv", "--channels", "16",
                                                           "--strides", "2,2", "--padding", "1", "--hidden", "none", "--init", "glorot-uniform"])
        let model = try config.makeModel(for: SyntheticImageTasks(ways: 5, shots: 1, queries: 1, inputShape: [1, 28, 28]))
        let theta = model.initialParameters(seed: 1)
        var checked = 0
        for entry in model.layout.entries where entry.shape.count > 1 {
            let values = theta[entry.range].map(Double.init), area = entry.shape.dropFirst(2).reduce(1, *)
            let bound = (6 / Double(entry.shape[1] * area + entry.shape[0] * area)).squareRoot()
            let std = (values.reduce(0) { $0 + $1 * $1 } / Double(values.count)).squareRoot()
            #expect(values.allSatisfy { abs($0) <= bound } && values.contains { abs($0) > 0.9 * bound }, "\(entry.name): bound \(bound)")
            #expect(abs(std / (bound / 3.0.squareRoot()) - 1) < 0.1, "\(entry.name): std \(std) for bound \(bound)")
            #expect(theta[model.layout.entries.first { $0.name == entry.name.replacingOccurrences(of: "weight", with: "bias") }!.range].allSatisfy { $0 == 0 })
            checked += 1
        }
        #expect(checked == 3)
    }
}
