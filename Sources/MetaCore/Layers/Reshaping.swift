import CKernels

/// The entries `range` of the leading axis of each sample (features of a vector, channels of an image, time
/// steps of a sequence): one gate of an LSTM's stacked gates, one step of a sequence.
public struct Slice: Layer {
    public var backwardReads: BackwardReads { [] }
    public let range: Range<Int>

    public init(_ range: Range<Int>) throws {
        guard range.lowerBound >= 0, !range.isEmpty else {
            throw MetaCoreError.argument("Slice needs a non-empty range from 0 up, got \(range)")
        }
        self.range = range
    }

    public func outputShape(for input: [Int]) throws -> [Int] {
        guard let first = input.first, range.upperBound <= first else {
            throw MetaCoreError.shape("Slice \(range.lowerBound)..<\(range.upperBound) does not fit an input of shape \(describe(input))")
        }
        return [range.count] + input.dropFirst()
    }

    /// (rows, the block's length, its offset and the input's length per sample).
    private func block(_ p: LayerPass) -> (Int32, Int32, Int, Int) {
        let inner = p.inputCount / p.inputShape[0]
        return (Int32(p.batch), Int32(p.outputCount), range.lowerBound * inner, p.inputCount)
    }

    public func forward(_ p: LayerPass) {
        let (rows, n, offset, stride) = block(p)
        mc_copy_blocks(rows, n, p.x + offset, stride, p.y, Int(n))
    }
    public func backward(_ p: LayerPass) {
        guard let dx = p.dx else { return }
        scatter(p, p.dy, into: dx)
    }
    public func rForward(_ p: LayerPass) {
        guard let Rx = p.Rx else { return zero(p.Ry, p.batch * p.outputCount) }
        let (rows, n, offset, stride) = block(p)
        mc_copy_blocks(rows, n, Rx + offset, stride, p.Ry, Int(n))
    }
    public func rBackward(_ p: LayerPass) {
        guard let Rdx = p.Rdx else { return }
        scatter(p, p.Rdy, into: Rdx)
    }

    /// dx: zero but for the slice's block, which is dy.
    private func scatter(_ p: LayerPass, _ dy: UnsafePointer<Float>, into dx: UnsafeMutablePointer<Float>) {
        let (rows, n, offset, stride) = block(p)
        zero(dx, p.batch * stride)
        mc_copy_blocks(rows, n, dy, Int(n), dx + offset, stride)
    }
}

/// Each sample's values under another shape with as many entries (row-major, so nothing moves): a vector
/// as a 1xN matrix for ``MatrixProduct``, a flat memory as its rows.
public struct Reshape: Layer {
    public var backwardReads: BackwardReads { [] }
    public let shape: [Int]

    public init(_ shape: [Int]) throws {
        guard !shape.isEmpty, shape.allSatisfy({ $0 > 0 }) else {
            throw MetaCoreError.argument("Reshape needs positive sizes, got \(describe(shape))")
        }
        self.shape = shape
    }

    public func outputShape(for input: [Int]) throws -> [Int] {
        guard input.reduce(1, *) == shape.reduce(1, *) else {
            throw MetaCoreError.shape("Reshape to \(describe(shape)) needs \(shape.reduce(1, *)) values per sample, got \(describe(input))")
        }
        return shape
    }

    public func forward(_ p: LayerPass) { Flatten().forward(p) }
    public func backward(_ p: LayerPass) { Flatten().backward(p) }
    public func rForward(_ p: LayerPass) { Flatten().rForward(p) }
    public func rBackward(_ p: LayerPass) { Flatten().rBackward(p) }
}
