/// A node of a model graph that reads several values (or none): a sum of two branches, a product of gates,
/// a concatenation, a matrix product of two activations.
///
/// The multi-input counterpart of ``Layer``, with the same four passes over an ``OperationPass``. Most
/// operations have no parameters; those that do declare them as a layer does.
public protocol Operation: Sendable {
    /// Per-sample output shape for the per-sample shapes of the inputs, in order; throws naming what does not
    /// fit.
    func outputShape(for inputs: [[Int]]) throws -> [Int]
    var parameterShapes: [(name: String, shape: [Int])] { get }
    var stateShapes: [(name: String, shape: [Int], initial: Float)] { get }
    func initialize(_ parameters: UnsafeMutableBufferPointer<Float>, using random: inout RandomSource)
    func memory(batch: Int, inputs: [[Int]], threads: Int) -> LayerMemory
    /// What the backward pass reads besides `dy` (see ``Layer/backwardReads``); default both.
    var backwardReads: BackwardReads { get }

    func forward(_ pass: OperationPass)
    func backward(_ pass: OperationPass)
    func rForward(_ pass: OperationPass)
    func rBackward(_ pass: OperationPass)
}

extension Operation {
    public var backwardReads: BackwardReads { [.input, .output] }
    public var parameterShapes: [(name: String, shape: [Int])] { [] }
    public var stateShapes: [(name: String, shape: [Int], initial: Float)] { [] }
    public func initialize(_ parameters: UnsafeMutableBufferPointer<Float>, using random: inout RandomSource) {}
    public func memory(batch: Int, inputs: [[Int]], threads: Int) -> LayerMemory { LayerMemory() }
}

/// The buffers of one operation for one pass, as ``LayerPass`` with one entry per input.
///
/// An input that is the model's data has no R-derivative and needs no gradient: its `Rx` and `dx` (and `Rdx`)
/// are `nil`, standing for zero and "not wanted".
public struct OperationPass {
    public let batch: Int
    public let inputShapes: [[Int]], outputShape: [Int]
    public let normalization: Normalization
    public let threads: Int

    public let x: [UnsafePointer<Float>], y: UnsafeMutablePointer<Float>
    public let theta: UnsafePointer<Float>
    public let state: UnsafeMutablePointer<Float>
    public let saved: UnsafeMutablePointer<Float>, savedInts: UnsafeMutablePointer<Int32>
    public let rSaved: UnsafeMutablePointer<Float>
    public let scratch: UnsafeMutablePointer<Float>

    public let dy: UnsafePointer<Float>, dx: [UnsafeMutablePointer<Float>?]
    public let gradient: UnsafeMutablePointer<Float>

    public let v: UnsafePointer<Float>
    public let Rx: [UnsafePointer<Float>?], Ry: UnsafeMutablePointer<Float>
    public let Rdy: UnsafePointer<Float>, Rdx: [UnsafeMutablePointer<Float>?]
    public let hv: UnsafeMutablePointer<Float>

    /// Scalars per sample of input `i` and of the output.
    public func inputCount(_ i: Int) -> Int { inputShapes[i].reduce(1, *) }
    public var outputCount: Int { outputShape.reduce(1, *) }
}
