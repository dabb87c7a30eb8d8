/// A dense float32 tensor: a shape and its scalars in row-major order (NCHW for images).
///
/// A value type: copies are cheap until one of them is mutated (copy-on-write of the scalar array).
public struct Tensor: Equatable, Sendable {
    public private(set) var shape: [Int]
    public var scalars: [Float]

    /// A tensor of the given shape; throws unless `scalars.count` is the product of `shape`.
    public init(shape: [Int], scalars: [Float]) throws {
        guard shape.allSatisfy({ $0 >= 0 }) else { throw MetaCoreError.shape("negative dimension in shape \(shape)") }
        let count = shape.reduce(1, *)
        guard scalars.count == count else {
            throw MetaCoreError.shape("shape \(describe(shape)) needs \(count) scalars, got \(scalars.count)")
        }
        self.shape = shape
        self.scalars = scalars
    }

    /// A tensor of zeros.
    public init(zeros shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in shape \(shape)")
        self.shape = shape
        self.scalars = [Float](repeating: 0, count: shape.reduce(1, *))
    }

    /// Number of scalars.
    public var count: Int { scalars.count }

    /// The same scalars under another shape with the same element count.
    public func reshaped(_ newShape: [Int]) throws -> Tensor {
        try Tensor(shape: newShape, scalars: scalars)
    }
}
