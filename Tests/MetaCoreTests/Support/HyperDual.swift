import Foundation

/// A hyper-dual number a + b ε₁ + c ε₂ + d ε₁ε₂ (ε₁² = ε₂² = 0) in double precision.
///
/// Evaluating f at θ + ε₁ u + ε₂ v gives f(θ) in `a`, the directional derivatives ∇f·u in `b` and ∇f·v in
/// `c`, and the second derivative uᵀ H v in `d` — exactly, with no step size, and on the same branch of
/// every max / ReLU as f(θ) itself. This is the tests' independent double-precision reference.
struct HyperDual {
    var a: Double, b: Double = 0, c: Double = 0, d: Double = 0

    init(_ a: Double, _ b: Double = 0, _ c: Double = 0, _ d: Double = 0) {
        self.a = a; self.b = b; self.c = c; self.d = d
    }

    static let zero = HyperDual(0)

    /// f applied to x, given f(a), f'(a) and f''(a).
    private func apply(_ f: Double, _ f1: Double, _ f2: Double) -> HyperDual {
        HyperDual(f, f1 * b, f1 * c, f1 * d + f2 * b * c)
    }

    static func + (x: HyperDual, y: HyperDual) -> HyperDual { HyperDual(x.a + y.a, x.b + y.b, x.c + y.c, x.d + y.d) }
    static func - (x: HyperDual, y: HyperDual) -> HyperDual { HyperDual(x.a - y.a, x.b - y.b, x.c - y.c, x.d - y.d) }
    static prefix func - (x: HyperDual) -> HyperDual { HyperDual(-x.a, -x.b, -x.c, -x.d) }
    static func * (x: HyperDual, y: HyperDual) -> HyperDual {
        HyperDual(x.a * y.a, x.a * y.b + x.b * y.a, x.a * y.c + x.c * y.a, x.a * y.d + x.b * y.c + x.c * y.b + x.d * y.a)
    }
    static func * (x: HyperDual, s: Double) -> HyperDual { HyperDual(x.a * s, x.b * s, x.c * s, x.d * s) }
    static func / (x: HyperDual, y: HyperDual) -> HyperDual { x * y.reciprocal }
    static func / (x: HyperDual, s: Double) -> HyperDual { x * (1 / s) }
    static func += (x: inout HyperDual, y: HyperDual) { x = x + y }

    var reciprocal: HyperDual { apply(1 / a, -1 / (a * a), 2 / (a * a * a)) }
    var squareRoot: HyperDual { let r = a.squareRoot(); return apply(r, 0.5 / r, -0.25 / (r * a)) }
    var tanh: HyperDual { let t = Foundation.tanh(a); return apply(t, 1 - t * t, -2 * t * (1 - t * t)) }
    var exp: HyperDual { let e = Foundation.exp(a); return apply(e, e, e) }
    var log: HyperDual { apply(Foundation.log(a), 1 / a, -1 / (a * a)) }
}
