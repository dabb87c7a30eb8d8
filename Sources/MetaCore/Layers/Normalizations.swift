import CKernels

/// Checks that a row-wise layer gets a per-sample shape with a last axis to work along.
private func rowShape(_ input: [Int], _ layer: String) throws -> [Int] {
    guard !input.isEmpty else { throw MetaCoreError.shape("\(layer) needs an axis to work along, got \(describe(input))") }
    return input
}

extension LayerPass {
    /// The rows of a row-wise layer (along the last axis of each sample) and their length.
    fileprivate var rows: Int32 { Int32(batch * inputCount / inputShape[inputShape.count - 1]) }
    fileprivate var rowLength: Int32 { Int32(inputShape[inputShape.count - 1]) }
}

/// Softmax along the last axis of each sample (over its features, or over each row of a matrix of scores):
/// attention weights, class probabilities inside a model.
public struct Softmax: Layer {
    public var backwardReads: BackwardReads { .output }
    public init() {}
    public func outputShape(for input: [Int]) throws -> [Int] { try rowShape(input, "Softmax") }

    public func forward(_ p: LayerPass) { p.forEachPart { q in mc_softmax_forward(q.rows, q.rowLength, q.x, q.y) } }
    public func backward(_ p: LayerPass) {
        guard p.dx != nil else { return }
        p.forEachPart { q in mc_softmax_backward(q.rows, q.rowLength, q.y, q.dy, q.dx) }
    }
    public func rForward(_ p: LayerPass) {
        guard p.Rx != nil else { return zero(p.Ry, p.batch * p.inputCount) }
        p.forEachPart { q in mc_softmax_backward(q.rows, q.rowLength, q.y, q.Rx, q.Ry) }
    }
    public func rBackward(_ p: LayerPass) {
        guard p.Rdx != nil else { return }
        p.forEachPart { q in mc_softmax_rbackward(q.rows, q.rowLength, q.y, q.Ry, q.dy, q.Rdy, q.Rdx) }
    }
}

/// Unit L2 norm (√(Σx² + 1e-12)) along the last axis of each sample — its feature vector, or each row of a
/// memory matrix: the normalisation behind cosine similarity.
public struct L2Normalize: Layer {
    public init() {}
    public func outputShape(for input: [Int]) throws -> [Int] { try rowShape(input, "L2Normalize") }

    public func forward(_ p: LayerPass) { p.forEachPart { q in mc_l2normalize_forward(q.rows, q.rowLength, q.x, q.y) } }
    public func backward(_ p: LayerPass) {
        guard p.dx != nil else { return }
        p.forEachPart { q in mc_l2normalize_backward(q.rows, q.rowLength, q.x, q.y, q.dy, q.dx) }
    }
    public func rForward(_ p: LayerPass) {
        guard p.Rx != nil else { return zero(p.Ry, p.batch * p.inputCount) }
        p.forEachPart { q in mc_l2normalize_rforward(q.rows, q.rowLength, q.x, q.y, q.Rx, q.Ry) }
    }
    public func rBackward(_ p: LayerPass) {
        guard p.Rdx != nil else { return }
        p.forEachPart { q in mc_l2normalize_rbackward(q.rows, q.rowLength, q.x, q.y, q.Rx, q.Ry, q.dy, q.Rdy, q.Rdx) }
    }
}

/// The mean (or sum) of each channel of CxHxW images: ResNet-12's global average pooling before its head.
public struct GlobalPool: Layer {
    public var backwardReads: BackwardReads { [] }
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
