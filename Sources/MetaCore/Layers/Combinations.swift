import CKernels

/// Checks that every input of an elementwise operation has one shape, and returns it.
private func commonShape(_ inputs: [[Int]], _ operation: String, count: Int? = nil) throws -> [Int] {
    guard let first = inputs.first else { throw MetaCoreError.shape("\(operation) needs at least one input") }
    if let count, inputs.count != count {
        throw MetaCoreError.shape("\(operation) takes \(count) inputs, got \(inputs.count)")
    }
    guard inputs.allSatisfy({ $0 == first }) else {
        throw MetaCoreError.shape("\(operation) needs inputs of one shape, got \(inputs.map(describe).joined(separator: ", "))")
    }
    return first
}

/// y = Σₖ cₖ xₖ over inputs of one shape: a residual connection's sum (all cₖ = 1), a difference
/// (coefficients 1 and −1), a fixed scale (one input).
public struct WeightedSum: Operation {
    public var backwardReads: BackwardReads { [] }
    public let coefficients: [Float]

    /// A sum of `coefficients.count` inputs weighted by `coefficients`.
    public init(_ coefficients: [Float]) throws {
        guard !coefficients.isEmpty, coefficients.allSatisfy(\.isFinite) else {
            throw MetaCoreError.argument("WeightedSum needs at least one finite coefficient, got \(coefficients)")
        }
        self.coefficients = coefficients
    }

    public func outputShape(for inputs: [[Int]]) throws -> [Int] {
        try commonShape(inputs, "WeightedSum(\(coefficients))", count: coefficients.count)
    }

    private func sum(_ x: [UnsafePointer<Float>?], _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        x.withUnsafeBufferPointer { xs in
            coefficients.withUnsafeBufferPointer { c in mc_weighted_sum(n, Int32(c.count), xs.baseAddress, c.baseAddress, y) }
        }
    }

    public func forward(_ p: OperationPass) { sum(p.x, p.y, p.batch * p.outputCount) }
    public func backward(_ p: OperationPass) {
        for (k, dx) in p.dx.enumerated() { if let dx { mc_scale(p.batch * p.outputCount, coefficients[k], p.dy, dx) } }
    }
    public func rForward(_ p: OperationPass) { sum(p.Rx, p.Ry, p.batch * p.outputCount) }
    public func rBackward(_ p: OperationPass) {
        for (k, Rdx) in p.Rdx.enumerated() { if let Rdx { mc_scale(p.batch * p.outputCount, coefficients[k], p.Rdy, Rdx) } }
    }
}

/// y = a ⊙ b, the elementwise product of two inputs of one shape: an LSTM's gates, a memory's erase.
public struct ElementwiseProduct: Operation {
    public var backwardReads: BackwardReads { .input }
    public init() {}
    public func outputShape(for inputs: [[Int]]) throws -> [Int] { try commonShape(inputs, "ElementwiseProduct", count: 2) }

    public func forward(_ p: OperationPass) { mc_multiply_forward(p.batch * p.outputCount, p.x[0], p.x[1], p.y) }
    public func backward(_ p: OperationPass) {
        mc_multiply_backward(p.batch * p.outputCount, p.x[0], p.x[1], p.dy, p.dx[0], p.dx[1])
    }
    public func rForward(_ p: OperationPass) {
        mc_multiply_rforward(p.batch * p.outputCount, p.x[0], p.Rx[0], p.x[1], p.Rx[1], p.Ry)
    }
    public func rBackward(_ p: OperationPass) {
        mc_multiply_rbackward(p.batch * p.outputCount, p.x[0], p.Rx[0], p.x[1], p.Rx[1], p.dy, p.Rdy, p.Rdx[0], p.Rdx[1])
    }
}

/// The inputs joined along the leading axis of each sample (features for vectors, channels for images);
/// the other axes must agree.
public struct Concatenate: Operation {
    public var backwardReads: BackwardReads { [] }
    public init() {}

    public func outputShape(for inputs: [[Int]]) throws -> [Int] {
        guard let first = inputs.first, !first.isEmpty else { throw MetaCoreError.shape("Concatenate needs inputs with at least one axis") }
        guard inputs.allSatisfy({ $0.count == first.count && $0.dropFirst() == first.dropFirst() }) else {
            throw MetaCoreError.shape("Concatenate joins along the leading axis; the other axes differ in \(inputs.map(describe).joined(separator: ", "))")
        }
        return [inputs.map { $0[0] }.reduce(0, +)] + first.dropFirst()
    }

    /// Copies each input's block into its place in the output (`gather`) or back out of it.
    private func blocks(_ p: OperationPass, _ body: (_ offset: Int, _ count: Int, _ input: Int) -> Void) {
        var offset = 0
        for i in p.inputShapes.indices {
            let count = p.inputCount(i)
            body(offset, count, i)
            offset += count
        }
    }

    public func forward(_ p: OperationPass) {
        blocks(p) { o, n, i in mc_copy_blocks(Int32(p.batch), Int32(n), p.x[i], n, p.y + o, p.outputCount) }
    }
    public func backward(_ p: OperationPass) {
        blocks(p) { o, n, i in if let dx = p.dx[i] { mc_copy_blocks(Int32(p.batch), Int32(n), p.dy + o, p.outputCount, dx, n) } }
    }
    public func rForward(_ p: OperationPass) {
        blocks(p) { o, n, i in
            if let Rx = p.Rx[i] { mc_copy_blocks(Int32(p.batch), Int32(n), Rx, n, p.Ry + o, p.outputCount) }
            else { for s in 0 ..< p.batch { zero(p.Ry + s * p.outputCount + o, n) } }
        }
    }
    public func rBackward(_ p: OperationPass) {
        blocks(p) { o, n, i in if let Rdx = p.Rdx[i] { mc_copy_blocks(Int32(p.batch), Int32(n), p.Rdy + o, p.outputCount, Rdx, n) } }
    }
}

/// The matrix product of two activations for each sample, C = op(A) op(B): attention scores (queries times
/// keys), a weighted read of a memory (weights times its rows), an outer-product write. Inputs are per-sample
/// matrices; `transposeA` (`transposeB`) means A (B) is used transposed.
public struct MatrixProduct: Operation {
    public var backwardReads: BackwardReads { .input }
    public let transposeA: Bool, transposeB: Bool

    public init(transposeA: Bool = false, transposeB: Bool = false) {
        self.transposeA = transposeA
        self.transposeB = transposeB
    }

    /// (m, n, k) of op(A) [m,k] op(B) [k,n].
    private func sizes(_ inputs: [[Int]]) -> (m: Int, n: Int, k: Int) {
        let (a, b) = (inputs[0], inputs[1])
        return (transposeA ? a[1] : a[0], transposeB ? b[0] : b[1], transposeA ? a[0] : a[1])
    }

    public func outputShape(for inputs: [[Int]]) throws -> [Int] {
        guard inputs.count == 2, inputs.allSatisfy({ $0.count == 2 }) else {
            throw MetaCoreError.shape("MatrixProduct takes two matrices per sample, got \(inputs.map(describe).joined(separator: ", ")) (Reshape a vector to 1xN or Nx1)")
        }
        let inner = (transposeB ? inputs[1][1] : inputs[1][0])
        let (m, n, k) = sizes(inputs)
        guard k == inner else {
            throw MetaCoreError.shape("MatrixProduct of \(describe(inputs[0]))\(transposeA ? "ᵀ" : "") and \(describe(inputs[1]))\(transposeB ? "ᵀ" : ""): inner sizes \(k) and \(inner) differ")
        }
        return [m, n]
    }

    private func call(_ p: OperationPass, _ body: (Int32, Int32, Int32, Int32, Int32, Int32) -> Void) {
        let (m, n, k) = sizes(p.inputShapes)
        body(Int32(p.batch), transposeA ? 1 : 0, transposeB ? 1 : 0, Int32(m), Int32(n), Int32(k))
    }

    public func forward(_ p: OperationPass) { call(p) { mc_matmul_forward($0, $1, $2, $3, $4, $5, p.x[0], p.x[1], p.y) } }
    public func backward(_ p: OperationPass) {
        call(p) { mc_matmul_backward($0, $1, $2, $3, $4, $5, p.x[0], p.x[1], p.dy, p.dx[0], p.dx[1]) }
    }
    public func rForward(_ p: OperationPass) {
        call(p) { mc_matmul_rforward($0, $1, $2, $3, $4, $5, p.x[0], p.Rx[0], p.x[1], p.Rx[1], p.Ry) }
    }
    public func rBackward(_ p: OperationPass) {
        call(p) { mc_matmul_rbackward($0, $1, $2, $3, $4, $5, p.x[0], p.Rx[0], p.x[1], p.Rx[1], p.dy, p.Rdy, p.Rdx[0], p.Rdx[1]) }
    }
}

/// A value that does not depend on the input or the parameters: a recurrence's zero initial state, an empty
/// memory. Takes no inputs.
public struct Constant: Operation {
    public var backwardReads: BackwardReads { [] }
    public let shape: [Int], value: Float

    public init(shape: [Int], value: Float = 0) throws {
        guard !shape.isEmpty, shape.allSatisfy({ $0 > 0 }), value.isFinite else {
            throw MetaCoreError.argument("Constant needs a shape of positive sizes and a finite value, got \(describe(shape)) and \(value)")
        }
        self.shape = shape
        self.value = value
    }

    public func outputShape(for inputs: [[Int]]) throws -> [Int] {
        guard inputs.isEmpty else { throw MetaCoreError.shape("Constant takes no inputs, got \(inputs.count)") }
        return shape
    }

    public func forward(_ p: OperationPass) { p.y.update(repeating: value, count: p.batch * p.outputCount) }
    public func backward(_ p: OperationPass) {}
    public func rForward(_ p: OperationPass) { zero(p.Ry, p.batch * p.outputCount) }
    public func rBackward(_ p: OperationPass) {}
}
