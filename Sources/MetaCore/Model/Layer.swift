/// One layer of a model, a node that reads one value: a differentiable map from a batch of inputs and this
/// layer's slice of the flat parameter vector to a batch of outputs (see ``Operation`` for nodes of several).
///
/// A layer is an immutable description (a value type); the memory its passes use lives in a ``Workspace``.
/// It provides four passes, each a thin call into a CKernels kernel:
/// - ``forward(_:)``: y = f(x; θ);
/// - ``backward(_:)``: the vector-Jacobian product, dx and this layer's slice of the gradient from dy;
/// - ``rForward(_:)`` and ``rBackward(_:)``: Pearlmutter's R-operator for a parameter direction v — the
///   directional derivatives of the forward and backward passes. Chained through the model they give the
///   exact Hessian-vector product.
public protocol Layer: Sendable {
    /// Per-sample output shape for a per-sample input shape; throws if the input does not fit the layer.
    func outputShape(for input: [Int]) throws -> [Int]
    /// The layer's parameter tensors, in the order they sit in the flat vector.
    var parameterShapes: [(name: String, shape: [Int])] { get }
    /// Non-trainable state tensors (e.g. BatchNorm's running statistics) and their initial value.
    var stateShapes: [(name: String, shape: [Int], initial: Float)] { get }
    /// Writes freshly initialised parameters into `parameters` (this layer's slice).
    func initialize(_ parameters: UnsafeMutableBufferPointer<Float>, using random: inout RandomSource)
    /// Memory a pass over a batch of `batch` samples of per-sample shape `input` needs, when the pass may
    /// run on `threads` threads (a layer that splits its batch, ``BatchSplit``, needs scratch for each part).
    func memory(batch: Int, input: [Int], threads: Int) -> LayerMemory

    /// What the backward pass reads besides `dy`, the parameters and what the layer saved: its input `x`, its
    /// output `y`, both (the default) or neither. A gradient pass that no R-pass follows lets the workspace reuse
    /// the memory of activations no backward pass reads once their forward readers are done; the R-passes
    /// may read both.
    var backwardReads: BackwardReads { get }

    func forward(_ pass: LayerPass)
    func backward(_ pass: LayerPass)
    func rForward(_ pass: LayerPass)
    func rBackward(_ pass: LayerPass)
}

/// Which activations a backward pass reads (see ``Layer/backwardReads``).
public struct BackwardReads: OptionSet, Sendable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    /// The pass's input (an operation's inputs, all of them).
    public static let input = BackwardReads(rawValue: 1)
    /// The pass's output.
    public static let output = BackwardReads(rawValue: 2)
}

extension Layer {
    public var backwardReads: BackwardReads { [.input, .output] }
    public var parameterShapes: [(name: String, shape: [Int])] { [] }
    public var stateShapes: [(name: String, shape: [Int], initial: Float)] { [] }
    public func initialize(_ parameters: UnsafeMutableBufferPointer<Float>, using random: inout RandomSource) {}
    public func memory(batch: Int, input: [Int], threads: Int) -> LayerMemory { LayerMemory() }
}

/// Floats and 32-bit integers a layer keeps between its passes (`saved`: written by forward, read by the
/// others; `rSaved`: written by rForward, read by rBackward), and scratch that only lives within one pass.
public struct LayerMemory: Sendable {
    public var saved = 0, savedInts = 0, rSaved = 0, scratch = 0
    public init(saved: Int = 0, savedInts: Int = 0, rSaved: Int = 0, scratch: Int = 0) {
        self.saved = saved; self.savedInts = savedInts; self.rSaved = rSaved; self.scratch = scratch
    }
}

/// How BatchNorm layers get their statistics during a pass.
public enum Normalization: Sendable, Equatable {
    /// Batch statistics, with derivatives through them; nothing is stored. MAML's "transductive" mode.
    case transductive
    /// Batch statistics as in `transductive`, and the running statistics are updated with this momentum.
    case training(momentum: Float)
    /// Running statistics in place of the batch's: a fixed affine map per channel.
    case inference
}

/// The buffers of one layer for one pass over a batch. Pointers are valid only during the call.
///
/// `Rx`, `dx` and `Rdx` are `nil` for the model's first layer: its input is data, so its R-derivative is
/// zero and its gradient is not needed.
public struct LayerPass {
    public let batch: Int
    public let inputShape: [Int], outputShape: [Int]
    public let normalization: Normalization
    /// Threads the pass may use: a layer whose samples are independent may split the batch
    /// (``forEachPart(scratch:summing:into:savedIntsPerSample:_:)``); 1 when tasks already run concurrently.
    public let threads: Int

    public let x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>
    public let theta: UnsafePointer<Float>
    public let state: UnsafeMutablePointer<Float>
    public let saved: UnsafeMutablePointer<Float>, savedInts: UnsafeMutablePointer<Int32>
    public let rSaved: UnsafeMutablePointer<Float>
    public let scratch: UnsafeMutablePointer<Float>

    public let dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?
    public let gradient: UnsafeMutablePointer<Float>

    public let v: UnsafePointer<Float>
    public let Rx: UnsafePointer<Float>?, Ry: UnsafeMutablePointer<Float>
    public let Rdy: UnsafePointer<Float>, Rdx: UnsafeMutablePointer<Float>?
    public let hv: UnsafeMutablePointer<Float>
    /// Whether every group of a stacked model has the same parameters in this pass (``Workspace/groupsShareParameters``).
    public var sharesParameters = false

    /// Scalars per sample of the input and of the output.
    public var inputCount: Int { inputShape.reduce(1, *) }
    public var outputCount: Int { outputShape.reduce(1, *) }
}
