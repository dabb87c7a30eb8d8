import Testing
@testable import MetaCore

/// Batch-norm, ReLU and 2x2 max-pooling run fused (``LayerFusion``) give the unfused passes' results: the loss,
/// outputs and R-forward to the bit, the gradient and H·v up to the order of the backward passes' sums — on
/// odd-sized maps (a row and column no window covers), negative batch-norm scales (the window's winner is then
/// its smallest input), ties, and every normalisation mode. Exactness against finite differences is the
/// derivative tests' (they run fused, the default).
@Suite("Fused batch-norm, ReLU and max-pooling")
struct FusionTests {
    /// Two blocks, then a head; ReLU before the pool, or after it as in Conv-4. On 7x7 images (7 -> 3 -> 1), or
    /// wide ones (7x37 -> 3x18 -> 1x9): pooled rows of many windows, with an odd last row and column no window covers.
    static func model(poolFirst: Bool = false, wide: Bool = false) throws -> Model {
        func block(_ from: Int, _ to: Int) throws -> [any Layer] {
            let tail: [any Layer] = poolFirst ? [try MaxPool(2), ReLU()] : [ReLU(), try MaxPool(2)]
            return [try Conv2d(from, to, kernel: 3, padding: 1), try BatchNorm(to)] + tail
        }
        return try Model(inputShape: wide ? [2, 7, 37] : [2, 7, 7],
                         layers: try block(2, 4) + block(4, 5) + [Flatten(), Linear(wide ? 45 : 5, 3)])
    }

    /// Parameters with some batch-norm scales negative.
    static func parameters(_ model: Model, seed: UInt64) -> [Float] {
        var theta = model.initialParameters(seed: seed), random = RandomSource(seed: seed + 1)
        for tensor in model.layout.entries where tensor.name.hasSuffix("weight") && tensor.shape.count == 1 {
            for i in tensor.range { theta[i] = random.uniform(-1.5, 1.5) }
        }
        return theta
    }

    struct Passes { let loss: Double, outputs: [Float], gradient: [Float], hv: [Float], state: [Float] }

    static func passes(_ model: Model, fused: Bool, inputLayer: Bool = true, threads: Int = 1, normalization: Normalization,
                       theta: [Float], batch: Batch, v: [Float]) throws -> Passes {
        let workspace = Workspace(model: model)
        workspace.fusesLayers = fused
        workspace.fusesInputLayer = inputLayer
        workspace.threads = threads
        workspace.normalization = normalization
        let outputs = try workspace.predict(at: theta, inputs: batch.inputs).scalars
        var gradient: [Float] = [], hv: [Float] = []
        let loss = try workspace.gradient(at: theta, on: batch, into: &gradient).loss
        _ = try workspace.hessianVectorProduct(at: theta, on: batch, direction: v, into: &hv)
        return Passes(loss: loss, outputs: outputs, gradient: gradient, hv: hv, state: workspace.state)
    }

    static func relativeError(_ a: [Float], _ b: [Float]) -> Double {
        let scale = max(1e-12, b.map { Double(abs($0)) }.max() ?? 0)
        return zip(a, b).map { Double(abs($0 - $1)) }.max()! / scale
    }

    @Test(arguments: [(Normalization.transductive, false, false), (.transductive, true, false), (.training(momentum: 0.1), true, false),
                      (.transductive, false, true), (.training(momentum: 0.1), true, true)])
    func fusedPassesAgreeWithTheUnfused(_ normalization: Normalization, _ poolFirst: Bool, _ wide: Bool) throws {
        let model = try Self.model(poolFirst: poolFirst, wide: wide)
        #expect(LayerFusion.find(in: model).map(\.nodes) == [0 ... 3, 5 ... 7])
        for seed: UInt64 in [1, 2, 3, 4] {
            var random = RandomSource(seed: seed)
            var batch = random.batch(for: model, count: 6, classification: true)
            if seed == 3 {   // coarse inputs: equal values within windows
                batch = try Batch(inputs: Tensor(shape: batch.inputs.shape, scalars: batch.inputs.scalars.map { ($0 * 2).rounded() / 2 }),
                                  targets: batch.targets)
            }
            if seed == 4 {   // flat images (one value per image): away from the edges every window's four values tie
                let size = batch.inputs.scalars.count / 6
                batch = try Batch(inputs: Tensor(shape: batch.inputs.shape, scalars: batch.inputs.scalars.indices.map { batch.inputs.scalars[$0 / size * size] }),
                                  targets: batch.targets)
            }
            let theta = Self.parameters(model, seed: seed), v = random.normals(model.parameterCount)
            let fused = try Self.passes(model, fused: true, normalization: normalization, theta: theta, batch: batch, v: v)
            let plain = try Self.passes(model, fused: false, normalization: normalization, theta: theta, batch: batch, v: v)
            #expect(fused.outputs == plain.outputs && fused.loss == plain.loss && fused.state == plain.state)
            #expect(Self.relativeError(fused.gradient, plain.gradient) < 1e-5, "seed \(seed): gradient")
            #expect(Self.relativeError(fused.hv, plain.hv) < 1e-4, "seed \(seed): H·v")
        }
    }

    /// Inference mode (running statistics) runs unfused, and switching modes or fusion on one workspace
    /// recomputes its layout: the results stay the unfused ones.
    @Test func inferenceModeAndSwitchingBackAndForth() throws {
        let model = try Self.model()
        var random = RandomSource(seed: 9)
        let batch = random.batch(for: model, count: 4, classification: true)
        let theta = Self.parameters(model, seed: 9), v = random.normals(model.parameterCount)
        let plain = try Self.passes(model, fused: false, normalization: .inference, theta: theta, batch: batch, v: v)
        let workspace = Workspace(model: model)
        for (fused, normalization) in [(true, Normalization.inference), (true, .transductive), (false, .transductive), (true, .inference)] {
            workspace.fusesLayers = fused
            workspace.normalization = normalization
            var gradient: [Float] = [], hv: [Float] = []
            _ = try workspace.hessianVectorProduct(at: theta, on: batch, direction: v, into: &hv, gradient: &gradient)
            if normalization == .inference { #expect(gradient == plain.gradient && hv == plain.hv) }
        }
    }

    /// Only a batch-norm whose output the ReLU alone reads, and a ReLU whose output the pool alone reads, fuse.
    @Test func onlyAPrivateChainFuses() throws {
        let graph = Graph()
        let x = graph.input([3, 6, 6])
        let conv = graph.apply(try Conv2d(3, 3, kernel: 3, padding: 1), to: x)
        let norm = graph.apply(try BatchNorm(3), to: conv)
        let pooled = graph.apply(try MaxPool(2), to: graph.apply(ReLU(), to: norm))
        let second = graph.apply(try MaxPool(2), to: graph.apply(ReLU(), to: graph.apply(try BatchNorm(3), to: conv)))
        let joined = graph.sum(pooled, second, graph.apply(try MaxPool(2), to: norm))   // the first batch-norm has two readers
        let model = try Model(graph, output: graph.apply(Flatten(), to: joined))
        #expect(LayerFusion.find(in: model).map(\.nodes) == [4 ... 6])
        var random = RandomSource(seed: 4)
        let batch = random.batch(for: model, count: 3, classification: false)
        let theta = Self.parameters(model, seed: 4), v = random.normals(model.parameterCount)
        let fused = try Self.passes(model, fused: true, normalization: .transductive, theta: theta, batch: batch, v: v)
        let plain = try Self.passes(model, fused: false, normalization: .transductive, theta: theta, batch: batch, v: v)
        #expect(fused.outputs == plain.outputs)
        #expect(Self.relativeError(fused.gradient, plain.gradient) < 1e-5 && Self.relativeError(fused.hv, plain.hv) < 1e-4)
    }

    /// Second-order MAML's meta-gradient on a Conv-4 through fused passes is the unfused one.
    @Test func secondOrderMetaGradientAgrees() throws {
        let model = try Model.conv4(classes: 3, inputShape: [1, 12, 12], channels: 4, blocks: 2)
        var random = RandomSource(seed: 6)
        let task = Task(support: random.batch(for: model, count: 6, classification: true),
                        query: random.batch(for: model, count: 6, classification: true))
        let maml = MAML(inner: try InnerLoop(steps: 2, learningRate: 0.1))
        let theta = Self.parameters(model, seed: 6)
        var gradients: [[Float]] = []
        for fused in [true, false] {
            let workspace = Workspace(model: model)
            workspace.fusesLayers = fused
            workspace.heldPasses = 2
            var gradient: [Float] = []
            _ = try maml.metaGradient(theta, task: task, workspace: workspace, into: &gradient)
            gradients.append(gradient)
        }
        #expect(Self.relativeError(gradients[0], gradients[1]) < 1e-4)
    }

    /// The fused workspace gives batch-norm's and ReLU's outputs no memory: a Conv-4's buffers shrink.
    @Test func fusionSavesMemory() throws {
        let model = try Model.conv4(classes: 5, inputShape: [1, 28, 28], channels: 8, blocks: 4)
        var random = RandomSource(seed: 2)
        let batch = random.batch(for: model, count: 10, classification: true), theta = model.initialParameters(seed: 2)
        let v = random.normals(model.parameterCount)
        var bytes: [Int] = []
        for fused in [true, false] {
            let workspace = Workspace(model: model)
            workspace.fusesLayers = fused
            var hv: [Float] = []
            _ = try workspace.hessianVectorProduct(at: theta, on: batch, direction: v, into: &hv)
            bytes.append(workspace.bufferBytes)
        }
        #expect(Double(bytes[0]) < 0.7 * Double(bytes[1]), "fused \(bytes[0]) bytes, unfused \(bytes[1])")
    }

    // MARK: - The input layer

    /// A model of two blocks, the first a convolution of the input (`channels` channels, `size` x `size`) by a
    /// `kernel` x `kernel` filter bank of six (a full group of four and a partial one), pooling before ReLU as
    /// Conv-4 does.
    static func inputModel(channels: Int, kernel: Int, padding: Int, size: Int, learnsScale: Bool = true) throws -> Model {
        let pooled = (size + 2 * padding - kernel + 1) / 2 / 2
        return try Model(inputShape: [channels, size, size], layers: [
            try Conv2d(channels, 6, kernel: kernel, padding: padding), try BatchNorm(6, learnsScale: learnsScale), try MaxPool(2), ReLU(),
            try Conv2d(6, 4, kernel: 3, padding: 1), try BatchNorm(4), ReLU(), try MaxPool(2), Flatten(), try Linear(4 * pooled * pooled, 3)])
    }

    /// The convolution of the model's input runs inside the fused step, its output never stored
    /// (``ConvolutionBatchNormReLUPool``). On one thread the loss, outputs and running statistics are those of the
    /// same workspace with that convolution run on its own, to the bit (the forward pass recomputes the output by
    /// the same code); the gradient, which the step takes through the Gram matrix of the input's patches, and H·v
    /// agree up to rounding. For one, two and three input channels, 3x3 and 5x5 kernels with and without
    /// padding, maps of odd and even sizes, a batch-norm without a learned scale, ties, and both batch-statistics
    /// modes.
    @Test(arguments: [(1, 3, 1, 9, true), (3, 3, 1, 7, true), (1, 5, 2, 11, false), (2, 3, 0, 10, true)])
    func inputLayerAgreesWithTheConvolutionApart(_ channels: Int, _ kernel: Int, _ padding: Int, _ size: Int, _ learnsScale: Bool) throws {
        let model = try Self.inputModel(channels: channels, kernel: kernel, padding: padding, size: size, learnsScale: learnsScale)
        #expect(LayerFusion.find(in: model).map(\.nodes) == [0 ... 3, 5 ... 7])
        for seed: UInt64 in [1, 2, 3] {
            var random = RandomSource(seed: seed)
            var batch = random.batch(for: model, count: 5, classification: true)
            if seed == 3 {   // coarse inputs: ties within windows
                batch = try Batch(inputs: Tensor(shape: batch.inputs.shape, scalars: batch.inputs.scalars.map { ($0 * 2).rounded() / 2 }),
                                  targets: batch.targets)
            }
            let theta = Self.parameters(model, seed: seed), v = random.normals(model.parameterCount)
            for normalization in [Normalization.transductive, .training(momentum: 0.1)] {
                let fused = try Self.passes(model, fused: true, normalization: normalization, theta: theta, batch: batch, v: v)
                let apart = try Self.passes(model, fused: true, inputLayer: false, normalization: normalization, theta: theta, batch: batch, v: v)
                let same = (outputs: fused.outputs == apart.outputs, loss: fused.loss == apart.loss, state: fused.state == apart.state)
                #expect(same.outputs && same.loss && same.state, "seed \(seed), \(normalization): \(same)")
                #expect(Self.relativeError(fused.gradient, apart.gradient) < 1e-5, "seed \(seed), \(normalization): gradient")
                #expect(Self.relativeError(fused.hv, apart.hv) < 1e-4, "seed \(seed), \(normalization): H·v")
            }
        }
    }

    /// On two threads the fused input layer splits its channels where the unfused convolution splits its samples:
    /// the results are the one-thread unfused ones up to the order of the sums.
    @Test func inputLayerOnTwoThreads() throws {
        let model = try Model.conv4(classes: 5, inputShape: [1, 28, 28], channels: 8, blocks: 2)
        #expect(LayerFusion.find(in: model).first?.nodes.lowerBound == 0)
        var random = RandomSource(seed: 5)
        let batch = random.batch(for: model, count: 12, classification: true)   // 8 x 12 x 784 values: split
        let theta = Self.parameters(model, seed: 5), v = random.normals(model.parameterCount)
        let fused = try Self.passes(model, fused: true, threads: 2, normalization: .transductive, theta: theta, batch: batch, v: v)
        let plain = try Self.passes(model, fused: false, normalization: .transductive, theta: theta, batch: batch, v: v)
        #expect(Self.relativeError(fused.outputs, plain.outputs) < 1e-6)
        #expect(Self.relativeError(fused.gradient, plain.gradient) < 1e-5)
        #expect(Self.relativeError(fused.hv, plain.hv) < 1e-4)
    }

    /// A workspace that differentiates its input runs the input convolution on its own (the fused step computes no
    /// input gradient), and its input gradient is the unfused one.
    @Test func inputGradientLeavesTheConvolutionUnfused() throws {
        let model = try Self.inputModel(channels: 1, kernel: 3, padding: 1, size: 9)
        var random = RandomSource(seed: 7)
        let batch = random.batch(for: model, count: 4, classification: true), theta = Self.parameters(model, seed: 7)
        var gradients: [[Float]] = []
        for fused in [true, false] {
            let workspace = Workspace(model: model)
            workspace.fusesLayers = fused
            workspace.differentiatesInput = true
            var gradient: [Float] = []
            _ = try workspace.gradient(at: theta, on: batch, into: &gradient)
            gradients.append(workspace.inputGradient)
        }
        #expect(gradients[0].count == batch.inputs.scalars.count && gradients[0].contains { $0 != 0 })
        #expect(Self.relativeError(gradients[0], gradients[1]) < 1e-5)
    }

    /// Only a convolution of the model's input by the direct algorithm joins a run: not a strided one, nor one of
    /// four input channels (Winograd's), nor one after another layer.
    @Test func onlyADirectInputConvolutionJoins() throws {
        let strided = try Model(inputShape: [1, 9, 9], layers: [
            try Conv2d(1, 4, kernel: 3, stride: 2, padding: 1), try BatchNorm(4), ReLU(), try MaxPool(2), Flatten(), try Linear(16, 2)])
        let wide = try Model(inputShape: [4, 8, 8], layers: [
            try Conv2d(4, 4, kernel: 3, padding: 1), try BatchNorm(4), ReLU(), try MaxPool(2), Flatten(), try Linear(64, 2)])
        let later = try Model(inputShape: [1, 8, 8], layers: [
            ReLU(), try Conv2d(1, 4, kernel: 3, padding: 1), try BatchNorm(4), ReLU(), try MaxPool(2), Flatten(), try Linear(64, 2)])
        #expect(LayerFusion.find(in: strided).map(\.nodes) == [1 ... 3])
        #expect(LayerFusion.find(in: wide).map(\.nodes) == [1 ... 3])
        #expect(LayerFusion.find(in: later).map(\.nodes) == [2 ... 4])
    }

    /// With the input layer fused, a gradient pass keeps no copy of the first convolution's output: the buffers
    /// shrink by at least its size.
    @Test func inputLayerSavesItsOutput() throws {
        let model = try Model.conv4(classes: 5, inputShape: [1, 28, 28], channels: 8, blocks: 4)
        var random = RandomSource(seed: 3)
        let batch = random.batch(for: model, count: 10, classification: true), theta = model.initialParameters(seed: 3)
        var bytes: [Int] = []
        for inputLayer in [true, false] {
            let workspace = Workspace(model: model)
            workspace.fusesInputLayer = inputLayer
            var gradient: [Float] = []
            _ = try workspace.gradient(at: theta, on: batch, into: &gradient)
            bytes.append(workspace.bufferBytes)
        }
        let output = 10 * 8 * 28 * 28 * MemoryLayout<Float>.stride
        #expect(bytes[0] <= bytes[1] - output, "fused \(bytes[0]) bytes, apart \(bytes[1])")
    }
}
