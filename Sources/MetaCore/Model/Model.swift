/// A sequential network whose parameters live in one flat `[Float]` vector.
///
/// A `Model` is an immutable description: its layers, the per-sample shape flowing between them, and the
/// ``ParameterLayout`` giving each named tensor's place in the flat parameter vector (and a second layout
/// for non-trainable state such as BatchNorm's running statistics). It holds no parameters itself — meta-
/// learning evaluates one architecture at many parameter vectors — and no buffers: passes run in a
/// ``Workspace``.
///
/// ```swift
/// let model = try Model.mlp([1, 40, 40, 1])
/// var theta = model.initialParameters(seed: 0)
/// let workspace = Workspace(model: model)
/// var gradient = [Float](repeating: 0, count: model.parameterCount)
/// let loss = try workspace.gradient(at: theta, on: batch, into: &gradient)
/// ```
public struct Model: Sendable {
    public let layers: [any Layer]
    /// Per-sample shape of the model's input, e.g. `[1, 28, 28]` or `[1]`.
    public let inputShape: [Int]
    /// Per-sample shape before each layer and after the last: `shapes[0] == inputShape`.
    public let shapes: [[Int]]
    /// Where each parameter tensor sits in the flat parameter vector.
    public let layout: ParameterLayout
    /// Where each state tensor (BatchNorm running statistics) sits in the flat state vector.
    public let stateLayout: ParameterLayout

    /// Composes `layers`, checking that each accepts the previous one's output; throws naming the first
    /// layer that does not fit.
    public init(inputShape: [Int], layers: [any Layer]) throws {
        guard !layers.isEmpty else { throw MetaCoreError.argument("a model needs at least one layer") }
        guard !inputShape.isEmpty, inputShape.allSatisfy({ $0 > 0 }) else {
            throw MetaCoreError.shape("model input shape must have positive dimensions, got \(inputShape)")
        }
        var shapes = [inputShape]
        for (index, layer) in layers.enumerated() {
            do {
                shapes.append(try layer.outputShape(for: shapes[index]))
            } catch let error as MetaCoreError {
                throw MetaCoreError(error.kind, "layer \(index) (\(type(of: layer))): \(error.message)")
            }
        }
        self.layers = layers
        self.inputShape = inputShape
        self.shapes = shapes
        self.layout = ParameterLayout(layers: layers.map(\.parameterShapes))
        self.stateLayout = ParameterLayout(layers: layers.map { $0.stateShapes.map { ($0.name, $0.shape) } })
    }

    /// Per-sample shape of the output (e.g. `[classes]`).
    public var outputShape: [Int] { shapes[layers.count] }
    /// Length of the flat parameter vector.
    public var parameterCount: Int { layout.count }

    /// A deterministic initialisation: the same seed gives the same vector on every machine.
    /// Each layer draws from its own stream, so adding a layer does not change the others' values.
    public func initialParameters(seed: UInt64) -> [Float] {
        var parameters = [Float](repeating: 0, count: layout.count)
        let root = RandomSource(seed: seed)
        parameters.withUnsafeMutableBufferPointer { all in
            for (index, layer) in layers.enumerated() {
                let range = parameterRange(ofLayer: index)
                var random = root.fork(UInt64(index))
                layer.initialize(UnsafeMutableBufferPointer(rebasing: all[range]), using: &random)
            }
        }
        return parameters
    }

    /// The initial non-trainable state (running mean 0 and variance 1 for BatchNorm).
    public func initialState() -> [Float] {
        layers.flatMap { layer in
            layer.stateShapes.flatMap { [Float](repeating: $0.initial, count: $0.shape.reduce(1, *)) }
        }
    }

    /// The slice of the flat parameter vector that belongs to layer `index`.
    public func parameterRange(ofLayer index: Int) -> Range<Int> { layout.layerRanges[index] }

    /// The slice of the flat state vector that belongs to layer `index`.
    public func stateRange(ofLayer index: Int) -> Range<Int> { stateLayout.layerRanges[index] }

    /// Where the head of `layers` layers with parameters starts: the index of its first layer. The head is the
    /// last `layers` layers that have parameters (and every parameter-free layer between them); the body before
    /// it must keep at least one layer with parameters, so that there is a representation to meta-learn.
    func headStart(layers: Int) throws -> Int {
        let parametrised = self.layers.indices.filter { !parameterRange(ofLayer: $0).isEmpty }
        guard layers >= 1, layers <= parametrised.count else {
            throw MetaCoreError.argument("a head of \(layers) layers with parameters needs \(layers) such layers; the model has \(parametrised.count)")
        }
        guard layers < parametrised.count else {
            throw MetaCoreError.argument("a head of \(layers) layers with parameters would leave no representation to meta-learn; the model has \(parametrised.count) layers with parameters")
        }
        return parametrised[parametrised.count - layers]
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
        let body = try Model(inputShape: inputShape, layers: Array(layers[..<cut]))
        return (body, try Model(inputShape: body.outputShape, layers: Array(layers[cut...])))
    }

    /// One line per layer: its type, output shape and parameter count.
    public var summary: String {
        var lines = ["input \(describe(inputShape))"]
        for (index, layer) in layers.enumerated() {
            let count = parameterRange(ofLayer: index).count
            lines.append("\(index): \(type(of: layer)) -> \(describe(shapes[index + 1]))" + (count > 0 ? "  (\(count) parameters)" : ""))
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
    ///   - activation: the nonlinearity of each block.
    ///   - initialization: of the convolutions and the head (PyTorch's default, or Kaiming-normal for a network
    ///     without batch-norm).
    public static func conv4(classes: Int, inputShape: [Int] = [1, 28, 28], channels: Int = 64, blocks: Int = 4,
                             batchNorm: Bool = true, activation: Activation = .relu,
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
            if batchNorm { layers.append(try BatchNorm(channels)) }
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
}
