import CKernels

/// Rectified linear unit, elementwise. Its second derivative is zero almost everywhere, so its R-forms
/// apply the same mask as its backward pass.
public struct ReLU: Layer {
    public init() {}
    public func outputShape(for input: [Int]) throws -> [Int] { input }

    public func forward(_ p: LayerPass) { p.forEachPart { q in mc_relu_forward(q.batch * q.inputCount, q.x, q.y) } }
    public func backward(_ p: LayerPass) {
        guard p.dx != nil else { return }
        p.forEachPart { q in mc_relu_backward(q.batch * q.inputCount, q.y, q.dy, q.dx) }
    }
    public func rForward(_ p: LayerPass) {
        guard p.Rx != nil else { return zero(p.Ry, p.batch * p.inputCount) }
        p.forEachPart { q in mc_relu_rforward(q.batch * q.inputCount, q.y, q.Rx, q.Ry) }
    }
    public func rBackward(_ p: LayerPass) {
        guard p.Rdx != nil else { return }
        p.forEachPart { q in mc_relu_rbackward(q.batch * q.inputCount, q.y, q.Rdy, q.Rdx) }
    }
}

/// Hyperbolic tangent, elementwise: a smooth activation whose R-backward has a genuine second-order term.
public struct Tanh: Layer {
    public init() {}
    public func outputShape(for input: [Int]) throws -> [Int] { input }

    public func forward(_ p: LayerPass) { p.forEachPart { q in mc_tanh_forward(q.batch * q.inputCount, q.x, q.y) } }
    public func backward(_ p: LayerPass) {
        guard p.dx != nil else { return }
        p.forEachPart { q in mc_tanh_backward(q.batch * q.inputCount, q.y, q.dy, q.dx) }
    }
    public func rForward(_ p: LayerPass) {
        guard p.Rx != nil else { return zero(p.Ry, p.batch * p.inputCount) }
        p.forEachPart { q in mc_tanh_rforward(q.batch * q.inputCount, q.y, q.Rx, q.Ry) }
    }
    public func rBackward(_ p: LayerPass) {
        guard p.Rdx != nil else { return }
        p.forEachPart { q in mc_tanh_rbackward(q.batch * q.inputCount, q.y, q.Ry, q.dy, q.Rdy, q.Rdx) }
    }
}

/// Sets `count` floats to zero (the R-derivative of anything computed from data alone).
func zero(_ pointer: UnsafeMutablePointer<Float>, _ count: Int) {
    pointer.update(repeating: 0, count: count)
}
