import Testing
import Foundation
@testable import MetaCore

/// A learner, a model and a task distribution on which to check the meta-gradient.
struct MetaCase: CustomTestStringConvertible, Sendable {
    let name: String
    let learner: @Sendable () throws -> any MetaLearner
    let model: @Sendable () throws -> Model
    let tasks: @Sendable () throws -> any TaskDistribution
    var testDescription: String { name }
}

let sine = { @Sendable () throws -> any TaskDistribution in try SinusoidTasks(shots: 5) }
/// Few-shot classification tasks on random images, for the convolutional checks.
let images = { @Sendable () throws -> any TaskDistribution in try SyntheticImageTasks(ways: 3, shots: 2, queries: 2, inputShape: [1, 8, 8]) }
let tanhMLP = { @Sendable in try Model.mlp([1, 20, 20, 1], activation: .tanh) }
/// Two Conv-4 blocks (3x3 convolution, batch-norm, activation, downsampling) and a linear head. Downsampling
/// is a stride-2 convolution rather than max-pooling here: a finite-difference step through an inner SGD step
/// would cross max-pool ties (the meta-loss jumps there), while max-pooling's own gradient and H·v are
/// checked exactly in DerivativeTests. Smooth activations for the same reason.
let smallConv4 = { @Sendable in
    try Model(inputShape: [1, 8, 8], layers: [
        Conv2d(1, 4, kernel: 3, padding: 1), BatchNorm(4), Tanh(), Conv2d(4, 4, kernel: 3, stride: 2, padding: 1),
        Conv2d(4, 4, kernel: 3, padding: 1), BatchNorm(4), Tanh(), Conv2d(4, 4, kernel: 3, stride: 2, padding: 1),
        Flatten(), Linear(16, 3),
    ])
}

/// `smallConv4` without its head: an embedding network for the metric learners.
let smallConv4Embedding = { @Sendable in try Model(inputShape: [1, 8, 8], layers: Array(try smallConv4().layers.dropLast())) }

let metaCases: [MetaCase] = [
    MetaCase(name: "Prototypical Networks, Conv-4 embedding with BatchNorm", learner: { PrototypicalNetworks() }, model: smallConv4Embedding, tasks: images),
    MetaCase(name: "Matching Networks, Conv-4 embedding with BatchNorm", learner: { MatchingNetworks() }, model: smallConv4Embedding, tasks: images),
    MetaCase(name: "R2-D2 (λ learned), Conv-4 embedding with BatchNorm", learner: { try RidgeRegressionHead(lambda: 1, learnsLambda: true, initialScale: 3) },
             model: smallConv4Embedding, tasks: images),
] + [1, 2, 3].flatMap { k in [
    MetaCase(name: "MAML K=\(k), MLP", learner: { MAML(inner: try InnerLoop(steps: k, learningRate: 0.05)) }, model: tanhMLP, tasks: sine),
    MetaCase(name: "MAML K=\(k), Conv-4 with BatchNorm", learner: { MAML(inner: try InnerLoop(steps: k, learningRate: 0.3)) }, model: smallConv4, tasks: images),
    MetaCase(name: "Meta-SGD K=\(k), MLP", learner: { MetaSGD(inner: try InnerLoop(steps: k, learningRate: 0.05)) }, model: tanhMLP, tasks: sine),
    MetaCase(name: "Meta-SGD K=\(k), Conv-4 with BatchNorm", learner: { MetaSGD(inner: try InnerLoop(steps: k, learningRate: 0.3)) }, model: smallConv4, tasks: images),
    MetaCase(name: "ANIL K=\(k), MLP", learner: { ANIL(inner: try InnerLoop(steps: k, learningRate: 0.05)) }, model: tanhMLP, tasks: sine),
    MetaCase(name: "ANIL K=\(k), Conv-4 with BatchNorm", learner: { ANIL(inner: try InnerLoop(steps: k, learningRate: 0.3)) }, model: smallConv4, tasks: images),
    // Half-way through the multi-step loss's annealing, so that every step's query loss carries weight.
    MetaCase(name: "MAML++ K=\(k) (multi-step loss, learned rates), MLP", learner: { try mamlPlusPlus(k, 0.05) }, model: tanhMLP, tasks: sine),
    MetaCase(name: "MAML++ K=\(k) (multi-step loss, learned rates), Conv-4 with BatchNorm", learner: { try mamlPlusPlus(k, 0.3) }, model: smallConv4, tasks: images),
] } + graphMetaCases

/// MAML++ with every change on, at iteration 50 of a 100-iteration annealing of its multi-step loss.
func mamlPlusPlus(_ steps: Int, _ rate: Float) throws -> any MetaLearner {
    var schedule = MAMLPlusPlus.Schedule()
    schedule.multiStepIterations = 100
    return try MAMLPlusPlus(inner: InnerLoop(steps: steps, learningRate: rate), schedule: schedule).scheduled(at: 50)
}

/// The largest relative disagreement between the analytic meta-gradient and central finite differences of
/// the meta-loss, over a random direction and one direction per meta-parameter tensor.
func metaGradientError(_ learner: any MetaLearner, model: Model, tasks: any TaskDistribution, seed: UInt64) throws -> (Double, String) {
    var random = RandomSource(seed: seed)
    let task = try tasks.sample(&random)
    let workspace = Workspace(model: model)
    var meta = learner.initialMetaParameters(for: model, seed: seed)
    for i in 0 ..< model.parameterCount { meta[i] += random.normal() * 0.05 }
    var gradient: [Float] = []
    _ = try learner.metaGradient(meta, task: task, workspace: workspace, into: &gradient)
    let metaLoss = { (p: [Float]) in try learner.metaLoss(p, task: task, workspace: workspace).loss }

    var pieces: [(String, Range<Int>)] = [("all", 0 ..< meta.count)]
    pieces += model.layout.entries.map { ($0.name, $0.range) } + learner.extraMetaParameters(for: model)
    var worst = (0.0, "")
    for (name, range) in pieces {
        var u = [Float](repeating: 0, count: meta.count)
        for i in range { u[i] = random.normal() }
        // The step balances the stencil's truncation error (h^4) against the float meta-loss's rounding
        // noise (eps / h): measured on the Conv-4 cases, the worst error was 5.0e-3 at h = 1e-3 (noise),
        // 0.11 at 1e-2 (truncation) and 3.8e-3 at 2e-3.
        let numeric = try FiniteDifferences.directional(metaLoss, at: meta, along: u, step: 2e-3)
        let analytic = dot(gradient, u)
        let scale = 1e-2 * gradient.norm * u.norm
        let error = abs(analytic - numeric) / max(abs(numeric), scale, 1e-9)
        if error > worst.0 { worst = (error, "\(name): analytic \(analytic), finite differences \(numeric)") }
    }
    return worst
}

/// MAML with one Hessian-vector product left out: what a "second-order" implementation that silently
/// drops a term computes. The checks must reject it.
struct MAMLMissingOneHessianTerm: GradientMetaLearner {
    let inner: InnerLoop
    var name: String { "broken" }
    func innerStep(_ theta: inout [Float], meta: [Float], support: Batch, workspace: Workspace) throws {
        try InnerUpdate(rate: .scalar(inner.learningRate)).step(&theta, meta: meta, batch: support, workspace: workspace)
    }
    func metaGradient(_ meta: [Float], task: Task, workspace: Workspace, into gradient: inout [Float]) throws -> LossValue {
        let trajectory = try innerTrajectory(meta, support: task.support, workspace: workspace)
        let value = try workspace.gradient(at: trajectory[inner.steps], on: task.query, into: &gradient)
        var hv: [Float] = []
        for k in stride(from: inner.steps - 1, through: 1, by: -1) {   // k = 0 forgotten
            try workspace.hessianVectorProduct(at: trajectory[k], on: task.support, direction: gradient, into: &hv)
            gradient.add(hv, scaledBy: -inner.learningRate)
        }
        return value
    }
}

@Suite("Meta-gradients")
struct MetaGradientTests {
    @Test(arguments: metaCases)
    func metaGradientMatchesFiniteDifferencesOfTheMetaLoss(_ c: MetaCase) throws {
        let (error, detail) = try metaGradientError(c.learner(), model: c.model(), tasks: c.tasks(), seed: 31)
        #expect(error < 5e-3, "\(c.name): relative error \(error) on \(detail)")
    }

    @Test(arguments: [1, 2])
    func aMissingHessianTermIsCaught(_ k: Int) throws {
        for (model, tasks, lr) in [(try tanhMLP(), try sine(), Float(0.05)), (try smallConv4(), try images(), Float(0.3)),
                                   (try smallResidualNetwork(), try images(), Float(0.3)), (try smallLSTM(), try sequences(), Float(0.3))] {
            let broken = MAMLMissingOneHessianTerm(inner: try InnerLoop(steps: k, learningRate: lr))
            let (error, _) = try metaGradientError(broken, model: model, tasks: tasks, seed: 31)
            #expect(error > 5e-2, "dropping a Hessian-vector product went unnoticed (relative error \(error))")
        }
    }

    /// First-order MAML differs from MAML by exactly the Hessian terms: for K = 1,
    /// g_MAML = g_FOMAML − α H_S(θ) g_FOMAML.
    @Test func firstOrderDiffersFromSecondOrderByTheHessianTerm() throws {
        let model = try tanhMLP(), inner = try InnerLoop(steps: 1, learningRate: 0.05)
        var random = RandomSource(seed: 5)
        let task = try SinusoidTasks(shots: 5).sample(&random)
        let workspace = Workspace(model: model)
        let theta = model.initialParameters(seed: 1)
        var second: [Float] = [], first: [Float] = [], hv: [Float] = []
        _ = try MAML(inner: inner, order: .second).metaGradient(theta, task: task, workspace: workspace, into: &second)
        _ = try MAML(inner: inner, order: .first).metaGradient(theta, task: task, workspace: workspace, into: &first)
        try workspace.hessianVectorProduct(at: theta, on: task.support, direction: first, into: &hv)
        var expected = first
        expected.add(hv, scaledBy: -inner.learningRate)
        #expect(second == expected)
        #expect(relativeError(second.map(Double.init), first.map(Double.init)) > 1e-3, "the Hessian term should matter here")
    }

    /// ANIL on the body's features computes what ANIL on the whole model does: the meta-gradient, the
    /// meta-loss, the adaptation curve and the predictions, with batch-norm's statistics and through a graph.
    @Test(arguments: [(MetaCase(name: "MLP", learner: { ANIL(inner: try InnerLoop(steps: 3, learningRate: 0.05)) }, model: tanhMLP, tasks: sine), Normalization.transductive),
                      (MetaCase(name: "Conv-4 with BatchNorm", learner: { ANIL(inner: try InnerLoop(steps: 3, learningRate: 0.3)) }, model: smallConv4, tasks: images), .transductive),
                      (MetaCase(name: "Conv-4, running statistics", learner: { ANIL(inner: try InnerLoop(steps: 2, learningRate: 0.3)) }, model: smallConv4, tasks: images), .inference),
                      (MetaCase(name: "residual network", learner: { ANIL(inner: try InnerLoop(steps: 2, learningRate: 0.3)) }, model: smallResidualNetwork, tasks: images), .transductive)])
    func anilOnFeaturesIsANILOnTheWholeModel(_ c: MetaCase, _ normalization: Normalization) throws {
        let model = try c.model(), learner = try #require(try c.learner() as? ANIL)
        let whole = ANIL(inner: learner.inner, precomputesFeatures: false)
        var random = RandomSource(seed: 8)
        let task = try c.tasks().sample(&random)
        var meta = learner.initialMetaParameters(for: model, seed: 3)
        for i in meta.indices { meta[i] += random.normal() * 0.05 }
        let onFeatures = Workspace(model: model), onModel = Workspace(model: model)
        let state = model.stateLayout.entries.flatMap { e in (0 ..< e.range.count).map { _ in 1 + 0.1 * random.normal() } }
        for workspace in [onFeatures, onModel] { workspace.normalization = normalization; workspace.state = state }
        #expect(learner.runsOnFeatures(onFeatures) && !whole.runsOnFeatures(onModel))

        var fast: [Float] = [], slow: [Float] = []
        let a = try learner.metaGradient(meta, task: task, workspace: onFeatures, into: &fast)
        let b = try whole.metaGradient(meta, task: task, workspace: onModel, into: &slow)
        #expect(fast.count == slow.count && abs(a.loss - b.loss) <= 1e-5 * abs(b.loss))
        #expect(relativeError(fast.map(Double.init), slow.map(Double.init)) < 1e-4, "\(c.name)")
        let body = try model.split(headLayers: 1).body.parameterCount
        #expect(slow[..<body].contains { $0 != 0 }, "the body's meta-gradient should not vanish here")

        #expect(abs(try learner.metaLoss(meta, task: task, workspace: onFeatures).loss - whole.metaLoss(meta, task: task, workspace: onModel).loss) <= 1e-5 * abs(b.loss))
        let curves = (try learner.adaptationCurve(meta, task: task, steps: 4, workspace: onFeatures),
                      try whole.adaptationCurve(meta, task: task, steps: 4, workspace: onModel))
        #expect(curves.0.count == 5 && zip(curves.0, curves.1).allSatisfy { abs($0.loss - $1.loss) <= 1e-5 * abs($1.loss) && $0.accuracy == $1.accuracy })
        let predictions = (try learner.predict(meta, support: task.support, queries: task.query.inputs, steps: 2, workspace: onFeatures),
                           try whole.predict(meta, support: task.support, queries: task.query.inputs, steps: 2, workspace: onModel))
        #expect(predictions.0.shape == predictions.1.shape)
        #expect(relativeError(predictions.0.scalars.map(Double.init), predictions.1.scalars.map(Double.init)) < 1e-5)
    }

    @Test func reptileMovesTowardsTheAdaptedParameters() throws {
        let model = try tanhMLP(), inner = try InnerLoop(steps: 3, learningRate: 0.05)
        var random = RandomSource(seed: 6)
        let task = try SinusoidTasks(shots: 5).sample(&random)
        let workspace = Workspace(model: model)
        let theta = model.initialParameters(seed: 1)
        var direction: [Float] = []
        _ = try Reptile(inner: inner).metaGradient(theta, task: task, workspace: workspace, into: &direction)
        let adapted = try Reptile(inner: inner).adapt(theta, support: task.support, steps: 3, workspace: workspace)
        #expect(zip(zip(theta, adapted), direction).allSatisfy { abs($0.0 - $0.1 - $1) < 1e-6 })
    }

    /// With Adam as the inner optimiser, the direction is θ − θ_K for Adam's θ_K, and the adaptation curve
    /// follows the same Adam trajectory.
    @Test func reptileWithAnAdamInnerLoop() throws {
        let model = try tanhMLP(), inner = try InnerLoop(steps: 3, learningRate: 0.01)
        var random = RandomSource(seed: 7)
        let task = try SinusoidTasks(shots: 5).sample(&random)
        let workspace = Workspace(model: model)
        let theta = model.initialParameters(seed: 1)
        var direction: [Float] = [], sgdDirection: [Float] = []
        _ = try Reptile(inner: inner, innerOptimizer: .adam).metaGradient(theta, task: task, workspace: workspace, into: &direction)
        _ = try Reptile(inner: inner).metaGradient(theta, task: task, workspace: workspace, into: &sgdDirection)
        var expected = theta, adam = try Adam(learningRate: 0.01), g: [Float] = []
        for _ in 0 ..< 3 {
            try workspace.gradient(at: expected, on: task.support, into: &g)
            adam.step(&expected, gradient: g)
        }
        #expect(zip(zip(theta, expected), direction).allSatisfy { $0.0 - $0.1 == $1 })
        #expect(direction != sgdDirection)
        let curve = try Reptile(inner: inner, innerOptimizer: .adam).adaptationCurve(theta, task: task, steps: 3, workspace: workspace)
        let final = try workspace.loss(at: expected, on: task.query)
        #expect(curve.count == 4 && curve[3] == final)
    }

    /// Inner mini-batches (Nichol et al.'s few-shot runs): each step takes the next `innerBatch` samples of a
    /// shuffle of the support set seeded by the task, so 4 steps of 5 from 20 samples see each one once, and the
    /// direction is θ − θ_K for Adam with β1 = 0 on exactly those batches; another task seed, other batches.
    @Test func reptileWithInnerMiniBatches() throws {
        let model = try tanhMLP(), inner = try InnerLoop(steps: 4, learningRate: 0.01)
        var random = RandomSource(seed: 8)
        var task = try SinusoidTasks(shots: 20).sample(&random)
        task.seed = 99
        let workspace = Workspace(model: model), theta = model.initialParameters(seed: 1)
        let reptile = try Reptile(inner: inner, innerOptimizer: .adam, innerBatch: 5, innerBeta1: 0)
        var direction: [Float] = [], other: [Float] = [], whole: [Float] = []
        _ = try reptile.metaGradient(theta, task: task, workspace: workspace, into: &direction)
        var batches = try MiniBatches(task.support, size: 5, seed: 99), seen: [Float] = []
        var expected = theta, adam = try Adam(learningRate: 0.01, beta1: 0), g: [Float] = []
        for _ in 0 ..< 4 {
            let batch = try batches.next()
            #expect(batch.count == 5)
            seen += batch.inputs.scalars
            try workspace.gradient(at: expected, on: batch, into: &g)
            adam.step(&expected, gradient: g)
        }
        #expect(zip(zip(theta, expected), direction).allSatisfy { $0.0 - $0.1 == $1 })
        #expect(seen.sorted() == task.support.inputs.scalars.sorted() && seen != task.support.inputs.scalars)
        _ = try Reptile(inner: inner, innerOptimizer: .adam, innerBeta1: 0).metaGradient(theta, task: task, workspace: workspace, into: &whole)
        task.seed = 100
        _ = try reptile.metaGradient(theta, task: task, workspace: workspace, into: &other)
        #expect(other != direction && whole != direction)
    }

    /// The carried inner Adam (Nichol et al.'s code): from the zero state a task adapts as with a fresh Adam and
    /// reports the state it ends with after θ's direction; from a carried state it continues that Adam, and so
    /// do evaluation's curve and predictions. The trainer moves θ by the tasks' mean direction and sets the state
    /// to their mean end state. A state no Adam can have is refused.
    @Test func reptileCarriesItsInnerAdam() throws {
        let model = try tanhMLP(), inner = try InnerLoop(steps: 3, learningRate: 0.01), p = model.parameterCount
        var random = RandomSource(seed: 9)
        let task = try SinusoidTasks(shots: 5).sample(&random)
        let workspace = Workspace(model: model)
        let carried = try Reptile(inner: inner, innerOptimizer: .adam, innerBeta1: 0, innerState: .persistent)
        let fresh = try Reptile(inner: inner, innerOptimizer: .adam, innerBeta1: 0)
        var meta = carried.initialMetaParameters(for: model, seed: 1)
        #expect(meta.count == 3 * p + 1 && carried.extraMetaParameters(for: model).map(\.range.count) == [p, p, 1])
        #expect(carried.carriedState(for: model) == p ..< 3 * p + 1 && fresh.carriedState(for: model) == nil)
        let theta = Array(meta[0 ..< p])

        /// θ − θ_3 and Adam's end state for three steps of `adam` from θ.
        func expected(_ start: Adam) throws -> [Float] {
            var adam = start, phi = theta, g: [Float] = []
            for _ in 0 ..< 3 {
                try workspace.gradient(at: phi, on: task.support, into: &g)
                adam.step(&phi, gradient: g)
            }
            return zip(theta, phi).map { $0 - $1 } + adam.state.vectors["m"]! + adam.state.vectors["v"]! + [Float(adam.state.step)]
        }
        var fromZero: [Float] = [], freshDirection: [Float] = []
        _ = try carried.metaGradient(meta, task: task, workspace: workspace, into: &fromZero)
        _ = try fresh.metaGradient(theta, task: task, workspace: workspace, into: &freshDirection)
        #expect(fromZero == (try expected(Adam(learningRate: 0.01, beta1: 0))))
        #expect(Array(fromZero[0 ..< p]) == freshDirection && fromZero[3 * p] == 3)

        // From the state that task ended with, the next task continues the same Adam.
        meta.replaceSubrange(p ..< 3 * p + 1, with: fromZero[p...])
        var start = try Adam(learningRate: 0.01, beta1: 0)
        try start.restore(step: 3, vectors: ["m": Array(fromZero[p ..< 2 * p]), "v": Array(fromZero[2 * p ..< 3 * p])], parameterCount: p)
        var continued: [Float] = []
        _ = try carried.metaGradient(meta, task: task, workspace: workspace, into: &continued)
        #expect(continued == (try expected(start)) && continued[3 * p] == 6)
        #expect(Array(continued[0 ..< p]) != freshDirection, "the carried second moments must change the steps")
        let curve = try carried.adaptationCurve(meta, task: task, steps: 3, workspace: workspace)
        let freshCurve = try fresh.adaptationCurve(theta, task: task, steps: 3, workspace: workspace)
        var phi = theta
        phi.add(Array(continued[0 ..< p]), scaledBy: -1)
        #expect(curve[3] == (try workspace.loss(at: phi, on: task.query)) && curve[3] != freshCurve[3])
        let predicted = try carried.predict(meta, support: task.support, queries: task.query.inputs, steps: 3, workspace: workspace)
        #expect(predicted == (try workspace.predict(at: phi, inputs: task.query.inputs)))

        // The trainer: θ moves by the mean direction (SGD at rate 1), the state becomes the mean end state.
        var trainer = try MetaTrainer(learner: carried, model: model, tasks: SinusoidTasks(shots: 5), optimizer: SGD(learningRate: 1),
                                      metaBatch: 3, seed: 4)
        let before = trainer.metaParameters
        var mean = [Float](repeating: 0, count: 3 * p + 1)
        for index in 0 ..< 3 {
            var r = MetaTrainer.taskRandom(seed: 4, iteration: 0, index: index), g: [Float] = []
            _ = try carried.metaGradient(before, task: try trainer.tasks.seededSample(&r), workspace: workspace, into: &g)
            mean.add(g, scaledBy: 1)
        }
        mean.scale(by: 1 / Float(3))
        let result = try trainer.step()
        let after = trainer.metaParameters
        #expect(zip(after[0 ..< p], zip(before[0 ..< p], mean[0 ..< p])).allSatisfy { abs($0 - ($1.0 - $1.1)) <= 1e-6 })
        #expect(Array(after[p...]) == Array(mean[p...]) && after[3 * p] == 3)
        #expect(abs(result.gradientNorm - Array(mean[0 ..< p]).norm) <= 1e-6 * result.gradientNorm, "the state is not part of the gradient's norm")

        // A state no Adam reaches is refused, naming it.
        for (index, value) in [(3 * p, Float(2.5)), (3 * p, -1), (2 * p, -1), (p, .nan)] {
            var bad = meta
            bad[index] = value
            #expect(throws: MetaCoreError.self) { try carried.metaGradient(bad, task: task, workspace: workspace, into: &continued) }
        }
        #expect(throws: MetaCoreError.self) { try Reptile(inner: inner, innerState: .persistent) }
    }

    /// Nichol et al.'s transductive evaluation: the queries' outputs from one batch of support and queries, which
    /// through batch-norm differ from the queries' own batch.
    @Test func reptilePredictsWithTheSupportInTheBatch() throws {
        let model = try smallConv4(), inner = try InnerLoop(steps: 2, learningRate: 0.01)
        var random = RandomSource(seed: 10)
        let task = try images().sample(&random)
        let workspace = Workspace(model: model), theta = model.initialParameters(seed: 2)
        let alone = try Reptile(inner: inner, innerOptimizer: .adam), together = try Reptile(inner: inner, innerOptimizer: .adam, predictsWithSupport: true)
        let phi = try alone.adapted(theta, support: task.support, seed: 0, steps: 2, query: nil, workspace: workspace).0
        let both = try task.support.concatenated(with: task.query)
        let all = try workspace.predict(at: phi, inputs: both.inputs), q = task.query.count, width = 3
        let predicted = try together.predict(theta, support: task.support, queries: task.query.inputs, steps: 2, workspace: workspace)
        #expect(predicted.shape == [q, width] && predicted.scalars == Array(all.scalars.suffix(q * width)))
        #expect(predicted != (try alone.predict(theta, support: task.support, queries: task.query.inputs, steps: 2, workspace: workspace)))
        // Evaluation's curve measures the queries the same way: cross-entropy and correct answers on their rows.
        let curve = try together.adaptationCurve(theta, task: task, steps: 2, workspace: workspace)
        guard case .labels(let labels) = task.query.targets else { Issue.record("classification task expected"); return }
        var loss = 0.0, correct = 0
        for (row, label) in labels.enumerated() {
            let logits = predicted.scalars[row * width ..< (row + 1) * width].map(Double.init), top = logits.max()!
            loss += log(logits.reduce(0) { $0 + exp($1 - top) }) + top - logits[Int(label)]
            if logits.firstIndex(of: top) == Int(label) { correct += 1 }
        }
        #expect(curve.count == 3 && curve[2].correct == correct && abs(curve[2].loss - loss / Double(q)) < 1e-5)
        #expect(curve[2] != (try alone.adaptationCurve(theta, task: task, steps: 2, workspace: workspace))[2])
    }

    /// A batch that runs past the end of a shuffle takes the rest of it and the start of the next one; a batch
    /// as large as the set (or 0) is the set.
    @Test func miniBatchesCarryAcrossReshuffles() throws {
        let values = (0 ..< 7).map(Float.init)
        let set = try Batch(inputs: Tensor(shape: [7, 1], scalars: values), values: Tensor(shape: [7, 1], scalars: values))
        var batches = try MiniBatches(set, size: 3, seed: 5)
        let drawn = try (0 ..< 4).flatMap { _ in try batches.next().inputs.scalars }
        #expect(drawn.count == 12 && Array(drawn[0 ..< 7]).sorted() == values && Array(drawn[7...]).count == Set(drawn[7...]).count)
        for size in [0, 7, 9] {
            var whole = try MiniBatches(set, size: size, seed: 5)
            #expect(try whole.next() == set)
        }
        #expect(throws: MetaCoreError.self) { try Reptile(inner: InnerLoop(steps: 1, learningRate: 0.1), innerBatch: -1) }
    }
}
