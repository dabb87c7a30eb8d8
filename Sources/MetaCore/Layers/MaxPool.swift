import CKernels

/// Max pooling over non-overlapping `size x size` windows of NCHW images (floor mode: a trailing row or
/// column that does not fill a window is dropped, as in PyTorch's default).
public struct MaxPool: Layer {
    public var backwardReads: BackwardReads { [] }
    public let size: Int

    public init(_ size: Int = 2) throws {
        guard size > 0 else { throw MetaCoreError.argument("MaxPool needs a window size > 0, got \(size)") }
        self.size = size
    }

    public func outputShape(for input: [Int]) throws -> [Int] {
        guard input.count == 3, input[1] >= size, input[2] >= size else {
            throw MetaCoreError.shape("MaxPool(\(size)) expects CxHxW images at least \(size)x\(size), got \(describe(input))")
        }
        return [input[0], input[1] / size, input[2] / size]
    }

    public func memory(batch: Int, input: [Int], threads: Int) -> LayerMemory {
        LayerMemory(savedInts: batch * pooled(input))
    }

    /// Values per sample of the output, each with the index of its window's maximum saved.
    private func pooled(_ input: [Int]) -> Int { input[0] * (input[1] / size) * (input[2] / size) }

    private func dims(_ p: LayerPass) -> (Int32, Int32, Int32, Int32, Int32) {
        (Int32(p.batch), Int32(p.inputShape[0]), Int32(p.inputShape[1]), Int32(p.inputShape[2]), Int32(size))
    }

    /// Runs `body` on every part of the pass's batch (samples are independent).
    private func parts(_ p: LayerPass, _ body: (LayerPass) -> Void) {
        p.forEachPart(savedIntsPerSample: pooled(p.inputShape), body)
    }

    public func forward(_ p: LayerPass) {
        parts(p) { q in
            let (n, c, h, w, k) = dims(q)
            mc_maxpool_forward(n, c, h, w, k, q.x, q.y, q.savedInts)
        }
    }
    public func backward(_ p: LayerPass) {
        guard p.dx != nil else { return }
        parts(p) { q in
            let (n, c, h, w, k) = dims(q)
            mc_maxpool_backward(n, c, h, w, k, q.savedInts, q.dy, q.dx)
        }
    }
    public func rForward(_ p: LayerPass) {
        guard p.Rx != nil else { return zero(p.Ry, p.batch * p.outputCount) }
        parts(p) { q in
            let (n, c, h, w, k) = dims(q)
            mc_maxpool_rforward(n, c, h, w, k, q.savedInts, q.Rx, q.Ry)
        }
    }
    public func rBackward(_ p: LayerPass) {
        guard p.Rdx != nil else { return }
        parts(p) { q in
            let (n, c, h, w, k) = dims(q)
            mc_maxpool_rbackward(n, c, h, w, k, q.savedInts, q.Rdy, q.Rdx)
        }
    }
}

/// Flattens each sample to a vector (row-major, so C, H, W in that order). The memory is already laid out
/// that way: every pass is a copy.
public struct Flatten: Layer {
    public var backwardReads: BackwardReads { [] }
    public init() {}
    public func outputShape(for input: [Int]) throws -> [Int] { [input.reduce(1, *)] }

    public func forward(_ p: LayerPass) { p.y.update(from: p.x, count: p.batch * p.inputCount) }
    public func backward(_ p: LayerPass) { p.dx?.update(from: p.dy, count: p.batch * p.inputCount) }
    public func rForward(_ p: LayerPass) {
        if let Rx = p.Rx { p.Ry.update(from: Rx, count: p.batch * p.inputCount) } else { zero(p.Ry, p.batch * p.inputCount) }
    }
    public func rBackward(_ p: LayerPass) { p.Rdx?.update(from: p.Rdy, count: p.batch * p.inputCount) }
}
