/// Finite-difference derivatives of functions of a parameter vector, the reference the analytic
/// derivatives are checked against (by the tests and by `metactl verify`).
///
/// The model computes in float32, so the stencils are fourth-order central differences
/// f'(0) ≈ [f(−2h) − 8 f(−h) + 8 f(h) − f(2h)] / 12h: their truncation error is O(h⁴), which lets h be
/// large enough that float rounding (≈1e-7 relative) stays far below the tolerances, while a wrong term
/// in a derivative (typically 1e-2 … 1 relative) does not.
public enum FiniteDifferences {
    /// The derivative of `f(θ + t v)` at t = 0.
    public static func directional(_ f: ([Float]) throws -> Double, at theta: [Float], along v: [Float], step h: Double) rethrows -> Double {
        func at(_ t: Double) throws -> Double { try f(zip(theta, v).map { $0 + Float(t) * $1 }) }
        let far: Double = try at(-2 * h) - at(2 * h)
        let near: Double = try 8 * (at(h) - at(-h))
        return (far + near) / (12 * h)
    }

    /// The derivative of the vector function `g(θ + t v)` at t = 0: for `g` a gradient, this is `H v`.
    public static func directional(_ g: ([Float]) throws -> [Float], at theta: [Float], along v: [Float], step h: Double) rethrows -> [Double] {
        func at(_ t: Double) throws -> [Float] { try g(zip(theta, v).map { $0 + Float(t) * $1 }) }
        let m2 = try at(-2 * h), m1 = try at(-h), p1 = try at(h), p2 = try at(2 * h)
        return (0 ..< m2.count).map { (i: Int) -> Double in
            let far: Double = Double(m2[i]) - Double(p2[i])
            let near: Double = 8 * (Double(p1[i]) - Double(m1[i]))
            return (far + near) / (12 * h)
        }
    }
}
