import CKernels

/// Rectified linear unit, elementwise. Its second derivative is zero almost everywhere, so its R-forms
/// apply the same mask as its backward pass.
public struct ReLU: Layer {
    public init() {}
    public func outputShape(for input: [Int]) throws -> [Int] { input }

    public func forward(_ p: LayerPass) { mc_relu_forward(p.batch * p.inputCount, p.x, p.y) }
    public func backward(_ p: LayerPass) {
        if let dx = p.dx { mc_relu_backward(p.batch * p.inputCount, p.y, p.dy, dx) }
    }
    public func rForward(_ p: LayerPass) {
        if let Rx = p.Rx { mc_relu_rforward(p.batch * p.inputCount, p.y, Rx, p.Ry) } else { zero(p.Ry, p.batch * p.inputCount) }
    }
    public func rBackward(_ p: LayerPass) {
        if let Rdx = p.Rdx { mc_relu_rbackward(p.batch * p.inputCount, p.y, p.Rdy, Rdx) }
    }
}

/// Hyperbolic tangent, elementwise: a smooth activation whose R-backward has a genuine second-order term.
public struct Tanh: Layer {
    public init() {}
    public func outputShape(for input: [Int]) throws -> [Int] { input }

    public func forward(_ p: LayerPass) { mc_tanh_forward(p.batch * p.inputCount, p.x, p.y) }
    public func backward(_ p: LayerPass) {
        if let dx = p.dx { mc_tanh_backward(p.batch * p.inputCount, p.y, p.dy, dx) }
    }
    public func rForward(_ p: LayerPass) {
        if let Rx = p.Rx { mc_tanh_rforward(p.batch * p.inputCount, p.y, Rx, p.Ry) } else { zero(p.Ry, p.batch * p.inputCount) }
    }
    public func rBackward(_ p: LayerPass) {
        if let Rdx = p.Rdx { mc_tanh_rbackward(p.batch * p.inputCount, p.y, p.Ry, p.dy, p.Rdy, Rdx) }
    }
}

/// Sets `count` floats to zero (the R-derivative of anything computed from data alone).
func zero(_ pointer: UnsafeMutablePointer<Float>, _ count: Int) {
    pointer.update(repeating: 0, count: count)
}
