import CKernels

/// Fully connected layer `y = x Wᵀ + b` on `[N, inputs]`, with `W` of shape `[outputs, inputs]`.
///
/// Initialised as PyTorch's `nn.Linear` (weights and bias uniform in ±1/√inputs) unless told otherwise.
public struct Linear: Layer {
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
        initialization.fill(parameters, weights: biasOffset, fanIn: inputs, using: &random)
    }

    private var biasOffset: Int { outputs * inputs }

    public func forward(_ p: LayerPass) {
        mc_linear_forward(Int32(p.batch), Int32(inputs), Int32(outputs), p.x, p.theta, p.theta + biasOffset, p.y)
    }

    public func backward(_ p: LayerPass) {
        mc_linear_backward(Int32(p.batch), Int32(inputs), Int32(outputs), p.x, p.theta, p.dy, p.dx,
                           p.gradient, p.gradient + biasOffset)
    }

    public func rForward(_ p: LayerPass) {
        mc_linear_rforward(Int32(p.batch), Int32(inputs), Int32(outputs), p.x, p.Rx, p.theta, p.v,
                           p.v + biasOffset, p.Ry)
    }

    public func rBackward(_ p: LayerPass) {
        mc_linear_rbackward(Int32(p.batch), Int32(inputs), Int32(outputs), p.x, p.Rx, p.theta, p.v,
                            p.dy, p.Rdy, p.Rdx, p.hv, p.hv + biasOffset)
    }
}
