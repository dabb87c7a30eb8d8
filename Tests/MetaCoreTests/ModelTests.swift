import Testing
@testable import MetaCore

@Suite("Models, batches and their errors")
struct ModelTests {
    @Test func builtInNetworksHaveTheStandardShapesAndParameterCounts() throws {
        let mlp = try Model.mlp([1, 40, 40, 1])
        #expect(mlp.parameterCount == 1 * 40 + 40 + 40 * 40 + 40 + 40 + 1)
        #expect(mlp.layout.entries.map(\.name) == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"])

        let conv4 = try Model.conv4(classes: 5)
        #expect(conv4.shapes[4] == [64, 14, 14] && conv4.shapes[16] == [64, 1, 1] && conv4.outputShape == [5])
        // 4 conv blocks (weights, bias, BN γ, β) and a 64 -> 5 head: the familiar 113k-parameter Conv-4.
        let blocks = (64 * 9 + 64 + 128) + 3 * (64 * 64 * 9 + 64 + 128)
        #expect(conv4.parameterCount == blocks + 64 * 5 + 5)
        #expect(conv4.stateLayout.count == 4 * 128)

        let embedding = try Model.conv4(classes: 0, inputShape: [3, 84, 84], channels: 32)
        #expect(embedding.outputShape == [32 * 5 * 5])

        // OML's Omniglot network on 84x84: maps of 41, 39, 19, 17, 8 and 3, so 2,304 features, then 1,024 and 1,000.
        let oml = try Model.stridedConv(classes: 1000, inputShape: [1, 84, 84])
        #expect([0, 2, 4, 6, 8, 10].map { oml.shapes[$0 + 1] } == [[256, 41, 41], [256, 39, 39], [256, 19, 19], [256, 17, 17], [256, 8, 8], [256, 3, 3]])
        #expect(oml.layers.filter { $0 is Linear }.count == 2 && !oml.layers.contains { $0 is BatchNorm || $0 is MaxPool })
        #expect(oml.parameterCount == (256 * 9 + 256) + 5 * (256 * 256 * 9 + 256) + (2304 * 1024 + 1024) + (1024 * 1000 + 1000))
        #expect(try Model.stridedConv(classes: 0, inputShape: [1, 84, 84], hidden: [64]).outputShape == [64])
    }

    /// Finn's MAML network on 28x28 Omniglot (`--pool mean`): four stride-2 convolutions with padding 1 (maps of
    /// 14, 7, 4 and 2), the mean of each channel of the last map into the output layer. Its features are the
    /// channel means of the flattened network's, on the same convolution parameters (a mutation that pools the
    /// wrong way or flattens fails).
    @Test func stridedConvolutionsPoolTheLastMapByChannelMeans() throws {
        let body = (strides: [2, 2, 2, 2], padding: 1, hidden: [Int](), batchNorm: true)
        let finn = try Model.stridedConv(classes: 20, inputShape: [1, 28, 28], channels: 64, strides: body.strides,
                                         padding: body.padding, hidden: body.hidden, batchNorm: body.batchNorm, pooling: .mean)
        #expect(finn.layers.indices.filter { finn.layers[$0] is Conv2d }.map { finn.shapes[$0 + 1] } == [[64, 14, 14], [64, 7, 7], [64, 4, 4], [64, 2, 2]])
        #expect(finn.parameterCount == (64 * 9 + 64 + 128) + 3 * (64 * 64 * 9 + 64 + 128) + (64 * 20 + 20))
        #expect(try Model.stridedConv(classes: 20, inputShape: [1, 28, 28], channels: 64, strides: body.strides, padding: body.padding,
                                      hidden: body.hidden, batchNorm: body.batchNorm).parameterCount == finn.parameterCount + 3 * 64 * 20)

        let pooled = try Model.stridedConv(classes: 0, inputShape: [1, 9, 9], channels: 3, strides: [2, 1], padding: 1, hidden: [],
                                           batchNorm: true, pooling: .mean)
        let flat = try Model.stridedConv(classes: 0, inputShape: [1, 9, 9], channels: 3, strides: [2, 1], padding: 1, hidden: [],
                                         batchNorm: true)
        #expect(pooled.outputShape == [3] && flat.outputShape == [3 * 5 * 5] && pooled.parameterCount == flat.parameterCount)
        var random = RandomSource(seed: 7)
        let theta = pooled.initialParameters(seed: 3)
        let images = try Tensor(shape: [4, 1, 9, 9], scalars: (0 ..< 4 * 81).map { _ in Float(random.normal()) })
        let features = try Workspace(model: pooled).predict(at: theta, inputs: images).scalars
        let maps = try Workspace(model: flat).predict(at: theta, inputs: images).scalars
        for i in 0 ..< 4 * 3 {
            let mean = maps[i * 25 ..< (i + 1) * 25].reduce(0, +) / 25
            #expect(abs(features[i] - mean) <= 1e-5 * max(1, abs(mean)))
        }
    }

    /// Batch-norm without a learned scale (`--batch-norm-scale false`, Finn's MAML network) is batch-norm with
    /// γ fixed at 1: each has `bias` alone, and loss, outputs, gradient and H·v equal bit for bit those of the
    /// scaled network at γ = 1 with γ's entries left out — fused and unfused, in every normalisation mode.
    @Test func batchNormWithoutAScaleIsTheScaledOneAtOne() throws {
        let shifted = try Model.conv4(classes: 3, inputShape: [2, 14, 14], channels: 4, blocks: 3, batchNormScale: false)
        let scaled = try Model.conv4(classes: 3, inputShape: [2, 14, 14], channels: 4, blocks: 3)
        #expect(shifted.layout.entries.filter { $0.name.hasSuffix("weight") }.count == 4, "the convolutions' and the head's")
        #expect(shifted.parameterCount == scaled.parameterCount - 3 * 4)
        let gammas = Set(scaled.layout.entries.filter { scaled.nodes[$0.layer].layer is BatchNorm && $0.name.hasSuffix("weight") }.flatMap(\.range))
        let kept = (0 ..< scaled.parameterCount).filter { !gammas.contains($0) }
        var random = RandomSource(seed: 11)
        let batch = random.batch(for: shifted, count: 5, classification: true)
        let theta = generalParameters(shifted, seed: 4), v = random.normals(shifted.parameterCount)
        var thetaScaled = [Float](repeating: 1, count: scaled.parameterCount), vScaled = [Float](repeating: 0, count: scaled.parameterCount)
        for (i, k) in kept.enumerated() { thetaScaled[k] = theta[i]; vScaled[k] = v[i] }
        for normalization in [Normalization.transductive, .training(momentum: 0.1), .inference] {
            for fused in [true, false] {
                var results: [[Float]] = []
                for (model, point, direction) in [(shifted, theta, v), (scaled, thetaScaled, vScaled)] {
                    let workspace = Workspace(model: model)
                    workspace.normalization = normalization
                    workspace.fusesLayers = fused
                    var hv: [Float] = [], gradient: [Float] = []
                    let outputs = try workspace.predict(at: point, inputs: batch.inputs).scalars
                    let value = try workspace.hessianVectorProduct(at: point, on: batch, direction: direction, into: &hv, gradient: &gradient)
                    let ours = model.parameterCount == scaled.parameterCount ? kept : Array(0 ..< model.parameterCount)
                    results.append([Float(value.loss)] + outputs + ours.map { gradient[$0] } + ours.map { hv[$0] } + workspace.state)
                }
                #expect(results[0] == results[1], "\(normalization), fused \(fused)")
            }
        }
    }

    /// Conv-4 pools before its ReLU (a quarter of the values to rectify): loss, gradient and H·v are bit for
    /// bit those of the textbook order, ReLU then pooling — on odd-sized maps and with negative windows.
    @Test func conv4PoolsBeforeReLUWithTheSameDerivatives() throws {
        let model = try Model.conv4(classes: 3, inputShape: [2, 14, 14], channels: 4, blocks: 3)
        var layers: [any Layer] = []
        var inChannels = 2
        for _ in 0 ..< 3 {
            layers += [try Conv2d(inChannels, 4, kernel: 3, padding: 1), try BatchNorm(4), ReLU(), try MaxPool(2)]
            inChannels = 4
        }
        let textbook = try Model(inputShape: [2, 14, 14], layers: layers + [Flatten(), try Linear(4, 3)])
        #expect(model.layers.map { "\(type(of: $0))" } != textbook.layers.map { "\(type(of: $0))" })
        #expect(model.layout.entries.map(\.name) == textbook.layout.entries.map(\.name))
        var random = RandomSource(seed: 8)
        let batch = random.batch(for: model, count: 5, classification: true)
        let theta = model.initialParameters(seed: 3), v = random.normals(model.parameterCount)
        var results: [[Float]] = []
        for m in [model, textbook] {
            var hv: [Float] = [], gradient: [Float] = []
            let value = try Workspace(model: m).hessianVectorProduct(at: theta, on: batch, direction: v, into: &hv, gradient: &gradient)
            results.append([Float(value.loss)] + gradient + hv)
        }
        #expect(results[0] == results[1])
    }

    @Test func initialisationIsDeterministicPerSeed() throws {
        let model = try Model.conv4(classes: 5, channels: 8)
        #expect(model.initialParameters(seed: 1) == model.initialParameters(seed: 1))
        #expect(model.initialParameters(seed: 1) != model.initialParameters(seed: 2))
        // Within PyTorch's bound for the first convolution: 1/sqrt(1*3*3).
        let first = try model.layout.tensor(named: "0.weight", in: model.initialParameters(seed: 1))
        #expect(first.scalars.allSatisfy { abs($0) <= 1 / 3 } && Set(first.scalars).count == first.count)
    }

    @Test func predictionIsTheForwardPass() throws {
        let model = try Model(inputShape: [2], layers: [Linear(2, 1)])
        let workspace = Workspace(model: model)
        // weight [1, 2] = (2, -1), bias 0.5
        let outputs = try workspace.predict(at: [2, -1, 0.5], inputs: Tensor(shape: [2, 2], scalars: [1, 1, 3, 0]))
        #expect(outputs == (try Tensor(shape: [2, 1], scalars: [1.5, 6.5])))
    }

    @Test func aWorkspaceServesBatchesOfDifferentSizes() throws {
        let model = try Model.conv4(classes: 3, inputShape: [1, 8, 8], channels: 4, blocks: 2)
        let workspace = Workspace(model: model)
        let theta = model.initialParameters(seed: 0)
        var random = RandomSource(seed: 1)
        var g1: [Float] = [], g2: [Float] = []
        let small = random.batch(for: model, count: 3, classification: true)
        let large = random.batch(for: model, count: 9, classification: true)
        try workspace.gradient(at: theta, on: small, into: &g1)
        try workspace.gradient(at: theta, on: large, into: &g2)
        let fresh = Workspace(model: model)
        var g3: [Float] = []
        try fresh.gradient(at: theta, on: small, into: &g3)
        try workspace.gradient(at: theta, on: small, into: &g2)
        #expect(g2 == g3)
    }

    // MARK: Bad input gets a clear MetaCoreError

    func expectError(_ kind: MetaCoreError.Kind, mentioning text: String, _ body: () throws -> Void) {
        do {
            try body()
            Issue.record("expected a \(kind) error mentioning '\(text)'")
        } catch let error as MetaCoreError {
            #expect(error.kind == kind)
            #expect(error.message.contains(text), "message was: \(error.message)")
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test func badInputIsReportedNotCrashed() throws {
        let model = try Model.mlp([2, 4, 3])
        let workspace = Workspace(model: model)
        let theta = model.initialParameters(seed: 0)
        let inputs = try Tensor(shape: [2, 2], scalars: [1, 2, 3, 4])
        let batch = try Batch(inputs: inputs, labels: [0, 2])
        var g: [Float] = []

        expectError(.shapeMismatch, mentioning: "parameter vector has 5 entries; the model has 27") {
            try workspace.gradient(at: Array(theta[0 ..< 5]), on: batch, into: &g)
        }
        expectError(.shapeMismatch, mentioning: "direction vector has 1 entries") {
            try workspace.hessianVectorProduct(at: theta, on: batch, direction: [1], into: &g)
        }
        expectError(.shapeMismatch, mentioning: "batch samples are 3 but the model takes 2") {
            _ = try workspace.loss(at: theta, on: Batch(inputs: Tensor(shape: [1, 3], scalars: [1, 2, 3]), labels: [0]))
        }
        expectError(.emptyBatch, mentioning: "empty") {
            _ = try Batch(inputs: Tensor(shape: [0, 2], scalars: []), labels: [])
        }
        expectError(.invalidLabel, mentioning: "label 3 is out of range for a model with 3 outputs") {
            _ = try workspace.loss(at: theta, on: Batch(inputs: inputs, labels: [0, 3]))
        }
        expectError(.invalidLabel, mentioning: "label -1 is negative") {
            _ = try Batch(inputs: inputs, labels: [0, -1])
        }
        expectError(.shapeMismatch, mentioning: "2 inputs but 1 labels") {
            _ = try Batch(inputs: inputs, labels: [0])
        }
        expectError(.shapeMismatch, mentioning: "regression targets are 1 per sample but the model outputs 3") {
            _ = try workspace.loss(at: theta, on: Batch(inputs: inputs, values: Tensor(shape: [2, 1], scalars: [0, 0])))
        }
        expectError(.shapeMismatch, mentioning: "needs 6 scalars, got 4") {
            _ = try Tensor(shape: [2, 3], scalars: [1, 2, 3, 4])
        }
        expectError(.shapeMismatch, mentioning: "workspace state has 1 entries") {
            let bn = Workspace(model: try Model(inputShape: [2], layers: [BatchNorm(2)]))
            bn.state = [0]
            _ = try bn.loss(at: [1, 1, 0, 0], on: Batch(inputs: inputs, labels: [0, 1]))
        }
        expectError(.shapeMismatch, mentioning: "inputs are 3 per sample but the model takes 2") {
            _ = try workspace.predict(at: theta, inputs: Tensor(shape: [1, 3], scalars: [1, 2, 3]))
        }
        expectError(.unknownName, mentioning: "no parameter named '9.weight'") {
            _ = try model.layout.tensor(named: "9.weight", in: theta)
        }
    }

    @Test func layersThatDoNotFitAreNamed() {
        expectError(.shapeMismatch, mentioning: "layer 1 (Linear): Linear(5, 2) expects 5 features per sample, got 4") {
            _ = try Model(inputShape: [3], layers: [Linear(3, 4), Linear(5, 2)])
        }
        expectError(.shapeMismatch, mentioning: "does not fit a 2x2 image") {
            _ = try Model(inputShape: [1, 2, 2], layers: [Conv2d(1, 1, kernel: 5)])
        }
        expectError(.shapeMismatch, mentioning: "Conv-4 takes CxHxW images") {
            _ = try Model.conv4(classes: 5, inputShape: [784])
        }
        expectError(.invalidArgument, mentioning: "Linear needs positive sizes") {
            _ = try Model.mlp([1, 0, 1])
        }
        expectError(.shapeMismatch, mentioning: "MaxPool(2) expects CxHxW images at least 2x2") {
            _ = try Model.conv4(classes: 5, inputShape: [1, 8, 8], blocks: 4)
        }
        expectError(.shapeMismatch, mentioning: "does not fit a 1x1 image") {
            _ = try Model.stridedConv(classes: 5, inputShape: [1, 28, 28])   // 28 → 13 → 11 → 5 → 3 → 1 → nothing
        }
        expectError(.invalidArgument, mentioning: "at least one stride") {
            _ = try Model.stridedConv(classes: 5, inputShape: [1, 28, 28], strides: [])
        }
    }
}
