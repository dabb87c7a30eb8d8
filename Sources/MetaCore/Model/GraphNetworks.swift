// The standard networks that are graphs rather than chains: ResNet-12, an LSTM unrolled over a sequence, and
// content-addressed memory reads and writes.

extension Model {
    /// How ResNet-12 turns its last feature map into the head's features.
    public enum Pooling: String, Sendable, CaseIterable {
        /// The mean of each channel (640 features at the default widths).
        case mean
        /// Every value of the last feature map (640·5·5 = 16,000 features on 84x84 images, as MetaOptNet's).
        case flatten
    }

    /// ResNet-12 as in MetaOptNet (Lee et al. 2019): four residual blocks of widths `widths`, each three 3x3
    /// convolutions with batch-norm, LeakyReLU(0.1) after the first two, a 1x1 convolution with batch-norm as the
    /// shortcut, the sum through LeakyReLU(0.1), and 2x2 max-pooling; then the features (``Pooling``) and a
    /// linear head to `classes` outputs (`0` leaves it off: an embedding network).
    ///
    /// On 84x84x3 images the map shrinks 84 → 42 → 21 → 10 → 5, on 28x28x1 28 → 14 → 7 → 3 → 1.
    /// The convolutions keep their bias (MetaOptNet's have none; after batch-norm a bias changes nothing in
    /// the function in batch-statistics mode).
    public static func resnet12(classes: Int, inputShape: [Int] = [3, 84, 84], widths: [Int] = [64, 160, 320, 640],
                                pooling: Pooling = .mean, slope: Float = 0.1) throws -> Model {
        guard inputShape.count == 3 else {
            throw MetaCoreError.shape("ResNet-12 takes CxHxW images, got input shape \(describe(inputShape))")
        }
        guard !widths.isEmpty, widths.allSatisfy({ $0 > 0 }), classes >= 0 else {
            throw MetaCoreError.argument("ResNet-12 needs positive widths and classes >= 0, got widths \(widths) and \(classes) classes")
        }
        let graph = Graph()
        var x = graph.input(inputShape), channels = inputShape[0]
        for (b, width) in widths.enumerated() {
            let name = "block\(b + 1)"
            var h = x
            for c in 1 ... 3 {
                h = graph.apply(try Conv2d(c == 1 ? channels : width, width, kernel: 3, padding: 1), to: h, name: "\(name).conv\(c)")
                h = graph.apply(try BatchNorm(width), to: h, name: "\(name).bn\(c)")
                if c < 3 { h = graph.apply(try LeakyReLU(slope: slope), to: h, name: "\(name).relu\(c)") }
            }
            var shortcut = graph.apply(try Conv2d(channels, width, kernel: 1), to: x, name: "\(name).shortcut.conv")
            shortcut = graph.apply(try BatchNorm(width), to: shortcut, name: "\(name).shortcut.bn")
            h = graph.apply(try LeakyReLU(slope: slope), to: graph.sum(h, shortcut), name: "\(name).relu")
            x = graph.apply(try MaxPool(2), to: h, name: "\(name).pool")
            channels = width
        }
        x = graph.apply(pooling == .mean ? GlobalPool(.mean) : Flatten(), to: x, name: "features")
        if classes > 0 {
            let model = try Model(graph, output: x)
            x = graph.apply(try Linear(model.outputShape[0], classes), to: x, name: "head")
        }
        return try Model(graph, output: x)
    }

    /// An LSTM (Hochreiter & Schmidhuber 1997) over sequences of `steps` vectors of `input` values (per-sample
    /// input `[steps, input]`), with `hidden` units and zero initial state: at every step one cell — a single
    /// linear map of the step's input and the previous hidden state to the four gates, its weights tied
    /// across the steps — then a linear head from the last hidden state to `outputs` (`0`: the hidden state is
    /// the output).
    ///
    /// i, f, o = σ(·), g = tanh(·) of the gates' four slices (in that order: input, forget, cell, output, as
    /// PyTorch's), c' = f ⊙ c + i ⊙ g, h' = o ⊙ tanh(c'): the gate product a ``Linear`` node, the rest one
    /// fused ``LSTMCell`` node (`fusedCell: false`: the same function written as nodes — slices, activations,
    /// products and a sum — which `metactl bench --workload kernels` times beside it).
    public static func lstm(input: Int, hidden: Int, steps: Int, outputs: Int = 0, fusedCell: Bool = true) throws -> Model {
        guard input > 0, hidden > 0, steps > 0, outputs >= 0 else {
            throw MetaCoreError.argument("an LSTM needs positive input, hidden and steps and outputs >= 0, got \(input), \(hidden), \(steps), \(outputs)")
        }
        let graph = Graph()
        let x = graph.input([steps, input])
        let zero = graph.apply(try Constant(shape: [hidden]), to: [], name: "initial state")
        var (h, c) = (zero, zero)
        let cell = try Linear(input + hidden, 4 * hidden)
        var first: Graph.Value?
        for t in 0 ..< steps {
            let xt = graph.apply(try Reshape([input]), to: graph.apply(try Slice(t ..< t + 1), to: x, name: "x[\(t)]"), name: "x\(t)")
            let gates = graph.apply(cell, to: graph.concatenate([xt, h]), name: t == 0 ? "cell" : "cell@\(t)", tiedTo: first)
            first = first ?? gates
            if fusedCell {
                let state = graph.apply(try LSTMCell(hidden: hidden), to: [gates, c], name: "state@\(t)")
                h = graph.apply(try Slice(0 ..< hidden), to: state, name: "h@\(t)")
                if t < steps - 1 { c = graph.apply(try Slice(hidden ..< 2 * hidden), to: state, name: "c@\(t)") }
            } else {
                func gate(_ k: Int, _ activation: any Layer) throws -> Graph.Value {
                    graph.apply(activation, to: graph.apply(try Slice(k * hidden ..< (k + 1) * hidden), to: gates))
                }
                let (i, f, g, o) = (try gate(0, Sigmoid()), try gate(1, Sigmoid()), try gate(2, Tanh()), try gate(3, Sigmoid()))
                c = graph.sum(graph.product(f, c), graph.product(i, g))
                h = graph.product(o, graph.apply(Tanh(), to: c))
            }
        }
        if outputs > 0 { h = graph.apply(try Linear(hidden, outputs), to: h, name: "head") }
        return try Model(graph, output: h)
    }
}

extension Graph {
    /// A content-addressed read of `memory` (per sample `[slots, width]`) with `key` (`[width]`), as in Neural
    /// Turing Machines and memory-augmented networks (Graves et al. 2014; Santoro et al. 2016): the weights
    /// w = softmax(β · cos(key, row)) over the rows, and the read wᵀ memory (`[width]`).
    public func cosineRead(memory: Value, key: Value, slots: Int, width: Int, sharpness: Float = 10) throws -> (read: Value, weights: Value) {
        let rows = apply(L2Normalize(), to: memory)
        let direction = apply(try Reshape([width, 1]), to: apply(L2Normalize(), to: key))
        let cosines = apply(try Reshape([slots]), to: matrixProduct(rows, direction))
        let weights = apply(Softmax(), to: apply(try WeightedSum([sharpness]), to: [cosines]))
        let read = matrixProduct(apply(try Reshape([1, slots]), to: weights), memory)
        return (apply(try Reshape([width]), to: read), weights)
    }

    /// A write to `memory` (`[slots, width]`) with `weights` (`[slots]`), `erase` (`[width]`, in [0, 1]) and
    /// `add` (`[width]`): M' = M ⊙ (1 − w eᵀ) + w aᵀ.
    public func write(memory: Value, weights: Value, erase: Value, add: Value, slots: Int, width: Int) throws -> Value {
        let w = apply(try Reshape([slots, 1]), to: weights)
        let erased = product(memory, matrixProduct(w, apply(try Reshape([1, width]), to: erase)))
        let added = matrixProduct(w, apply(try Reshape([1, width]), to: add))
        return apply(try WeightedSum([1, -1, 1]), to: [memory, erased, added])
    }
}
