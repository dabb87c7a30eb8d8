import CKernels

/// Fully connected layer `y = x Wᵀ + b` on `[N, inputs]`, with `W` of shape `[outputs, inputs]`.
///
/// Initialised as PyTorch's `nn.Linear` (weights and bias uniform in ±1/√inputs) unless told otherwise.
public struct Linear: Layer {
    public var backwardReads: BackwardReads { .input }
    public let inputs: Int, outputs: Int
    public let initialization: Initialization

    public init(_ inputs: Int, _ outputs: Int, initialization: Initialization = .pytorch) throws {
        guard inputs > 0, outputs > 0 else {
            throw MetaCoreError.argument("Linear needs positive sizes, got \(inputs) -> \(outputs)")
        }
        self.inputs = inputs
        self.outputs = outputs
        self.initialization = initialization
    }

    public func outputShape(for input: [Int]) throws -> [Int] {
        guard input == [inputs] else {
            throw MetaCoreError.shape("Linear(\(inputs), \(outputs)) expects \(inputs) features per sample, got \(describe(input))")
        }
        return [outputs]
    }

    public var parameterShapes: [(name: String, shape: [Int])] { [("weight", [outputs, inputs]), ("bias", [outputs])] }

    public func initialize(_ parameters: UnsafeMutableBufferPointer<Float>, using random: inout RandomSource) {
        initialization.fill(parameters, weights: biasOffset, fanIn: inputs, fanOut: outputs, using: &random)
    }

    private var biasOffset: Int { outputs * inputs }

    private var parameterCount: Int { biasOffset + outputs }

    public func memory(batch: Int, input: [Int], threads: Int) -> LayerMemory {
        LayerMemory(scratch: BatchSplit(batch: batch, outputCount: outputs, threads: threads).scratch(perPart: 0, summing: parameterCount))
    }

    public func forward(_ p: LayerPass) {
        p.forEachPart { q in
            mc_linear_forward(Int32(q.batch), Int32(inputs), Int32(outputs), q.x, q.theta, q.theta + biasOffset, q.y)
        }
    }

    public func backward(_ p: LayerPass) {
        p.forEachPart(summing: parameterCount, into: p.gradient) { q in
            mc_linear_backward(Int32(q.batch), Int32(inputs), Int32(outputs), q.x, q.theta, q.dy, q.dx,
                               q.gradient, q.gradient + biasOffset)
        }
    }

    public func rForward(_ p: LayerPass) {
        p.forEachPart { q in
            mc_linear_rforward(Int32(q.batch), Int32(inputs), Int32(outputs), q.x, q.Rx, q.theta, q.v,
                               q.v + biasOffset, q.Ry)
        }
    }

    public func rBackward(_ p: LayerPass) {
        p.forEachPart(summing: parameterCount, into: p.hv) { q in
            mc_linear_rbackward(Int32(q.batch), Int32(inputs), Int32(outputs), q.x, q.Rx, q.theta, q.v,
                                q.dy, q.Rdy, q.Rdx, q.hv, q.hv + biasOffset)
        }
    }
}
