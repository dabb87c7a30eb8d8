/// The built-in backbones: the networks `--backbone` names, built for a task family's input shape and
/// number of outputs.
enum Backbones {
    static let activation = OptionSpec("activation", .choice(Model.Activation.allCases.map(\.rawValue)), default: .string("relu"),
                                       help: "the nonlinearity")
    static let initializations: [(name: String, value: Initialization)] = [("pytorch", .pytorch), ("kaiming-normal", .kaimingNormal),
                                                                           ("glorot-uniform", .glorotUniform)]
    static let initialization = OptionSpec("init", .choice(initializations.map(\.name)), default: .string("pytorch"),
                                           help: "initialisation: PyTorch's default, Kaiming-normal weights and zero biases (for a net without batch-norm), or Glorot-uniform weights and zero biases (TensorFlow's default)")

    /// `--pool`: how a convolutional backbone turns its last map into the head's features.
    static func pool(default pooling: Model.Pooling, help: String) -> OptionSpec {
        OptionSpec("pool", .choice(Model.Pooling.allCases.map(\.rawValue)), default: .string(pooling.rawValue), help: help)
    }

    /// `--batch-norm-scale`: whether batch-norm learns γ as well as β.
    static let batchNormScale = OptionSpec("batch-norm-scale", .bool, default: .bool(true),
                                           help: "batch-norm learns a scale as well as a shift (false: the shift alone, as Finn's MAML code)")

    static func activation(_ options: ResolvedOptions) -> Model.Activation { Model.Activation(rawValue: options.string("activation")!)! }
    static func pooling(_ options: ResolvedOptions) -> Model.Pooling { Model.Pooling(rawValue: options.string("pool")!)! }
    static func initialization(_ options: ResolvedOptions) -> Initialization {
        initializations.first { $0.name == options.string("init") }!.value
    }

    static let registrations = [
        BackboneEntry(name: "conv4", summary: "Conv-4: blocks of 3x3 convolution, batch-norm, ReLU and 2x2 max-pooling, then a linear head",
                      options: [OptionSpec("channels", .int(1 ... 4096), default: .int(64), help: "filters per convolution"),
                                OptionSpec("blocks", .int(1 ... 64), default: .int(4), help: "convolution blocks"),
                                OptionSpec("batch-norm", .bool, default: .bool(true), help: "batch normalisation after each convolution"),
                                batchNormScale, activation, initialization]) { request in
            let options = request.options
            return try Model.conv4(classes: request.outputs, inputShape: request.inputShape, channels: options.int("channels")!,
                                   blocks: options.int("blocks")!, batchNorm: options.bool("batch-norm")!,
                                   batchNormScale: options.bool("batch-norm-scale")!, activation: activation(options), initialization: initialization(options))
        },
        BackboneEntry(name: "strided-conv", summary: "convolutions that downsample by stride, no pooling, then fully connected layers (OML's Omniglot network)",
                      options: [OptionSpec("channels", .int(1 ... 4096), default: .int(256), help: "filters per convolution"),
                                OptionSpec("strides", .ints(1 ... 16), default: .string("2,1,2,1,2,2"), help: "one 3x3 convolution per entry, with that stride"),
                                OptionSpec("padding", .int(0 ... 16), default: .int(0), help: "zero padding of every convolution"),
                                OptionSpec("hidden", .ints(1 ... 1 << 20, mayBeEmpty: true), default: .string("1024"),
                                           help: "fully connected layers before the output (none: the features feed the output layer)"),
                                OptionSpec("batch-norm", .bool, default: .bool(false), help: "batch normalisation after each convolution"),
                                batchNormScale,
                                pool(default: .flatten, help: "the features after the last convolution: its map flattened, or the mean of each channel (Finn's MAML network)"),
                                activation,
                                OptionSpec("init", initialization.kind, default: .string("kaiming-normal"), help: initialization.help)]) { request in
            let options = request.options
            return try Model.stridedConv(classes: request.outputs, inputShape: request.inputShape, channels: options.int("channels")!,
                                         strides: options.ints("strides")!, padding: options.int("padding")!,
                                         hidden: options.ints("hidden")!, batchNorm: options.bool("batch-norm")!,
                                         batchNormScale: options.bool("batch-norm-scale")!, pooling: pooling(options),
                                         activation: activation(options), initialization: initialization(options))
        },
        BackboneEntry(name: "resnet12", summary: "ResNet-12 (MetaOptNet): residual blocks of three 3x3 convolutions with batch-norm and LeakyReLU(0.1), a 1x1 shortcut, max-pooling",
                      options: [OptionSpec("widths", .ints(1 ... 4096), default: .string("64,160,320,640"), help: "channels of each residual block"),
                                pool(default: .mean, help: "the head's features: the mean of each channel, or the last map flattened")]) { request in
            try Model.resnet12(classes: request.outputs, inputShape: request.inputShape, widths: request.options.ints("widths")!,
                               pooling: pooling(request.options))
        },
        BackboneEntry(name: "mlp", summary: "a fully connected network (MAML's 1-40-40-1 on sinusoids)",
                      options: [OptionSpec("hidden", .ints(1 ... 1 << 20, mayBeEmpty: true), default: .string("40,40"), help: "hidden layer sizes (none: a linear model)"),
                                activation, initialization]) { request in
            guard request.inputShape.count == 1 else {
                throw MetaCoreError.shape("the MLP backbone takes vectors; the tasks' inputs are \(describe(request.inputShape)) (try --backbone conv4)")
            }
            let sizes = request.inputShape + request.options.ints("hidden")! + (request.outputs > 0 ? [request.outputs] : [])
            return try Model.mlp(sizes, activation: activation(request.options), initialization: initialization(request.options))
        },
    ]
}
