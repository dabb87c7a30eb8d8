import CKernels

/// The LSTM cell's arithmetic, fused: from the gates' pre-activations `z` (`[4·hidden]`: input, forget, cell,
/// output, as PyTorch orders them) and the previous cell state `c` (`[hidden]`) to `[h′, c′]` (`[2·hidden]`),
/// with i, f, o = σ(·), g = tanh(·), c′ = f ⊙ c + i ⊙ g and h′ = o ⊙ tanh(c′).
///
/// One pass over memory per sweep where the same cell written as nodes (slices, activations, products, a sum)
/// takes a dozen; the gate product itself stays a ``Linear`` node, tied over the steps (see
/// ``Model/lstm(input:hidden:steps:outputs:)``).
public struct LSTMCell: Operation {
    public let hidden: Int

    public init(hidden: Int) throws {
        guard hidden > 0 else { throw MetaCoreError.argument("LSTMCell needs hidden > 0, got \(hidden)") }
        self.hidden = hidden
    }

    public func outputShape(for inputs: [[Int]]) throws -> [Int] {
        guard inputs == [[4 * hidden], [hidden]] else {
            throw MetaCoreError.shape("LSTMCell(hidden: \(hidden)) takes gates \(4 * hidden) and a cell state \(hidden), got \(inputs.map(describe).joined(separator: ", "))")
        }
        return [2 * hidden]
    }

    /// The gates' activations and tanh(c′), kept by the forward pass for the others.
    public func memory(batch: Int, inputs: [[Int]], threads: Int) -> LayerMemory { LayerMemory(saved: batch * 5 * hidden) }
    /// The previous cell state and the new one (in the output); the gates come from `saved`.
    public var backwardReads: BackwardReads { [.input, .output] }

    public func forward(_ p: OperationPass) { mc_lstm_cell_forward(Int32(p.batch), Int32(hidden), p.x[0], p.x[1], p.y, p.saved) }
    public func backward(_ p: OperationPass) {
        mc_lstm_cell_backward(Int32(p.batch), Int32(hidden), p.saved, p.x[1], p.y, p.dy, p.dx[0], p.dx[1])
    }
    public func rForward(_ p: OperationPass) {
        mc_lstm_cell_rforward(Int32(p.batch), Int32(hidden), p.saved, p.Rx[0], p.x[1], p.Rx[1], p.y, p.Ry)
    }
    public func rBackward(_ p: OperationPass) {
        mc_lstm_cell_rbackward(Int32(p.batch), Int32(hidden), p.saved, p.Rx[0], p.x[1], p.Rx[1], p.y, p.Ry, p.dy, p.Rdy,
                               p.Rdx[0], p.Rdx[1])
    }
}
