/// A network whose parameters live in one flat `[Float]` vector: a chain of layers, or a graph of layers and
/// operations (``Graph``).
///
/// A `Model` is an immutable description: its nodes, the per-sample shape of every value flowing between them,
/// and the ``ParameterLayout`` giving each named tensor's place in the flat parameter vector (and a second
/// layout for non-trainable state such as BatchNorm's running statistics). It holds no parameters itself —
/// meta-learning evaluates one architecture at many parameter vectors — and no buffers: passes run in a
/// ``Workspace``.
///
/// ```swift
/// let model = try Model.mlp([1, 40, 40, 1])
/// var theta = model.initialParameters(seed: 0)
/// let workspace = Workspace(model: model)
/// var gradient = [Float](repeating: 0, count: model.parameterCount)
/// let loss = try workspace.gradient(at: theta, on: batch, into: &gradient)
/// ```
///
/// Values are numbered: the model's inputs first, then each node's output in node order, so that in a chain
/// of layers value `l` is layer `l`'s input and value `l + 1` its output.
public struct Model: Sendable {
    /// What a node computes: a ``Layer`` of one value, or an ``Operation`` of several.
    public enum Step: Sendable {
        case layer(any Layer)
        case operation(any Operation)

        /// The layer or operation's type, for messages and summaries.
        public var type: Any.Type {
            switch self { case .layer(let l): Swift.type(of: l); case .operation(let o): Swift.type(of: o) }
        }
        public var parameterShapes: [(name: String, shape: [Int])] {
            switch self { case .layer(let l): l.parameterShapes; case .operation(let o): o.parameterShapes }
        }
        public var stateShapes: [(name: String, shape: [Int], initial: Float)] {
            switch self { case .layer(let l): l.stateShapes; case .operation(let o): o.stateShapes }
        }
        public var backwardReads: BackwardReads {
            switch self { case .layer(let l): l.backwardReads; case .operation(let o): o.backwardReads }
        }
        func outputShape(for inputs: [[Int]]) throws -> [Int] {
            switch self {
            case .layer(let l):
                guard inputs.count == 1 else { throw MetaCoreError.shape("a layer reads one value, got \(inputs.count)") }
                return try l.outputShape(for: inputs[0])
            case .operation(let o): return try o.outputShape(for: inputs)
            }
        }
        func initialize(_ parameters: UnsafeMutableBufferPointer<Float>, using random: inout RandomSource) {
            switch self {
            case .layer(let l): l.initialize(parameters, using: &random)
            case .operation(let o): o.initialize(parameters, using: &random)
            }
        }
        func memory(batch: Int, inputs: [[Int]], threads: Int) -> LayerMemory {
            switch self {
            case .layer(let l): l.memory(batch: batch, input: inputs[0], threads: threads)
            case .operation(let o): o.memory(batch: batch, inputs: inputs, threads: threads)
            }
        }
    }

    /// One node of the model.
    public struct Node: Sendable {
        public let name: String
        public let step: Step
        /// The values it reads (see ``Model``'s numbering).
        public let inputs: [Int]
        /// The node whose parameters (and state) it uses: itself, or the node it is tied to.
        public let owner: Int

        /// The node's layer, if it is one.
        public var layer: (any Layer)? { if case .layer(let l) = step { l } else { nil } }
    }

    public let nodes: [Node]
    /// Per-sample shapes of the model's inputs.
    public let inputShapes: [[Int]]
    /// Per-sample shape of what the model takes: its input's shape, or `[total]` for a model of several
    /// inputs, which takes them packed per sample (input 0's values, then input 1's, ...).
    public let inputShape: [Int]
    /// Per-sample shape of every value: `shapes[0] == inputShape` for a one-input model.
    public let shapes: [[Int]]
    /// The value the model outputs.
    public let output: Int
    /// Where each parameter tensor sits in the flat parameter vector.
    public let layout: ParameterLayout
    /// Where each state tensor (BatchNorm running statistics) sits in the flat state vector.
    public let stateLayout: ParameterLayout
    /// Independent groups the model's batches are made of (``ModelStack``): 1 for a model of its own. With
    /// more, a batch is that many equal blocks of samples and the loss is the sum of the blocks' losses, each
    /// averaged over its block.
    public internal(set) var groups = 1

    /// Composes `layers` into a chain, checking that each accepts the previous one's output; throws naming the
    /// first layer that does not fit.
    public init(inputShape: [Int], layers: [any Layer]) throws {
        guard !layers.isEmpty else { throw MetaCoreError.argument("a model needs at least one layer") }
        try Self.checkInput(inputShape, "model input")
        var shapes = [inputShape]
        for (index, layer) in layers.enumerated() {
            do {
                shapes.append(try layer.outputShape(for: shapes[index]))
            } catch let error as MetaCoreError {
                throw MetaCoreError(error.kind, "layer \(index) (\(type(of: layer))): \(error.message)")
            }
        }
        let nodes = layers.enumerated().map { Node(name: "\(type(of: $1))#\($0)", step: .layer($1), inputs: [$0], owner: $0) }
        self.init(inputShapes: [inputShape], nodes: nodes, shapes: shapes, output: layers.count)
    }

    /// The model of `graph` whose output is `output`. Throws, naming the nodes involved, if a node reads a
    /// value the graph does not have, the nodes form a cycle, a node's inputs do not fit it, an input or a
    /// node's output is never used, or a tied node's parameters differ from its owner's.
    ///
    /// Nodes run in the order they were declared where their inputs allow; parameter names are
    /// `"<node index>.<tensor>"` in that order, as for a chain of layers.
    public init(_ graph: Graph, output: Graph.Value) throws {
        let declarations = graph.declarations, inputs = graph.inputs
        guard !declarations.isEmpty else { throw MetaCoreError.argument("a model needs at least one node") }
        guard !inputs.isEmpty else { throw MetaCoreError.argument("the graph has no input") }
        var index: [String: Int] = [:]   // inputs -1 - i, declarations i
        for (i, input) in inputs.enumerated() {
            guard index.updateValue(-1 - i, forKey: input.name) == nil else { throw MetaCoreError.argument("two inputs are named '\(input.name)'") }
            try Self.checkInput(input.shape, "input '\(input.name)'")
        }
        func named(_ d: Graph.Declaration) -> String { "node '\(d.name)' (\(d.step.type))" }
        for (i, d) in declarations.enumerated() {
            guard index.updateValue(i, forKey: d.name) == nil else {
                throw MetaCoreError.argument("two nodes or inputs are named '\(d.name)'")
            }
        }
        for d in declarations {
            for name in d.inputs + (d.tiedTo.map { [$0] } ?? []) where index[name] == nil {
                throw MetaCoreError.argument("\(named(d)) reads '\(name)', which is neither an input nor a node of the graph")
            }
            if let tied = d.tiedTo, index[tied]! < 0 {
                throw MetaCoreError.argument("\(named(d)) is tied to '\(tied)', an input; a node can only be tied to a node")
            }
        }
        guard let outputIndex = index[output.name], outputIndex >= 0 else {
            throw MetaCoreError.argument("the output '\(output.name)' is not a node of the graph")
        }

        // Order the nodes: each after the nodes it reads, otherwise in declaration order.
        let dependencies = declarations.map { $0.inputs.compactMap { index[$0]! >= 0 ? index[$0]! : nil } }
        var order: [Int] = [], placed = [Bool](repeating: false, count: declarations.count)
        while order.count < declarations.count {
            guard let next = declarations.indices.first(where: { !placed[$0] && dependencies[$0].allSatisfy { placed[$0] } }) else {
                // Every unplaced node waits for another unplaced one: walk back until a node repeats.
                var path = [declarations.indices.first { !placed[$0] }!]
                while true {
                    let waiting = dependencies[path.last!].first { !placed[$0] }!
                    if let start = path.firstIndex(of: waiting) {
                        let cycle = (path[start...] + [waiting]).map { "'\(declarations[$0].name)'" }
                        throw MetaCoreError.argument("the graph has a cycle: \(cycle.reversed().joined(separator: " -> ")) (each node reads the one before it)")
                    }
                    path.append(waiting)
                }
            }
            placed[next] = true
            order.append(next)
        }
        var position = [Int](repeating: 0, count: declarations.count)
        for (p, d) in order.enumerated() { position[d] = p }
        func value(_ name: String) -> Int { let i = index[name]!; return i < 0 ? -1 - i : inputs.count + position[i] }

        var shapes = inputs.map(\.shape), nodes: [Node] = []
        for d in order.map({ declarations[$0] }) {
            let reads = d.inputs.map(value)
            let owner = d.tiedTo.map { nodes[value($0) - inputs.count].owner } ?? nodes.count
            if owner != nodes.count {
                let ownerStep = nodes[owner].step
                guard ownerStep.parameterShapes.map(\.shape) == d.step.parameterShapes.map(\.shape)
                        && ownerStep.parameterShapes.map(\.name) == d.step.parameterShapes.map(\.name),
                      ownerStep.stateShapes.map(\.shape) == d.step.stateShapes.map(\.shape) else {
                    func tensors(_ step: Step) -> String {
                        step.parameterShapes.isEmpty ? "none" : step.parameterShapes.map { "\($0.name) \(describe($0.shape))" }.joined(separator: ", ")
                    }
                    throw MetaCoreError.shape("\(named(d)) is tied to node '\(nodes[owner].name)' (\(ownerStep.type)), but its parameters are \(tensors(d.step)) and that node's are \(tensors(ownerStep))")
                }
            }
            do {
                shapes.append(try d.step.outputShape(for: reads.map { shapes[$0] }))
            } catch let error as MetaCoreError {
                let given = zip(d.inputs, reads).map { "'\($0)' \(describe(shapes[$1]))" }.joined(separator: ", ")
                throw MetaCoreError(error.kind, "\(named(d)) on \(given.isEmpty ? "no inputs" : given): \(error.message)")
            }
            nodes.append(Node(name: d.name, step: d.step, inputs: reads, owner: owner))
        }
        var uses = [Int](repeating: 0, count: shapes.count)
        for node in nodes { for v in node.inputs { uses[v] += 1 } }
        let outputValue = value(output.name)
        if let unused = inputs.indices.first(where: { uses[$0] == 0 }) {
            throw MetaCoreError.argument("input '\(inputs[unused].name)' is never used")
        }
        if let unused = nodes.indices.first(where: { uses[inputs.count + $0] == 0 && inputs.count + $0 != outputValue }) {
            throw MetaCoreError.argument("the output of node '\(nodes[unused].name)' (\(nodes[unused].step.type)) is never used; the model's output is '\(output.name)'")
        }
        self.init(inputShapes: inputs.map(\.shape), nodes: nodes, shapes: shapes, output: outputValue)
    }

    /// The model of checked nodes (in an order where each reads only earlier values).
    private init(inputShapes: [[Int]], nodes: [Node], shapes: [[Int]], output: Int) {
        self.nodes = nodes
        self.inputShapes = inputShapes
        self.inputShape = inputShapes.count == 1 ? inputShapes[0] : [inputShapes.map { $0.reduce(1, *) }.reduce(0, +)]
        self.shapes = shapes
        self.output = output
        self.layout = ParameterLayout(layers: nodes.indices.map { nodes[$0].owner == $0 ? nodes[$0].step.parameterShapes : [] })
        self.stateLayout = ParameterLayout(layers: nodes.indices.map {
            nodes[$0].owner == $0 ? nodes[$0].step.stateShapes.map { ($0.name, $0.shape) } : []
        })
    }

    private static func checkInput(_ shape: [Int], _ what: String) throws {
        guard !shape.isEmpty, shape.allSatisfy({ $0 > 0 }) else {
            throw MetaCoreError.shape("\(what) shape must have positive dimensions, got \(describe(shape))")
        }
    }

    /// The layers of the model's nodes, in order: for a chain of layers, the chain.
    public var layers: [any Layer] { nodes.compactMap(\.layer) }
    /// Per-sample shape of the output (e.g. `[classes]`).
    public var outputShape: [Int] { shapes[output] }
    /// Length of the flat parameter vector.
    public var parameterCount: Int { layout.count }
    /// The value node `index` produces.
    public func value(ofNode index: Int) -> Int { inputShapes.count + index }

    /// A deterministic initialisation: the same seed gives the same vector on every machine.
    /// Each node draws from its own stream, so adding a node does not change the others' values.
    public func initialParameters(seed: UInt64) -> [Float] {
        var parameters = [Float](repeating: 0, count: layout.count)
        let root = RandomSource(seed: seed)
        parameters.withUnsafeMutableBufferPointer { all in
            for (index, node) in nodes.enumerated() where node.owner == index {
                var random = root.fork(UInt64(index))
                node.step.initialize(UnsafeMutableBufferPointer(rebasing: all[parameterRange(ofLayer: index)]), using: &random)
            }
        }
        return parameters
    }

    /// The initial non-trainable state (running mean 0 and variance 1 for BatchNorm).
    public func initialState() -> [Float] {
        nodes.indices.flatMap { index in
            nodes[index].owner != index ? [] : nodes[index].step.stateShapes.flatMap { [Float](repeating: $0.initial, count: $0.shape.reduce(1, *)) }
        }
    }

    /// The slice of the flat parameter vector that belongs to node (layer) `index`; a tied node's is empty (it
    /// uses its owner's).
    public func parameterRange(ofLayer index: Int) -> Range<Int> { layout.layerRanges[index] }

    /// The slice of the flat state vector that belongs to node (layer) `index`.
    public func stateRange(ofLayer index: Int) -> Range<Int> { stateLayout.layerRanges[index] }

    /// Where the head of `layers` layers with parameters starts: the index of its first node. The head is the
    /// last `layers` nodes with parameters (and every parameter-free node between them), a chain of layers
    /// after one value of the body; the body before it must keep at least one node with parameters, so that
    /// there is a representation to meta-learn.
    func headStart(layers: Int) throws -> Int {
        let parametrised = nodes.indices.filter { !parameterRange(ofLayer: $0).isEmpty }
        guard layers >= 1, layers <= parametrised.count else {
            throw MetaCoreError.argument("a head of \(layers) layers with parameters needs \(layers) such layers; the model has \(parametrised.count)")
        }
        guard layers < parametrised.count else {
            throw MetaCoreError.argument("a head of \(layers) layers with parameters would leave no representation to meta-learn; the model has \(parametrised.count) layers with parameters")
        }
        let cut = parametrised[parametrised.count - layers]
        let chain = (cut ..< nodes.count).allSatisfy { j in
            nodes[j].layer != nil && nodes[j].inputs == [value(ofNode: j - 1)] && nodes[j].owner >= cut
        } && !nodes[..<cut].contains { $0.inputs.contains(value(ofNode: cut - 1)) } && output == value(ofNode: nodes.count - 1)
        guard chain else {
            throw MetaCoreError.argument("the last \(layers) layers with parameters (from node '\(nodes[cut].name)') are not a chain of layers after one value of the model, so they cannot be split off as a head")
        }
        return cut
    }

    /// The parameters of the head of `layers` layers with parameters (see ``split(headLayers:)``): what ANIL
    /// adapts in its inner loop and OML's prediction network. A suffix of the parameter vector.
    public func head(layers: Int = 1) throws -> Range<Int> {
        parameterRange(ofLayer: try headStart(layers: layers)).lowerBound ..< parameterCount
    }

    /// The model cut before the last `headLayers` layers with parameters: a body (the representation) and a
    /// head (the prediction network) whose parameter vectors are the two consecutive pieces of this model's,
    /// `θ[..<body.parameterCount]` and `θ[body.parameterCount...]` (the latter is ``head(layers:)``). Running the
    /// head on the body's outputs is running this model; a learner that adapts only the head can then work on
    /// precomputed features.
    public func split(headLayers: Int) throws -> (body: Model, head: Model) {
        let cut = try headStart(layers: headLayers)
        let body = Model(inputShapes: inputShapes, nodes: Array(nodes[..<cut]), shapes: Array(shapes[...value(ofNode: cut - 1)]),
                         output: value(ofNode: cut - 1))
        return (body, try Model(inputShape: body.outputShape, layers: nodes[cut...].map { $0.layer! }))
    }

    /// Multiply-adds per sample of a forward pass through the convolutions, linear maps and matrix products,
    /// the work that dominates (elementwise operations, normalisations and pooling are not counted).
    public var multiplyAdds: Int {
        nodes.indices.reduce(0) { total, index in
            let node = nodes[index], output = shapes[value(ofNode: index)]
            switch node.step {
            case .layer(let conv as Conv2d): return total + output.reduce(1, *) * conv.inChannels * conv.kernel * conv.kernel
            case .layer(let linear as Linear): return total + linear.inputs * linear.outputs
            case .operation(let product as MatrixProduct):
                let a = shapes[node.inputs[0]]
                return total + output.reduce(1, *) * (product.transposeA ? a[0] : a[1])
            default: return total
            }
        }
    }

    /// One line per node: its name and type, what it reads (for a graph), its output shape and parameter count.
    public var summary: String {
        let chain = inputShapes.count == 1 && nodes.indices.allSatisfy { nodes[$0].inputs == [$0] && nodes[$0].owner == $0 }
        func valueName(_ v: Int) -> String { v < inputShapes.count ? "input\(v == 0 ? "" : "\(v)")" : nodes[v - inputShapes.count].name }
        var lines = inputShapes.indices.map { "\(valueName($0)) \(describe(inputShapes[$0]))" }
        for (index, node) in nodes.enumerated() {
            let count = parameterRange(ofLayer: index).count
            let reads = chain ? "" : " '\(node.name)'(\(node.inputs.map { "'\(valueName($0))'" }.joined(separator: ", ")))"
            let tied = node.owner == index ? "" : "  (tied to '\(nodes[node.owner].name)')"
            lines.append("\(index): \(node.step.type)\(reads) -> \(describe(shapes[value(ofNode: index)]))"
                         + (count > 0 ? "  (\(count) parameters)" : "") + tied)
        }
        lines.append("total \(parameterCount) parameters")
        return lines.joined(separator: "\n")
    }
}

// MARK: - The standard meta-learning networks

extension Model {
    /// Elementwise nonlinearity for the builders.
    public enum Activation: String, Sendable, CaseIterable {
        case relu, tanh, sigmoid
        /// LeakyReLU with slope 0.1 (ResNet-12's).
        case leakyRelu = "leaky-relu"
        func layer() -> any Layer {
            switch self {
            case .relu: return ReLU()
            case .tanh: return Tanh()
            case .sigmoid: return Sigmoid()
            case .leakyRelu: return try! LeakyReLU(slope: 0.1)
            }
        }
    }

    /// A fully connected network: `sizes = [1, 40, 40, 1]` is the MLP of MAML's sinusoid experiments
    /// (Finn et al. 2017). The activation follows every layer but the last.
    public static func mlp(_ sizes: [Int], activation: Activation = .relu, initialization: Initialization = .pytorch) throws -> Model {
        guard sizes.count >= 2 else { throw MetaCoreError.argument("an MLP needs at least input and output sizes, got \(sizes)") }
        var layers: [any Layer] = []
        for i in 0 ..< sizes.count - 1 {
            layers.append(try Linear(sizes[i], sizes[i + 1], initialization: initialization))
            if i < sizes.count - 2 { layers.append(activation.layer()) }
        }
        return try Model(inputShape: [sizes[0]], layers: layers)
    }

    /// "Conv-4", the standard few-shot image network (Vinyals et al. 2016; Finn et al. 2017): `blocks` blocks
    /// of 3x3 convolution (padding 1) with `channels` filters, batch normalisation, ReLU (or `activation`) and
    /// 2x2 max-pooling, then a linear head to `classes` outputs. On 28x28x1 Omniglot images the head sees 64
    /// features. With ReLU the pooling comes first in each block: the same function and derivatives, with the
    /// ReLU on a quarter of the values (the layer indices of the parameters, and so checkpoints, are unchanged).
    ///
    /// - Parameters:
    ///   - classes: outputs of the linear head; `0` leaves the head off (an embedding network, as
    ///     Prototypical and Matching Networks use).
    ///   - inputShape: per-image `[channels, height, width]`.
    ///   - channels: filters of every convolution.
    ///   - blocks: convolution blocks; each halves the image side.
    ///   - batchNorm: batch normalisation after each convolution.
    ///   - batchNormScale: whether batch-norm learns a scale γ as well as a shift β (``BatchNorm/learnsScale``).
    ///   - activation: the nonlinearity of each block.
    ///   - initialization: of the convolutions and the head (PyTorch's default, or Kaiming-normal for a network
    ///     without batch-norm).
    public static func conv4(classes: Int, inputShape: [Int] = [1, 28, 28], channels: Int = 64, blocks: Int = 4,
                             batchNorm: Bool = true, batchNormScale: Bool = true, activation: Activation = .relu,
                             initialization: Initialization = .pytorch) throws -> Model {
        guard inputShape.count == 3 else {
            throw MetaCoreError.shape("Conv-4 takes CxHxW images, got input shape \(describe(inputShape))")
        }
        guard blocks > 0, channels > 0, classes >= 0 else {
            throw MetaCoreError.argument("Conv-4 needs blocks > 0, channels > 0 and classes >= 0, got \(blocks), \(channels), \(classes)")
        }
        var layers: [any Layer] = []
        var inChannels = inputShape[0]
        for _ in 0 ..< blocks {
            layers.append(try Conv2d(inChannels, channels, kernel: 3, padding: 1, initialization: initialization))
            if batchNorm { layers.append(try BatchNorm(channels, learnsScale: batchNormScale)) }
            if activation == .relu {
                // max(relu(x)) = relu(max(x)), and the derivatives agree value for value (ReLU keeps or zeroes,
                // and a window whose maximum is ≤ 0 passes no gradient either way): pooling first runs the
                // ReLU on a quarter of the values.
                layers.append(try MaxPool(2))
                layers.append(activation.layer())
            } else {
                // tanh, sigmoid and LeakyReLU's slope may round distinct inputs to one value: pool after them
                layers.append(activation.layer())
                layers.append(try MaxPool(2))
            }
            inChannels = channels
        }
        layers.append(Flatten())
        let body = try Model(inputShape: inputShape, layers: layers)
        guard classes > 0 else { return body }
        return try Model(inputShape: inputShape, layers: layers + [try Linear(body.outputShape[0], classes, initialization: initialization)])
    }

    /// Convolutions that downsample by their strides rather than by pooling, then fully connected layers —
    /// OML's Omniglot network (Javed & White 2019) with the defaults: six 3x3 convolutions of 256 filters with
    /// strides 2, 1, 2, 1, 2, 2, no padding, ReLU and no batch-norm (on 84x84 images the last map is 3x3, 2,304
    /// features), a hidden layer of 1,024 and a linear output. OML's prediction network is the last two
    /// linear layers (`--head-layers 2`).
    ///
    /// - Parameters:
    ///   - classes: outputs of the last linear layer; `0` leaves it off (the hidden layers end the embedding).
    ///   - inputShape: per-image `[channels, height, width]`.
    ///   - channels: filters of every convolution.
    ///   - strides: one convolution per entry, with that stride.
    ///   - kernel, padding: of every convolution.
    ///   - hidden: widths of the fully connected layers between the convolutions and the output.
    ///   - batchNorm: batch normalisation after each convolution.
    ///   - batchNormScale: whether batch-norm learns a scale γ as well as a shift β (``BatchNorm/learnsScale``).
    ///   - pooling: the last map flattened (OML's, iMAML's and Reptile's code), or the mean of each channel
    ///     (Finn's MAML code: `reduce_mean` over the 2x2 map of 28x28 Omniglot).
    ///   - activation: after every convolution and hidden layer.
    ///   - initialization: of every layer.
    public static func stridedConv(classes: Int, inputShape: [Int], channels: Int = 256, strides: [Int] = [2, 1, 2, 1, 2, 2],
                                   kernel: Int = 3, padding: Int = 0, hidden: [Int] = [1024], batchNorm: Bool = false,
                                   batchNormScale: Bool = true, pooling: Pooling = .flatten, activation: Activation = .relu,
                                   initialization: Initialization = .kaimingNormal) throws -> Model {
        guard inputShape.count == 3 else {
            throw MetaCoreError.shape("the strided convolutional network takes CxHxW images, got input shape \(describe(inputShape))")
        }
        guard !strides.isEmpty, classes >= 0, hidden.allSatisfy({ $0 > 0 }) else {
            throw MetaCoreError.argument("the strided convolutional network needs at least one stride, classes >= 0 and positive hidden widths, got strides \(strides), classes \(classes), hidden \(hidden)")
        }
        var layers: [any Layer] = []
        var inChannels = inputShape[0]
        for stride in strides {
            layers.append(try Conv2d(inChannels, channels, kernel: kernel, stride: stride, padding: padding, initialization: initialization))
            if batchNorm { layers.append(try BatchNorm(channels, learnsScale: batchNormScale)) }
            layers.append(activation.layer())
            inChannels = channels
        }
        layers.append(pooling == .mean ? GlobalPool(.mean) : Flatten())
        var features = try Model(inputShape: inputShape, layers: layers).outputShape[0]   // throws if a map shrinks away
        for width in hidden {
            layers.append(try Linear(features, width, initialization: initialization))
            layers.append(activation.layer())
            features = width
        }
        if classes > 0 { layers.append(try Linear(features, classes, initialization: initialization)) }
        return try Model(inputShape: inputShape, layers: layers)
    }
}
