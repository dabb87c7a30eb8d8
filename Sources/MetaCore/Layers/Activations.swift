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

/// Leaky rectified linear unit, elementwise: x for x > 0, `slope`·x otherwise (ResNet-12 uses slope 0.1). As for
/// ``ReLU``, the R-forms apply the backward pass's mask.
public struct LeakyReLU: Layer {
    public let slope: Float

    public init(slope: Float = 0.1) throws {
        guard slope > 0, slope < 1 else { throw MetaCoreError.argument("LeakyReLU's slope must be in (0, 1), got \(slope)") }
        self.slope = slope
    }

    public func outputShape(for input: [Int]) throws -> [Int] { input }

    public func forward(_ p: LayerPass) { p.forEachPart { q in mc_leaky_relu_forward(q.batch * q.inputCount, slope, q.x, q.y) } }
    public func backward(_ p: LayerPass) {
        guard p.dx != nil else { return }
        p.forEachPart { q in mc_leaky_relu_backward(q.batch * q.inputCount, slope, q.y, q.dy, q.dx) }
    }
    public func rForward(_ p: LayerPass) {
        guard p.Rx != nil else { return zero(p.Ry, p.batch * p.inputCount) }
        p.forEachPart { q in mc_leaky_relu_backward(q.batch * q.inputCount, slope, q.y, q.Rx, q.Ry) }
    }
    public func rBackward(_ p: LayerPass) {
        guard p.Rdx != nil else { return }
        p.forEachPart { q in mc_leaky_relu_backward(q.batch * q.inputCount, slope, q.y, q.Rdy, q.Rdx) }
    }
}

/// The logistic sigmoid, elementwise: smooth, with a second-order term in its R-backward.
public struct Sigmoid: Layer {
    public init() {}
    public func outputShape(for input: [Int]) throws -> [Int] { input }

    public func forward(_ p: LayerPass) { p.forEachPart { q in mc_sigmoid_forward(q.batch * q.inputCount, q.x, q.y) } }
    public func backward(_ p: LayerPass) {
        guard p.dx != nil else { return }
        p.forEachPart { q in mc_sigmoid_backward(q.batch * q.inputCount, q.y, q.dy, q.dx) }
    }
    public func rForward(_ p: LayerPass) {
        guard p.Rx != nil else { return zero(p.Ry, p.batch * p.inputCount) }
        p.forEachPart { q in mc_sigmoid_backward(q.batch * q.inputCount, q.y, q.Rx, q.Ry) }
    }
    public func rBackward(_ p: LayerPass) {
        guard p.Rdx != nil else { return }
        p.forEachPart { q in mc_sigmoid_rbackward(q.batch * q.inputCount, q.y, q.Ry, q.dy, q.Rdy, q.Rdx) }
    }
}

/// Sets `count` floats to zero (the R-derivative of anything computed from data alone).
func zero(_ pointer: UnsafeMutablePointer<Float>, _ count: Int) {
    pointer.update(repeating: 0, count: count)
}
