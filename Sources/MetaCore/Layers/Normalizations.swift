import CKernels

/// Checks that a row-wise layer gets feature vectors.
private func vectorShape(_ input: [Int], _ layer: String) throws -> [Int] {
    guard input.count == 1 else { throw MetaCoreError.shape("\(layer) takes feature vectors (Flatten first), got \(describe(input))") }
    return input
}

/// Softmax over each sample's features: attention weights, class probabilities inside a model.
public struct Softmax: Layer {
    public init() {}
    public func outputShape(for input: [Int]) throws -> [Int] { try vectorShape(input, "Softmax") }

    public func forward(_ p: LayerPass) { p.forEachPart { q in mc_softmax_forward(Int32(q.batch), Int32(q.inputCount), q.x, q.y) } }
    public func backward(_ p: LayerPass) {
        guard p.dx != nil else { return }
        p.forEachPart { q in mc_softmax_backward(Int32(q.batch), Int32(q.inputCount), q.y, q.dy, q.dx) }
    }
    public func rForward(_ p: LayerPass) {
        guard p.Rx != nil else { return zero(p.Ry, p.batch * p.inputCount) }
        p.forEachPart { q in mc_softmax_backward(Int32(q.batch), Int32(q.inputCount), q.y, q.Rx, q.Ry) }
    }
    public func rBackward(_ p: LayerPass) {
        guard p.Rdx != nil else { return }
        p.forEachPart { q in mc_softmax_rbackward(Int32(q.batch), Int32(q.inputCount), q.y, q.Ry, q.dy, q.Rdy, q.Rdx) }
    }
}

/// Each sample's features scaled to unit L2 norm (√(Σx² + 1e-12)): the normalisation behind cosine similarity.
public struct L2Normalize: Layer {
    public init() {}
    public func outputShape(for input: [Int]) throws -> [Int] { try vectorShape(input, "L2Normalize") }

    public func forward(_ p: LayerPass) { p.forEachPart { q in mc_l2normalize_forward(Int32(q.batch), Int32(q.inputCount), q.x, q.y) } }
    public func backward(_ p: LayerPass) {
        guard p.dx != nil else { return }
        p.forEachPart { q in mc_l2normalize_backward(Int32(q.batch), Int32(q.inputCount), q.x, q.y, q.dy, q.dx) }
    }
    public func rForward(_ p: LayerPass) {
        guard p.Rx != nil else { return zero(p.Ry, p.batch * p.inputCount) }
        p.forEachPart { q in mc_l2normalize_rforward(Int32(q.batch), Int32(q.inputCount), q.x, q.y, q.Rx, q.Ry) }
    }
    public func rBackward(_ p: LayerPass) {
        guard p.Rdx != nil else { return }
        p.forEachPart { q in mc_l2normalize_rbackward(Int32(q.batch), Int32(q.inputCount), q.x, q.y, q.Rx, q.Ry, q.dy, q.Rdy, q.Rdx) }
    }
}

/// The mean (or sum) of each channel of CxHxW images: ResNet-12's global average pooling before its head.
public struct GlobalPool: Layer {
    public enum Reduction: String, Sendable { case mean, sum }
    public let reduction: Reduction

    public init(_ reduction: Reduction = .mean) { self.reduction = reduction }

    public func outputShape(for input: [Int]) throws -> [Int] {
        guard input.count == 3 else { throw MetaCoreError.shape("GlobalPool takes CxHxW images, got \(describe(input))") }
        return [input[0]]
    }

    private func scale(_ p: LayerPass) -> (planes: Int32, size: Int32, scale: Float) {
        let size = p.inputShape[1] * p.inputShape[2]
        return (Int32(p.batch * p.inputShape[0]), Int32(size), reduction == .mean ? 1 / Float(size) : 1)
    }

    public func forward(_ p: LayerPass) {
        p.forEachPart { q in let (n, s, k) = scale(q); mc_global_pool_forward(n, s, k, q.x, q.y) }
    }
    public func backward(_ p: LayerPass) {
        guard p.dx != nil else { return }
        p.forEachPart { q in let (n, s, k) = scale(q); mc_global_pool_backward(n, s, k, q.dy, q.dx) }
    }
    public func rForward(_ p: LayerPass) {
        guard p.Rx != nil else { return zero(p.Ry, p.batch * p.inputShape[0]) }
        p.forEachPart { q in let (n, s, k) = scale(q); mc_global_pool_forward(n, s, k, q.Rx, q.Ry) }
    }
    public func rBackward(_ p: LayerPass) {
        guard p.Rdx != nil else { return }
        p.forEachPart { q in let (n, s, k) = scale(q); mc_global_pool_backward(n, s, k, q.Rdy, q.Rdx) }
    }
}
