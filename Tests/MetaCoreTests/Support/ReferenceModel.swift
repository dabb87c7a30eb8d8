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
        let packed = batch.inputs.scalars.map { HyperDual(Double($0)) }
        let n = batch.count
        // The inputs unpacked from each sample's packed values, then every node's output in node order.
        let counts = model.inputShapes.map { $0.reduce(1, *) }, total = counts.reduce(0, +)
        var values: [[HyperDual]] = counts.indices.map { k in
            let offset = counts[..<k].reduce(0, +)
            return (0 ..< n).flatMap { s in packed[s * total + offset ..< s * total + offset + counts[k]] }
        }
        for node in model.nodes {
            let params = Array(p[model.parameterRange(ofLayer: node.owner)])
            let state = Array(self.state[model.stateRange(ofLayer: node.owner)]).map(Double.init)
            let output = model.shapes[values.count]
            switch node.step {
            case .layer(let layer):
                values.append(forward(layer, values[node.inputs[0]], n: n, input: model.shapes[node.inputs[0]], output: output, params, state))
            case .operation(let operation):
                values.append(forward(operation, node.inputs.map { values[$0] }, n: n, inputs: node.inputs.map { model.shapes[$0] }, output: output))
            }
        }
        // The mean loss of each group's samples (all of them for a model of one group), summed.
        let x = values[model.output], per = n / model.groups, width = model.outputShape.reduce(1, *)
        var loss = HyperDual.zero
        for group in 0 ..< model.groups {
            let samples = group * per ..< (group + 1) * per
            var sum = HyperDual.zero
            switch batch.targets {
            case .labels(let labels):
                for i in samples {
                    let row = Array(x[i * width ..< (i + 1) * width])
                    let m = row.map(\.a).max()!
                    var exps = HyperDual.zero
                    for z in row { exps += (z - HyperDual(m)).exp }
                    sum += exps.log + HyperDual(m) - row[Int(labels[i])]
                }
                loss += sum / Double(per)
            case .values(let targets):
                for j in samples.lowerBound * width ..< samples.upperBound * width {
                    let d = x[j] - HyperDual(Double(targets.scalars[j])); sum += d * d
                }
                loss += sum / Double(per * width)
            }
        }
        return loss
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
        case let grouped as GroupedLinear:
            // Sample s is in group s / (n / groups), whose weight and bias start at that group's block.
            let (i, o) = (grouped.linear.inputs, grouped.linear.outputs), block = o * i + o, per = n / grouped.groups
            return (0 ..< n * o).map { index in
                let (s, j) = index.quotientAndRemainder(dividingBy: o)
                let w = s / per * block
                var acc = p[w + o * i + j]
                for q in 0 ..< i { acc += x[s * i + q] * p[w + j * i + q] }
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
                let scale = bn.learnsScale ? p[ch] : HyperDual(1), shift = p[(bn.learnsScale ? c : 0) + ch]
                for i in indices { y[i] = scale * (x[i] - mean) * invstd + shift }
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
        case is Flatten, is Reshape:
            return x
        case let slice as Slice:
            let count = input.reduce(1, *), inner = count / input[0]
            return (0 ..< n).flatMap { s in x[s * count + slice.range.lowerBound * inner ..< s * count + slice.range.upperBound * inner] }
        case is Softmax:
            let f = input.last!
            return (0 ..< n * input.reduce(1, *) / f).flatMap { r -> [HyperDual] in
                let row = x[r * f ..< (r + 1) * f], e = row.map { $0.exp }
                let total = e.reduce(HyperDual.zero, +)
                return e.map { $0 / total }
            }
        case is L2Normalize:
            let f = input.last!
            return (0 ..< n * input.reduce(1, *) / f).flatMap { r -> [HyperDual] in
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

    private func forward(_ operation: any Operation, _ x: [[HyperDual]], n: Int, inputs: [[Int]], output: [Int]) -> [HyperDual] {
        let size = output.reduce(1, *)
        switch operation {
        case let sum as WeightedSum:
            return (0 ..< n * size).map { i in zip(x, sum.coefficients).reduce(HyperDual.zero) { $0 + $1.0[i] * Double($1.1) } }
        case is ElementwiseProduct:
            return zip(x[0], x[1]).map { $0 * $1 }
        case is Concatenate:
            let counts = inputs.map { $0.reduce(1, *) }
            return (0 ..< n).flatMap { s in counts.indices.flatMap { k in x[k][s * counts[k] ..< (s + 1) * counts[k]] } }
        case let product as MatrixProduct:
            let (a, b) = (inputs[0], inputs[1]), (m, q) = (output[0], output[1])
            let k = product.transposeA ? a[0] : a[1]
            // Element (i, j) of op(M) for a stored matrix M of shape `shape`.
            func at(_ values: [HyperDual], _ s: Int, _ shape: [Int], _ transposed: Bool, _ i: Int, _ j: Int) -> HyperDual {
                values[s * shape[0] * shape[1] + (transposed ? j * shape[1] + i : i * shape[1] + j)]
            }
            return (0 ..< n).flatMap { s in (0 ..< m * q).map { e in
                let (i, j) = e.quotientAndRemainder(dividingBy: q)
                return (0 ..< k).reduce(HyperDual.zero) { $0 + at(x[0], s, a, product.transposeA, i, $1) * at(x[1], s, b, product.transposeB, $1, j) }
            } }
        case let cell as LSTMCell:
            let h = cell.hidden
            func sigmoid(_ x: HyperDual) -> HyperDual { (HyperDual(1) + (-x).exp).reciprocal }
            return (0 ..< n).flatMap { s -> [HyperDual] in
                let z = x[0][s * 4 * h ..< (s + 1) * 4 * h].map { $0 }, c = x[1][s * h ..< (s + 1) * h].map { $0 }
                let next = (0 ..< h).map { j in sigmoid(z[h + j]) * c[j] + sigmoid(z[j]) * z[2 * h + j].tanh }
                return (0 ..< h).map { j in sigmoid(z[3 * h + j]) * next[j].tanh } + next
            }
        case let constant as Constant:
            return [HyperDual](repeating: HyperDual(Double(constant.value)), count: n * size)
        default:
            fatalError("no reference for operation \(type(of: operation))")
        }
    }
}
