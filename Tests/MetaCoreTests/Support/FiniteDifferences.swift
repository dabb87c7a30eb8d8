@testable import MetaCore

/// ‖a − b‖ / max(‖a‖, ‖b‖, floor): the relative error of two vectors, in double.
func relativeError(_ a: [Double], _ b: [Double], floor: Double = 1e-6) -> Double {
    precondition(a.count == b.count)
    let diff = zip(a, b).reduce(0.0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }.squareRoot()
    let na = a.reduce(0.0) { $0 + $1 * $1 }.squareRoot(), nb = b.reduce(0.0) { $0 + $1 * $1 }.squareRoot()
    return diff / max(na, nb, floor)
}

func relativeError(_ a: Double, _ b: Double, floor: Double = 1e-6) -> Double {
    abs(a - b) / max(abs(a), abs(b), floor)
}

func dot(_ a: [Float], _ b: [Float]) -> Double {
    zip(a, b).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
}

extension RandomSource {
    /// `count` standard-normal values scaled by `scale`.
    mutating func normals(_ count: Int, scale: Float = 1) -> [Float] { (0 ..< count).map { _ in normal() * scale } }

    /// A tensor of shape `shape` with standard-normal entries.
    mutating func tensor(_ shape: [Int], scale: Float = 1) -> Tensor {
        try! Tensor(shape: shape, scalars: normals(shape.reduce(1, *), scale: scale))
    }

    /// A batch of `n` random inputs for `model`: labels in `0 ..< classes` or random regression targets.
    mutating func batch(for model: Model, count n: Int, classification: Bool) -> Batch {
        let inputs = tensor([n] + model.inputShape)
        if classification {
            let classes = model.outputShape[0]
            return try! Batch(inputs: inputs, labels: (0 ..< n).map { Int32($0 % classes) })
        }
        return try! Batch(inputs: inputs, values: tensor([n] + model.outputShape))
    }
}
