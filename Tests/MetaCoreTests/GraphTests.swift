import Testing
@testable import MetaCore

// MARK: - Graphs for the derivative checks

/// A value read by two nodes: h feeds a linear map and, beside it, the weighted sum of the two.
let fanOutGraph = { @Sendable () throws -> Model in
    let g = Graph()
    let x = g.input([4])
    let h = g.apply(Tanh(), to: g.apply(try Linear(4, 5), to: x))
    let a = g.apply(try Linear(5, 5), to: h)
    return try Model(g, output: g.apply(try Linear(5, 3), to: g.apply(try WeightedSum([1, -0.5]), to: [a, h])))
}

/// Gates multiplied together, and a value multiplied by itself (both inputs one value).
let productGraph = { @Sendable () throws -> Model in
    let g = Graph()
    let h = g.apply(try Linear(4, 6), to: g.input([4]))
    let gated = g.product(g.apply(Sigmoid(), to: h), g.apply(Tanh(), to: h))
    return try Model(g, output: g.apply(try Linear(6, 3), to: g.sum(gated, g.product(h, h))))
}

/// Two inputs, a vector and an image, each through its own layers, concatenated.
let twoInputGraph = { @Sendable () throws -> Model in
    let g = Graph()
    let v = g.input([3], name: "vector"), image = g.input([2, 3, 3], name: "image")
    let a = g.apply(Tanh(), to: g.apply(try Linear(3, 4), to: v))
    let b = g.apply(Flatten(), to: g.apply(Tanh(), to: g.apply(try Conv2d(2, 2, kernel: 3, padding: 1), to: image)))
    let joined = g.concatenate([a, b, v])
    return try Model(g, output: g.apply(try Linear(4 + 18 + 3, 3), to: joined))
}

/// Images concatenated along their channels.
let channelConcatenation = { @Sendable () throws -> Model in
    let g = Graph()
    let x = g.input([1, 4, 4])
    let a = g.apply(try Conv2d(1, 2, kernel: 3, padding: 1), to: x), b = g.apply(try Conv2d(1, 3, kernel: 1), to: x)
    let joined = g.apply(Tanh(), to: g.concatenate([a, b]))
    return try Model(g, output: g.apply(try Linear(5, 3), to: g.apply(GlobalPool(.mean), to: joined)))
}

/// Self-attention over three tokens: softmax(Q Kᵀ) V, with Q, K, V linear in the input, and a second product
/// with the first operand transposed.
let attentionGraph = { @Sendable () throws -> Model in
    let g = Graph()
    let x = g.input([6])
    func matrix(_ rows: Int, _ columns: Int) throws -> Graph.Value {
        g.apply(try Reshape([rows, columns]), to: g.apply(try Linear(6, rows * columns), to: x))
    }
    let q = try matrix(3, 4), k = try matrix(2, 4), v = try matrix(2, 5)
    let weights = g.apply(Softmax(), to: g.matrixProduct(q, k, transposeB: true))   // [3, 2]
    let read = g.matrixProduct(weights, v)                                           // [3, 5]
    let pooled = g.matrixProduct(weights, read, transposeA: true)                    // [2, 5]
    return try Model(g, output: g.apply(try Linear(10, 3), to: g.apply(Flatten(), to: pooled)))
}

/// A linear map applied twice (tied), to a value and to a function of its own output.
let tiedGraph = { @Sendable () throws -> Model in
    let g = Graph()
    let x = g.input([4])
    let first = g.apply(try Linear(4, 4), to: x, name: "shared")
    let second = g.apply(try Linear(4, 4), to: g.apply(Tanh(), to: first), tiedTo: first)
    return try Model(g, output: g.apply(try Linear(4, 3), to: g.apply(Tanh(), to: second)))
}

/// A residual block with smooth activations: two 3x3 convolutions with batch-norm on one path, a 1x1
/// convolution with batch-norm as the shortcut, their sum.
let residualBlock = { @Sendable () throws -> Model in
    let g = Graph()
    let x = g.input([2, 5, 5])
    let path = g.chain([try Conv2d(2, 3, kernel: 3, padding: 1), try BatchNorm(3), Tanh(), try Conv2d(3, 3, kernel: 3, padding: 1), try BatchNorm(3)], from: x)
    let shortcut = g.chain([try Conv2d(2, 3, kernel: 1), try BatchNorm(3)], from: x)
    let block = g.apply(Tanh(), to: g.sum(path, shortcut))
    return try Model(g, output: g.apply(try Linear(3, 3), to: g.apply(GlobalPool(.mean), to: block)))
}

/// The memory module: a read by cosine similarity with a key from the query, a write (erase and add) at the
/// read's weights, and a second read of the written memory with a key from the query and the first read.
let memoryGraph = { @Sendable () throws -> Model in
    let (slots, width, features) = (4, 3, 5)
    let g = Graph()
    let memory = g.input([slots, width], name: "memory"), query = g.input([features], name: "query")
    let key = g.apply(try Linear(features, width), to: query)
    let first = try g.cosineRead(memory: memory, key: key, slots: slots, width: width, sharpness: 3)
    let erase = g.apply(Sigmoid(), to: g.apply(try Linear(features, width), to: query))
    let add = g.apply(Tanh(), to: g.apply(try Linear(features, width), to: query))
    let written = try g.write(memory: memory, weights: first.weights, erase: erase, add: add, slots: slots, width: width)
    let key2 = g.apply(try Linear(features + width, width), to: g.concatenate([query, first.read]))
    let second = try g.cosineRead(memory: written, key: key2, slots: slots, width: width, sharpness: 3)
    return try Model(g, output: g.apply(try Linear(width + features, 3), to: g.concatenate([second.read, query])))
}

let graphDerivativeCases: [DerivativeCase] = [
    DerivativeCase(name: "graph: LSTM with its cell written as nodes, 4 steps", make: { try Model.lstm(input: 2, hidden: 3, steps: 4, outputs: 3, fusedCell: false) }),
    DerivativeCase(name: "graph: a value feeding two nodes (weighted sum)", make: fanOutGraph),
    DerivativeCase(name: "graph: elementwise products, x ⊙ x", make: productGraph),
    DerivativeCase(name: "graph: two inputs concatenated", make: twoInputGraph),
    DerivativeCase(name: "graph: images concatenated along channels", make: channelConcatenation),
    DerivativeCase(name: "graph: attention, products of activations", make: attentionGraph),
    DerivativeCase(name: "graph: a tied linear map used twice", make: tiedGraph),
    // The convolutions' biases before batch-norm have a gradient of nearly zero: a longer step keeps float
    // rounding out of its finite differences.
    DerivativeCase(name: "graph: residual block with batch-norm", make: residualBlock, step: 3e-3),
    DerivativeCase(name: "graph: ResNet-12 at width 2-3 with batch-norm, LeakyReLU, max-pool", make: {
        try Model.resnet12(classes: 3, inputShape: [3, 8, 8], widths: [2, 3])
    }),
    DerivativeCase(name: "graph: ResNet-12 on 1x12x12, flattened features", make: {
        try Model.resnet12(classes: 3, inputShape: [1, 12, 12], widths: [2, 2], pooling: .flatten)
    }),
    DerivativeCase(name: "graph: LSTM unrolled 5 steps, tied cell", make: { try Model.lstm(input: 3, hidden: 4, steps: 5, outputs: 3) }),
    DerivativeCase(name: "graph: LSTM, MSE on the hidden state", make: { try Model.lstm(input: 2, hidden: 3, steps: 3) },
                   classification: false),
    DerivativeCase(name: "graph: memory read, write and read again", make: memoryGraph),
    DerivativeCase(name: "graph: a slice of features", make: {
        try Model(inputShape: [4], layers: [Linear(4, 6), Tanh(), Slice(1 ..< 4), Linear(3, 3)])
    }),
]

// MARK: - Graph construction

@Suite("Model graphs")
struct GraphTests {
    /// A chain of layers described as a graph is the same model: nodes, names, shapes and passes.
    @Test func chainAsGraphIsTheSequentialModel() throws {
        let layers: [any Layer] = [try Linear(3, 4), Tanh(), try Linear(4, 2)]
        let g = Graph()
        let output = g.chain(layers, from: g.input([3]))
        let model = try Model(g, output: output)
        let chain = try Model(inputShape: [3], layers: layers)
        #expect(model.layout == chain.layout && model.shapes == chain.shapes && model.output == chain.output)
        var random = RandomSource(seed: 3)
        let batch = random.batch(for: chain, count: 4, classification: true)
        let theta = chain.initialParameters(seed: 1)
        #expect(try Workspace(model: model).loss(at: theta, on: batch).loss == (try Workspace(model: chain).loss(at: theta, on: batch).loss))
    }

    /// The parameters of ResNet-12 at MetaOptNet's widths, the shapes through it, and the head of ANIL.
    @Test func resnet12Shapes() throws {
        let model = try Model.resnet12(classes: 5)
        #expect(model.outputShape == [5])
        let features = model.shapes[model.output - 1]
        #expect(features == [640])
        // 3x3 convolutions, 1x1 shortcuts, batch-norm's γ and β, biases, and the 640x5 head.
        let widths = [64, 160, 320, 640], inputs = [3, 64, 160, 320]
        let convolutions = zip(inputs, widths).map { i, w in (i * 9 + 1) * w + 2 * (w * 9 + 1) * w + (i + 1) * w + 4 * 2 * w }.reduce(0, +)
        #expect(model.parameterCount == convolutions + 640 * 5 + 5)
        #expect(try model.head(layers: 1) == model.parameterCount - 3205 ..< model.parameterCount)
        let small = try Model.resnet12(classes: 0, inputShape: [1, 28, 28])
        #expect(small.outputShape == [640])
        let flat = try Model.resnet12(classes: 0, pooling: .flatten)
        #expect(flat.outputShape == [640 * 5 * 5])
    }

    /// The nodes of an unrolled LSTM use one parameter block: its size does not grow with the steps.
    @Test func lstmTiesItsCell() throws {
        let short = try Model.lstm(input: 3, hidden: 4, steps: 1), long = try Model.lstm(input: 3, hidden: 4, steps: 7)
        #expect(short.parameterCount == (3 + 4 + 1) * 16 && long.parameterCount == short.parameterCount)
        #expect(long.layout.entries.map(\.name) == short.layout.entries.map(\.name))
        #expect(long.nodes.filter { $0.owner != long.nodes.firstIndex { n in n.name == "cell" }! && $0.name.hasPrefix("cell") }.isEmpty)
    }

    /// What a bad graph is told, naming the nodes involved.
    @Test(arguments: [
        ("a cycle", { @Sendable () throws -> Model in
            let g = Graph()
            let x = g.input([3])
            g.declare("a", .operation(try WeightedSum([1, 1])), inputs: [x, Graph.Value("b")])
            g.declare("b", .layer(Tanh()), inputs: [Graph.Value("a")])
            return try Model(g, output: Graph.Value("b"))
        }, "the graph has a cycle: 'a' -> 'b' -> 'a' (each node reads the one before it)"),
        ("shapes that do not meet", { @Sendable () throws -> Model in
            let g = Graph()
            let x = g.input([3])
            let a = g.apply(try Linear(3, 4), to: x, name: "wide"), b = g.apply(try Linear(3, 5), to: x, name: "wider")
            return try Model(g, output: g.apply(try WeightedSum([1, 1]), to: [a, b], name: "join"))
        }, "node 'join' (WeightedSum) on 'wide' 4, 'wider' 5: WeightedSum([1.0, 1.0]) needs inputs of one shape, got 4, 5"),
        ("an input never used", { @Sendable () throws -> Model in
            let g = Graph()
            let x = g.input([3], name: "used")
            _ = g.input([2], name: "forgotten")
            return try Model(g, output: g.apply(try Linear(3, 2), to: x))
        }, "input 'forgotten' is never used"),
        ("a value never used", { @Sendable () throws -> Model in
            let g = Graph()
            let x = g.input([3])
            _ = g.apply(try Linear(3, 2), to: x, name: "dangling")
            return try Model(g, output: g.apply(try Linear(3, 2), to: x, name: "out"))
        }, "the output of node 'dangling' (Linear) is never used; the model's output is 'out'"),
        ("a tied weight of another shape", { @Sendable () throws -> Model in
            let g = Graph()
            let x = g.input([3])
            let first = g.apply(try Linear(3, 3), to: x, name: "first")
            return try Model(g, output: g.apply(try Linear(3, 2), to: first, name: "second", tiedTo: first))
        }, "node 'second' (Linear) is tied to node 'first' (Linear), but its parameters are weight 2x3, bias 2 and that node's are weight 3x3, bias 3"),
        ("an unknown value", { @Sendable () throws -> Model in
            let g = Graph()
            _ = g.input([3])
            return try Model(g, output: g.apply(Tanh(), to: Graph.Value("nowhere"), name: "t"))
        }, "node 't' (Tanh) reads 'nowhere', which is neither an input nor a node of the graph"),
        ("a layer given two inputs", { @Sendable () throws -> Model in
            let g = Graph()
            let x = g.input([3])
            return try Model(g, output: g.declare("two", .layer(Tanh()), inputs: [x, x]))
        }, "node 'two' (Tanh) on 'input' 3, 'input' 3: a layer reads one value, got 2"),
        ("a matrix product of vectors", { @Sendable () throws -> Model in
            let g = Graph()
            let x = g.input([3])
            return try Model(g, output: g.apply(MatrixProduct(), to: [x, x], name: "scores"))
        }, "node 'scores' (MatrixProduct) on 'input' 3, 'input' 3: MatrixProduct takes two matrices per sample, got 3, 3 (Reshape a vector to 1xN or Nx1)"),
    ] as [(String, @Sendable () throws -> Model, String)])
    func badGraphsAreRejected(_ name: String, _ make: @Sendable () throws -> Model, _ message: String) {
        #expect { _ = try make() } throws: { error in
            let text = (error as? MetaCoreError)?.message ?? "\(error)"
            #expect(text == message, "\(name)")
            return true
        }
    }

    /// ANIL's head split works on a graph whose last layers are a chain, and is refused where they are not.
    @Test func headSplitOfAGraph() throws {
        let model = try Model.resnet12(classes: 3, inputShape: [3, 8, 8], widths: [2, 3])
        let (body, head) = try model.split(headLayers: 1)
        #expect(body.outputShape == [3] && head.parameterCount == 12 && body.parameterCount + 12 == model.parameterCount)
        var random = RandomSource(seed: 5)
        let batch = random.batch(for: model, count: 4, classification: true)
        let theta = generalParameters(model, seed: 2)
        let features = try Workspace(model: body).predict(at: Array(theta[..<body.parameterCount]), inputs: batch.inputs)
        let whole = try Workspace(model: model).predict(at: theta, inputs: batch.inputs)
        let split = try Workspace(model: head).predict(at: Array(theta[body.parameterCount...]), inputs: features)
        #expect(whole.scalars == split.scalars)
        #expect(throws: MetaCoreError.self) { try Model.resnet12(classes: 3, inputShape: [3, 8, 8], widths: [2, 3]).split(headLayers: 2) }
    }
}

// MARK: - Meta-gradients through graphs

/// A convolution, a residual block with a 1x1 shortcut, and stride-2 downsampling, all smooth (see
/// `smallConv4` for why no max-pooling here), with batch-norm.
let smallResidualNetwork = { @Sendable () throws -> Model in
    let g = Graph()
    let stem = g.chain([try Conv2d(1, 3, kernel: 3, padding: 1), try BatchNorm(3), Tanh()], from: g.input([1, 8, 8]))
    let path = g.chain([try Conv2d(3, 4, kernel: 3, padding: 1), try BatchNorm(4), Tanh(), try Conv2d(4, 4, kernel: 3, padding: 1), try BatchNorm(4)], from: stem)
    let shortcut = g.chain([try Conv2d(3, 4, kernel: 1), try BatchNorm(4)], from: stem)
    let block = g.apply(Tanh(), to: g.sum(path, shortcut))
    let features = g.chain([try Conv2d(4, 4, kernel: 3, stride: 2, padding: 1), GlobalPool(.mean), try Linear(4, 3)], from: block)
    return try Model(g, output: features)
}
let sequences = { @Sendable () throws -> any TaskDistribution in try SyntheticImageTasks(ways: 3, shots: 2, queries: 2, inputShape: [5, 3]) }
let smallLSTM = { @Sendable in try Model.lstm(input: 3, hidden: 4, steps: 5, outputs: 3) }

let graphMetaCases: [MetaCase] = [1, 2].flatMap { k in [
    MetaCase(name: "MAML K=\(k), residual network with batch-norm", learner: { MAML(inner: try InnerLoop(steps: k, learningRate: 0.3)) }, model: smallResidualNetwork, tasks: images),
    MetaCase(name: "MAML K=\(k), LSTM unrolled 5 steps", learner: { MAML(inner: try InnerLoop(steps: k, learningRate: 0.3)) }, model: smallLSTM, tasks: sequences),
    MetaCase(name: "Meta-SGD K=\(k), LSTM unrolled 5 steps", learner: { MetaSGD(inner: try InnerLoop(steps: k, learningRate: 0.3)) }, model: smallLSTM, tasks: sequences),
    MetaCase(name: "ANIL K=\(k), residual network", learner: { ANIL(inner: try InnerLoop(steps: k, learningRate: 0.3)) }, model: smallResidualNetwork, tasks: images),
] } + [
    MetaCase(name: "Prototypical Networks, residual embedding", learner: { PrototypicalNetworks() }, model: {
        try smallResidualNetwork().split(headLayers: 1).body
    }, tasks: images),
]

@Suite("Model graphs on several threads")
struct GraphThreadTests {
    /// A graph's layer nodes split their batch as a chain's do: the gradient and H·v agree with one thread's up
    /// to the reassociation of the parts' parameter sums.
    @Test func resnetSplitsItsBatch() throws {
        let model = try Model.resnet12(classes: 3, inputShape: [3, 16, 16], widths: [4, 4])
        var random = RandomSource(seed: 9)
        let batch = random.batch(for: model, count: 64, classification: true)
        let theta = generalParameters(model, seed: 4), v = random.normals(model.parameterCount)
        func products(threads: Int) throws -> ([Float], [Float]) {
            let workspace = Workspace(model: model)
            workspace.threads = threads
            var hv: [Float] = [], gradient: [Float] = []
            try workspace.hessianVectorProduct(at: theta, on: batch, direction: v, into: &hv, gradient: &gradient)
            return (gradient, hv)
        }
        #expect(BatchSplit(batch: 64, outputCount: 4 * 16 * 16, threads: 3).parts == 3)
        let (g1, h1) = try products(threads: 1), (g3, h3) = try products(threads: 3)
        #expect(relativeError(g3.map(Double.init), g1.map(Double.init)) < 1e-5)
        #expect(relativeError(h3.map(Double.init), h1.map(Double.init)) < 1e-4)
    }
}

@Suite("README: Building your own model")
struct BuildingYourOwnModelTests {
    /// The README's LSTM, written out by hand (its cell as nodes), is the model `Model.lstm` builds with its fused
    /// cell: the same parameters, the same outputs.
    @Test func handWrittenLSTMIsTheBuilders() throws {
        let s = Graph()
        let sequence = s.input([10, 8])
        var (h, c) = (s.apply(try Constant(shape: [32]), to: []), s.apply(try Constant(shape: [32]), to: []))
        var cell: Graph.Value? = nil
        for t in 0 ..< 10 {
            let xt = s.apply(try Reshape([8]), to: s.apply(try Slice(t ..< t + 1), to: sequence))
            let gates = s.apply(try Linear(8 + 32, 4 * 32), to: s.concatenate([xt, h]), tiedTo: cell)
            cell = cell ?? gates
            let gate = { (k: Int, f: any Layer) in s.apply(f, to: s.apply(try! Slice(k * 32 ..< (k + 1) * 32), to: gates)) }
            c = s.sum(s.product(gate(1, Sigmoid()), c), s.product(gate(0, Sigmoid()), gate(2, Tanh())))
            h = s.product(gate(3, Sigmoid()), s.apply(Tanh(), to: c))
        }
        let lstm = try Model(s, output: s.apply(try Linear(32, 5), to: h))
        let built = try Model.lstm(input: 8, hidden: 32, steps: 10, outputs: 5)
        #expect(lstm.parameterCount == 5413 && built.parameterCount == 5413)
        #expect(lstm.layout.entries.map(\.shape) == (try Model.lstm(input: 8, hidden: 32, steps: 10, outputs: 5, fusedCell: false)).layout.entries.map(\.shape))
        var random = RandomSource(seed: 8)
        let inputs = try Tensor(shape: [3, 10, 8], scalars: random.normals(240))
        let theta = built.initialParameters(seed: 1)
        let a = try Workspace(model: lstm).predict(at: theta, inputs: inputs).scalars
        let b = try Workspace(model: built).predict(at: theta, inputs: inputs).scalars
        #expect(zip(a, b).allSatisfy { abs($0 - $1) <= 1e-6 * max(1, abs($1)) })
    }
}
