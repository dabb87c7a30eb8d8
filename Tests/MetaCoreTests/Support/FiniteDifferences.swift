@testable import MetaCore

/// Finite-difference references for the analytic derivatives.
///
/// The model computes in float32, so the stencils are fourth-order central differences
/// f'(0) ≈ [f(−2h) − 8 f(−h) + 8 f(h) − f(2h)] / 12h: their truncation error is O(h⁴), which lets h be
/// large enough that float rounding (≈1e-7 relative) stays far below the tolerances, while a wrong term
/// in a derivative (typically 1e-2 … 1 relative) does not.
enum FiniteDifferences {
    /// The derivative of `f(θ + t v)` at t = 0.
    static func directional(_ f: ([Float]) throws -> Double, at theta: [Float], along v: [Float], step h: Double) rethrows -> Double {
        func at(_ t: Double) throws -> Double { try f(zip(theta, v).map { $0 + Float(t) * $1 }) }
        let far: Double = try at(-2 * h) - at(2 * h)
        let near: Double = try 8 * (at(h) - at(-h))
        return (far + near) / (12 * h)
    }

    /// The derivative of the vector function `g(θ + t v)` at t = 0: for `g` a gradient, this is `H v`.
    static func directional(_ g: ([Float]) throws -> [Float], at theta: [Float], along v: [Float], step h: Double) rethrows -> [Double] {
        func at(_ t: Double) throws -> [Float] { try g(zip(theta, v).map { $0 + Float(t) * $1 }) }
        let m2 = try at(-2 * h), m1 = try at(-h), p1 = try at(h), p2 = try at(2 * h)
        return (0 ..< m2.count).map { (i: Int) -> Double in
            let far: Double = Double(m2[i]) - Double(p2[i])
            let near: Double = 8 * (Double(p1[i]) - Double(m1[i]))
            return (far + near) / (12 * h)
        }
    }
}

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
