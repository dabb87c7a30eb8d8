import CKernels

/// Rectified linear unit, elementwise. Its second derivative is zero almost everywhere, so its R-forms
/// apply the same mask as its backward pass.
public struct ReLU: Layer {
    public var backwardReads: BackwardReads { .output }
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

/// The C kernels of a smooth activation, elementwise over `count` floats (see ``SmoothActivation``).
public typealias ActivationForward = @convention(c) (_ count: Int, _ x: UnsafePointer<Float>?, _ y: UnsafeMutablePointer<Float>?) -> Void
public typealias ActivationBackward = @convention(c) (_ count: Int, _ y: UnsafePointer<Float>?, _ dy: UnsafePointer<Float>?,
                                                      _ dx: UnsafeMutablePointer<Float>?) -> Void
public typealias ActivationRBackward = @convention(c) (_ count: Int, _ y: UnsafePointer<Float>?, _ Ry: UnsafePointer<Float>?,
                                                       _ dy: UnsafePointer<Float>?, _ Rdy: UnsafePointer<Float>?,
                                                       _ Rdx: UnsafeMutablePointer<Float>?) -> Void

/// A smooth elementwise activation y = f(x) whose derivatives its kernels compute from y: the forward pass,
/// the backward pass dx = f′ dy (which is also the R-forward, Ry = f′ Rx) and the R-backward, whose second-order
/// term needs Ry and dy.
public protocol SmoothActivation: Layer {
    static var forwardKernel: ActivationForward { get }
    static var backwardKernel: ActivationBackward { get }
    static var rBackwardKernel: ActivationRBackward { get }
}

extension SmoothActivation {
    public var backwardReads: BackwardReads { .output }
    public func outputShape(for input: [Int]) throws -> [Int] { input }

    public func forward(_ p: LayerPass) { p.forEachPart { q in Self.forwardKernel(q.batch * q.inputCount, q.x, q.y) } }
    public func backward(_ p: LayerPass) {
        guard p.dx != nil else { return }
        p.forEachPart { q in Self.backwardKernel(q.batch * q.inputCount, q.y, q.dy, q.dx) }
    }
    public func rForward(_ p: LayerPass) {
        guard p.Rx != nil else { return zero(p.Ry, p.batch * p.inputCount) }
        p.forEachPart { q in Self.backwardKernel(q.batch * q.inputCount, q.y, q.Rx, q.Ry) }
    }
    public func rBackward(_ p: LayerPass) {
        guard p.Rdx != nil else { return }
        p.forEachPart { q in Self.rBackwardKernel(q.batch * q.inputCount, q.y, q.Ry, q.dy, q.Rdy, q.Rdx) }
    }
}

/// Hyperbolic tangent, elementwise: a smooth activation whose R-backward has a genuine second-order term.
public struct Tanh: SmoothActivation {
    public init() {}
    public static let forwardKernel: ActivationForward = mc_tanh_forward
    public static let backwardKernel: ActivationBackward = mc_tanh_backward
    public static let rBackwardKernel: ActivationRBackward = mc_tanh_rbackward
}

/// The logistic sigmoid, elementwise.
public struct Sigmoid: SmoothActivation {
    public init() {}
    public static let forwardKernel: ActivationForward = mc_sigmoid_forward
    public static let backwardKernel: ActivationBackward = mc_sigmoid_backward
    public static let rBackwardKernel: ActivationRBackward = mc_sigmoid_rbackward
}

/// Leaky rectified linear unit, elementwise: x for x > 0, `slope`·x otherwise (ResNet-12 uses slope 0.1). As for
/// ``ReLU``, the R-forms apply the backward pass's mask.
public struct LeakyReLU: Layer {
    public var backwardReads: BackwardReads { .output }
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

/// Sets `count` floats to zero (the R-derivative of anything computed from data alone).
func zero(_ pointer: UnsafeMutablePointer<Float>, _ count: Int) {
    pointer.update(repeating: 0, count: count)
}
