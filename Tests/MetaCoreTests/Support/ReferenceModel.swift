@testable import MetaCore

/// An independent, naive double-precision implementation of every layer and loss, written from the
/// definitions (not from the kernels), evaluated on hyper-dual numbers: `loss(θ + ε₁u + ε₂v)` yields the
/// loss, ∇L·u, ∇L·v and uᵀHv exactly.
struct ReferenceModel {
    let model: Model
    var normalization: Normalization = .transductive
    /// Running statistics for inference mode, laid out by `model.stateLayout`.
    var state: [Float]

    init(_ model: Model, normalization: Normalization, state: [Float]) {
        self.model = model
        self.normalization = normalization
        self.state = state
    }

    /// The loss at θ + shift·u + ε₁u + ε₂v (the shift in double precision, for finite differences).
    func loss(_ theta: [Float], u: [Float], v: [Float], batch: Batch, shift: Double = 0) -> HyperDual {
        let p = theta.indices.map { HyperDual(Double(theta[$0]) + shift * Double(u[$0]), Double(u[$0]), Double(v[$0])) }
        var x = batch.inputs.scalars.map { HyperDual(Double($0)) }
        let n = batch.count
        for (l, layer) in model.layers.enumerated() {
            let params = Array(p[model.parameterRange(ofLayer: l)])
            let state = Array(self.state[model.stateRange(ofLayer: l)]).map(Double.init)
            x = forward(layer, x, n: n, input: model.shapes[l], output: model.shapes[l + 1], params, state)
        }
        switch batch.targets {
        case .labels(let labels):
            let k = model.outputShape[0]
            var total = HyperDual.zero
            for i in 0 ..< n {
                let row = Array(x[i * k ..< (i + 1) * k])
                let m = row.map(\.a).max()!
                var sum = HyperDual.zero
                for z in row { sum += (z - HyperDual(m)).exp }
                total += sum.log + HyperDual(m) - row[Int(labels[i])]
            }
            return total / Double(n)
        case .values(let targets):
            var total = HyperDual.zero
            for (z, t) in zip(x, targets.scalars) { let d = z - HyperDual(Double(t)); total += d * d }
            return total / Double(x.count)
        }
    }

    private func forward(_ layer: any Layer, _ x: [HyperDual], n: Int, input: [Int], output: [Int],
                         _ p: [HyperDual], _ state: [Double]) -> [HyperDual] {
        switch layer {
        case let linear as Linear:
            let (i, o) = (linear.inputs, linear.outputs)
            return (0 ..< n * o).map { index in
                let (s, j) = index.quotientAndRemainder(dividingBy: o)
                var acc = p[o * i + j]
                for q in 0 ..< i { acc += x[s * i + q] * p[j * i + q] }
                return acc
            }
        case let conv as Conv2d:
            let (c, h, w) = (input[0], input[1], input[2]), (o, oh, ow) = (output[0], output[1], output[2])
            let k = conv.kernel
            var y = [HyperDual](repeating: .zero, count: n * o * oh * ow)
            for s in 0 ..< n { for f in 0 ..< o { for r in 0 ..< oh { for q in 0 ..< ow {
                var acc = p[o * c * k * k + f]
                for ch in 0 ..< c { for ki in 0 ..< k { for kj in 0 ..< k {
                    let iy = r * conv.stride - conv.padding + ki, ix = q * conv.stride - conv.padding + kj
                    guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                    acc += x[((s * c + ch) * h + iy) * w + ix] * p[((f * c + ch) * k + ki) * k + kj]
                } } }
                y[((s * o + f) * oh + r) * ow + q] = acc
            } } } }
            return y
        case let bn as BatchNorm:
            let c = bn.channels, spatial = input.reduce(1, *) / c, m = Double(n * spatial)
            var y = x
            for ch in 0 ..< c {
                let indices = (0 ..< n).flatMap { s in (0 ..< spatial).map { (s * c + ch) * spatial + $0 } }
                let mean: HyperDual, variance: HyperDual
                if normalization == .inference {
                    mean = HyperDual(state[ch]); variance = HyperDual(state[c + ch])
                } else {
                    var sum = HyperDual.zero
                    for i in indices { sum += x[i] }
                    mean = sum / m
                    var sq = HyperDual.zero
                    for i in indices { let d = x[i] - mean; sq += d * d }
                    variance = sq / m
                }
                let invstd = (variance + HyperDual(Double(bn.epsilon))).squareRoot.reciprocal
                for i in indices { y[i] = p[ch] * (x[i] - mean) * invstd + p[c + ch] }
            }
            return y
        case is ReLU:
            return x.map { $0.a > 0 ? $0 : .zero }
        case is Tanh:
            return x.map(\.tanh)
        case let leaky as LeakyReLU:
            return x.map { $0.a > 0 ? $0 : $0 * Double(leaky.slope) }
        case is Sigmoid:
            return x.map { (HyperDual(1) + (-$0).exp).reciprocal }
        case let pool as MaxPool:
            let (c, h, w) = (input[0], input[1], input[2]), (oh, ow) = (output[1], output[2]), k = pool.size
            var y = [HyperDual](repeating: .zero, count: n * c * oh * ow)
            for plane in 0 ..< n * c { for r in 0 ..< oh { for q in 0 ..< ow {
                var best = x[(plane * h + r * k) * w + q * k]
                for i in 0 ..< k { for j in 0 ..< k {
                    let candidate = x[(plane * h + r * k + i) * w + q * k + j]
                    if candidate.a > best.a { best = candidate }
                } }
                y[(plane * oh + r) * ow + q] = best
            } } }
            return y
        case is Flatten:
            return x
        case is Softmax:
            let f = input[0]
            return (0 ..< n).flatMap { r -> [HyperDual] in
                let row = x[r * f ..< (r + 1) * f], e = row.map { $0.exp }
                let total = e.reduce(HyperDual.zero, +)
                return e.map { $0 / total }
            }
        case is L2Normalize:
            let f = input[0]
            return (0 ..< n).flatMap { r -> [HyperDual] in
                let row = x[r * f ..< (r + 1) * f]
                let length = (row.reduce(HyperDual(1e-12)) { $0 + $1 * $1 }).squareRoot
                return row.map { $0 / length }
            }
        case let pool as GlobalPool:
            let size = input[1] * input[2]
            return (0 ..< n * input[0]).map { plane in
                let total = x[plane * size ..< (plane + 1) * size].reduce(HyperDual.zero, +)
                return pool.reduction == .mean ? total / Double(size) : total
            }
        default:
            fatalError("no reference for layer \(type(of: layer))")
        }
    }
}
