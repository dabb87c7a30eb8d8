import Testing
@testable import MetaCore

/// A lone task's layers split the batch across threads (``BatchSplit``): the loss, gradient and Hessian-vector
/// product must agree with the whole-batch passes (which the derivative tests check by finite differences) up
/// to floating-point reassociation, and a fixed thread count must reproduce them bit for bit.
@Suite("Batch split across threads")
struct BatchSplitTests {
    @Test func partsCoverTheBatchInOrder() {
        for batch in [1, 2, 7, 300, 301] {
            for threads in 1 ... 4 {
                let split = BatchSplit(batch: batch, outputCount: 1 << 16, threads: threads)
                #expect(split.parts == min(batch, threads), "batch \(batch), \(threads) threads: \(split.parts) parts")
                let ranges = (0 ..< split.parts).map(split.range)
                #expect(ranges.first?.lowerBound == 0 && ranges.last?.upperBound == batch)
                #expect(zip(ranges, ranges.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound && !$1.isEmpty })
                #expect(ranges.allSatisfy { $0.count <= split.size })
            }
        }
        // Too little work to be worth dispatching: one part.
        #expect(BatchSplit(batch: 10, outputCount: 40, threads: 4).parts == 1)
    }

    /// Every layer type that splits its samples (Conv2d by im2col and by Winograd, strided Conv2d, ReLU, LeakyReLU, Tanh, Sigmoid, Softmax, L2Normalize, GlobalPool,
    /// MaxPool, Linear), BatchNorm splitting its channels, and passes too small to split (Flatten, a small last
    /// Linear).
    static let models: [(name: String, make: @Sendable () throws -> Model)] = [
        ("Conv-BN-ReLU-pool blocks", {
            try Model(inputShape: [1, 12, 12], layers: [
                Conv2d(1, 8, kernel: 3, padding: 1), BatchNorm(8), ReLU(), MaxPool(2),
                Conv2d(8, 8, kernel: 3, padding: 1), BatchNorm(8), ReLU(), MaxPool(2), Flatten(), Linear(72, 5)])
        }),
        ("strided Conv2d and Tanh", {
            try Model(inputShape: [2, 12, 12], layers: [
                Conv2d(2, 8, kernel: 3, stride: 2, padding: 1), Tanh(), Flatten(), Linear(288, 240), Tanh(), Linear(240, 5)])
        }),
        ("LeakyReLU and Sigmoid", {
            try Model(inputShape: [2, 12, 12], layers: [
                Conv2d(2, 8, kernel: 3, padding: 1), LeakyReLU(slope: 0.1), Flatten(), Linear(1152, 240), Sigmoid(), Linear(240, 5)])
        }),
        ("Softmax, L2Normalize and GlobalPool", {
            try Model(inputShape: [2, 12, 12], layers: [
                Conv2d(2, 240, kernel: 3, padding: 1), GlobalPool(.mean), L2Normalize(), Linear(240, 240), Softmax(), Linear(240, 5)])
        }),
    ]

    @Test(arguments: models.indices)
    func splitPassesAgreeWithWholeBatchPasses(_ index: Int) throws {
        let (name, make) = Self.models[index]
        let model = try make(), batchSize = 301
        var random = RandomSource(seed: 11)
        let batch = random.batch(for: model, count: batchSize, classification: true)
        let theta = model.initialParameters(seed: 2), v = random.normals(model.parameterCount)
        let splitLayers = model.layers.indices.filter {
            !(model.layers[$0] is BatchNorm || model.layers[$0] is Flatten)
                && BatchSplit(batch: batchSize, outputCount: model.shapes[$0 + 1].reduce(1, *), threads: 3).parts == 3
        }
        #expect(splitLayers.count >= 4, "\(name): the test must exercise split passes")

        func passes(threads: Int) throws -> (loss: Double, gradient: [Float], hv: [Float]) {
            let workspace = Workspace(model: model)
            workspace.threads = threads
            var gradient: [Float] = [], hv: [Float] = []
            let value = try workspace.hessianVectorProduct(at: theta, on: batch, direction: v, into: &hv, gradient: &gradient)
            var alone: [Float] = []
            try workspace.gradient(at: theta, on: batch, into: &alone)
            #expect(alone == gradient, "\(name): the gradient pass alone and the one before H·v differ")
            return (value.loss, gradient, hv)
        }
        let whole = try passes(threads: 1)
        for threads in [2, 3] {
            let split = try passes(threads: threads)
            #expect(relativeError(split.loss, whole.loss) < 1e-6, "\(name), \(threads) threads: loss")
            #expect(relativeError(split.gradient.map(Double.init), whole.gradient.map(Double.init)) < 1e-5,
                    "\(name), \(threads) threads: gradient")
            #expect(relativeError(split.hv.map(Double.init), whole.hv.map(Double.init)) < 1e-5, "\(name), \(threads) threads: H·v")
        }
        let again = try passes(threads: 3), once = try passes(threads: 3)
        #expect(again.loss == once.loss && again.gradient == once.gradient && again.hv == once.hv, "\(name): reruns must be bit-identical")
    }

    /// A lone task on a 2-thread runner (a ProtoNet episode) splits its batch; training stays within
    /// reassociation of the single-threaded run and reruns are bit-identical. (SGD, not Adam: Adam scales the
    /// rounding noise of gradients that are exactly zero in theory — conv biases before BatchNorm — to full steps.)
    @Test func aLoneTaskUsesEveryThreadReproducibly() throws {
        func run(threads: Int) throws -> [Float] {
            var trainer = try MetaTrainer(learner: PrototypicalNetworks(),
                                          model: .conv4(classes: 0, inputShape: [1, 12, 12], channels: 8, blocks: 2),
                                          tasks: SyntheticImageTasks(ways: 20, shots: 5, queries: 5, inputShape: [1, 12, 12]),
                                          optimizer: SGD(learningRate: 0.05), metaBatch: 1, seed: 7, threads: threads)
            for _ in 0 ..< 2 { _ = try trainer.step() }
            return trainer.metaParameters
        }
        let one = try run(threads: 1), two = try run(threads: 2)
        #expect(relativeError(one.map(Double.init), two.map(Double.init)) < 1e-5)
        #expect(try run(threads: 2) == two, "a fixed thread count must reproduce training bit for bit")
    }
}
