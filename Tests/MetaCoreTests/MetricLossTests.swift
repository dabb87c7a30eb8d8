import CKernels
import Foundation
import Testing
@testable import MetaCore

/// The episode losses of the metric learners against central finite differences, on random embeddings.
@Suite("Metric losses")
struct MetricLossTests {
    /// An episode of `ways` classes with `shots` support and `queries` query rows each, embeddings in R^d.
    struct Episode {
        let support: Int, query: Int, d: Int, ways: Int
        var z: [Float]
        let labels: [Int32]
        init(ways: Int, shots: Int, queries: Int, d: Int, seed: UInt64) {
            var random = RandomSource(seed: seed)
            support = ways * shots; query = ways * queries; self.d = d; self.ways = ways
            z = random.normals((support + query) * d)
            labels = (0 ..< support).map { Int32($0 % ways) } + (0 ..< query).map { Int32($0 % ways) }
        }
    }

    static let learners: [any MetricMetaLearner] = [PrototypicalNetworks(), MatchingNetworks(initialScale: 3),
                                                    try! RidgeRegressionHead(lambda: 0.7, learnsLambda: true, initialScale: 2), SiameseNetworks()]
    /// The learners' own meta-parameters: Matching Networks' cosine scale; R2-D2's logit scale, bias and λ;
    /// the Siamese head's weights (one per feature of the 5- and 8-dimensional test embeddings) and bias.
    static let extras: [[Float]] = [[], [3], [2, 0.3, 0.7], [-0.6, 0.4, -0.9, -0.2, 0.7, -0.5, -0.3, -0.8, 0.1]]

    /// `extras[which]` for embeddings of dimension `d`.
    static func extra(_ which: Int, d: Int) -> [Float] { which == 3 ? Array(extras[3].prefix(d)) + [0.2] : extras[which] }

    func loss(_ learner: any MetricMetaLearner, _ e: Episode, z: [Float], extra: [Float] = [],
              gradient: UnsafeMutablePointer<Float>?, extraGradient: inout [Float]) -> (Double, Int32) {
        var correct: Int32 = 0
        let value = z.withUnsafeBufferPointer { zp in
            e.labels.withUnsafeBufferPointer { l in
                extra.withUnsafeBufferPointer { x in
                    extraGradient.withUnsafeMutableBufferPointer { xg in
                        learner.episodeLoss(support: e.support, query: e.query, dimension: e.d, ways: e.ways, z: zp.baseAddress!,
                                            labels: l.baseAddress!, extra: x, gradient: gradient, extraGradient: xg, correct: &correct)
                    }
                }
            }
        }
        return (value, correct)
    }

    func loss(_ learner: any MetricMetaLearner, _ e: Episode, z: [Float], extra: [Float]) -> (Double, Int32) {
        var unused = [Float](repeating: 0, count: extra.count)
        return loss(learner, e, z: z, extra: extra, gradient: nil, extraGradient: &unused)
    }

    /// The largest relative disagreement between the episode loss's gradient (embeddings and the learner's own
    /// parameters) and central differences of `step`. The loss is computed in double from the float inputs, so
    /// each difference is divided by the step the floats really took.
    func finiteDifferenceError(_ learner: any MetricMetaLearner, _ e: Episode, extra: [Float], step: Float) -> Double {
        var gradient = [Float](repeating: .nan, count: e.z.count), extraGradient = [Float](repeating: .nan, count: extra.count)
        _ = gradient.withUnsafeMutableBufferPointer { loss(learner, e, z: e.z, extra: extra, gradient: $0.baseAddress, extraGradient: &extraGradient) }
        var worst = 0.0
        func compare(_ analytic: Float, _ plus: (z: [Float], extra: [Float]), _ minus: (z: [Float], extra: [Float]), _ taken: Float) {
            let numeric = (loss(learner, e, z: plus.z, extra: plus.extra).0 - loss(learner, e, z: minus.z, extra: minus.extra).0) / Double(taken)
            worst = max(worst, abs(numeric - Double(analytic)) / max(abs(numeric), 1e-3))
        }
        for i in e.z.indices {
            var plus = e.z, minus = e.z
            plus[i] += step; minus[i] -= step
            compare(gradient[i], (plus, extra), (minus, extra), plus[i] - minus[i])
        }
        for i in extra.indices {
            var plus = extra, minus = extra
            plus[i] += step; minus[i] -= step
            compare(extraGradient[i], (e.z, plus), (e.z, minus), plus[i] - minus[i])
        }
        return worst
    }

    /// (Siamese networks' |·| has kinks that random embeddings put within a step of 1e-2: they are checked
    /// away from them, below.)
    @Test(arguments: [0, 1, 2])
    func gradientMatchesFiniteDifferences(_ which: Int) {
        let learner = Self.learners[which], extra = Self.extra(which, d: 5)
        for (ways, shots) in [(3, 1), (4, 3)] {
            let e = Episode(ways: ways, shots: shots, queries: 2, d: 5, seed: UInt64(ways * 10 + shots))
            let worst = finiteDifferenceError(learner, e, extra: extra, step: 1e-2)
            #expect(worst < 2e-3, "\(learner.name) \(ways)-way \(shots)-shot: worst relative error \(worst)")
        }
    }

    /// Queries that sit on their class's support embedding are classified correctly by both learners.
    @Test(arguments: [0, 1, 2, 3])
    func queriesOnTheirSupportAreClassifiedCorrectly(_ which: Int) {
        var e = Episode(ways: 5, shots: 1, queries: 3, d: 8, seed: 9)
        for q in 0 ..< e.query {
            let s = Int(e.labels[e.support + q])
            for j in 0 ..< e.d { e.z[(e.support + q) * e.d + j] = e.z[s * e.d + j] * 1.01 }
        }
        let (value, correct) = loss(Self.learners[which], e, z: e.z, extra: Self.extra(which, d: e.d).map { which == 3 ? -abs($0) : $0 })
        #expect(correct == Int32(e.query))
        #expect(value.isFinite && value > 0)
    }

    /// Prototypes are class means: with every query at its prototype and classes far apart, the loss is ~0.
    @Test func prototypesAreClassMeans() {
        var e = Episode(ways: 3, shots: 4, queries: 1, d: 4, seed: 3)
        for q in 0 ..< e.query {
            let k = Int(e.labels[e.support + q])
            for j in 0 ..< e.d {
                let rows = (0 ..< e.support).filter { Int(e.labels[$0]) == k }
                for s in rows { e.z[s * e.d + j] += Float(k) * 100 * (j == 0 ? 1 : 0) }
                e.z[(e.support + q) * e.d + j] = rows.map { e.z[$0 * e.d + j] }.reduce(0, +) / Float(rows.count)
            }
        }
        #expect(loss(PrototypicalNetworks(), e, z: e.z, extra: []).0 < 1e-6)
    }

    /// Siamese pairs away from |·|'s kink (every coordinate of every query 0.5 or more from every support's):
    /// the gradient equals central differences of step 1e-3, well inside the distance to the kink.
    @Test func siameseGradientAwayFromTheKink() {
        var e = Episode(ways: 3, shots: 2, queries: 2, d: 4, seed: 31)
        for r in 0 ..< e.support { for j in 0 ..< e.d { e.z[r * e.d + j] = Float(r) * 1.3 + Float(j) * 0.1 } }
        for q in 0 ..< e.query { for j in 0 ..< e.d { e.z[(e.support + q) * e.d + j] = Float(q) * 1.3 + 0.65 + Float(j) * 0.1 } }
        let extra: [Float] = [-0.6, 0.4, -0.9, -0.2, 0.2], learner = SiameseNetworks()
        let worst = finiteDifferenceError(learner, e, extra: extra, step: 1e-3)
        #expect(worst < 1e-3, "worst relative error \(worst)")
    }

    /// The Siamese meta-gradient end to end — the embedding network's parameters, then w and b — on a linear
    /// embedding whose query and support embeddings differ by at least 0.3 in every coordinate, so that steps
    /// of 1e-3 along unit directions stay clear of |·|'s kinks (checked).
    @Test func siameseMetaGradientThroughALinearEmbedding() throws {
        let model = try Model(inputShape: [3], layers: [Linear(3, 4)])
        let support: [Float] = [0, 0, 0, 2, 0, 0, 0, 2, 0], query: [Float] = [0.5, 0.7, 0.3, 2.4, 0.3, 0.6, 0.4, 2.5, -0.5]
        let task = Task(support: try Batch(inputs: Tensor(shape: [3, 3], scalars: support), labels: [0, 1, 2]),
                        query: try Batch(inputs: Tensor(shape: [3, 3], scalars: query), labels: [0, 1, 2]))
        let learner = SiameseNetworks(), workspace = Workspace(model: model)
        var meta = learner.initialMetaParameters(for: model, seed: 4)
        // z = (x₁, x₂, x₃, x₁ + x₂ + x₃): every query coordinate 0.3 or more from every support's.
        let weight = try #require(model.layout.entries.first { $0.name == "0.weight" }), bias = try #require(model.layout.entries.first { $0.name == "0.bias" })
        meta.replaceSubrange(weight.range, with: [1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1])
        meta.replaceSubrange(bias.range, with: [0, 0, 0, 0])
        meta[model.parameterCount ..< model.parameterCount + 4] = [-0.6, 0.4, -0.9, -0.2]
        let embeddings = try workspace.predict(at: Array(meta[..<model.parameterCount]), inputs: Tensor(shape: [6, 3], scalars: support + query)).scalars
        var closest = Float.infinity
        for q in 3 ..< 6 { for r in 0 ..< 3 { for j in 0 ..< 4 { closest = min(closest, abs(embeddings[q * 4 + j] - embeddings[r * 4 + j])) } } }
        try #require(closest > 0.2, "embeddings too close to a kink: \(closest)")
        var gradient: [Float] = []
        _ = try learner.metaGradient(meta, task: task, workspace: workspace, into: &gradient)
        var random = RandomSource(seed: 8)
        for (name, range) in [("all", 0 ..< meta.count)] + learner.extraMetaParameters(for: model) + model.layout.entries.map({ ($0.name, $0.range) }) {
            var u = [Float](repeating: 0, count: meta.count)
            for i in range { u[i] = random.normal() }
            u.scale(by: Float(1 / u.norm))
            let analytic = zip(gradient, u).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            let numeric = try FiniteDifferences.directional({ try learner.metaLoss($0, task: task, workspace: workspace).loss }, at: meta, along: u, step: 1e-3)
            #expect(abs(analytic - numeric) < 2e-3 * max(abs(numeric), 1e-2), "\(name): analytic \(analytic), finite differences \(numeric)")
        }
    }

    /// The ROC area by ranks equals the fraction of (positive, negative) pairs in order, ties counting half.
    @Test func areaUnderROCCountsOrderedPairs() {
        var random = RandomSource(seed: 12)
        let positives = (0 ..< 40).map { _ in Double(Int(random.normal() * 3 + 1)) }, negatives = (0 ..< 30).map { _ in Double(Int(random.normal() * 3)) }
        var ordered = 0.0
        for p in positives { for n in negatives { ordered += p > n ? 1 : p == n ? 0.5 : 0 } }
        #expect(abs(SiameseNetworks.areaUnderROC(positives: positives, negatives: negatives) - ordered / 1200) < 1e-12)
        #expect(SiameseNetworks.areaUnderROC(positives: [2, 3], negatives: [0, 1]) == 1)
        #expect(SiameseNetworks.areaUnderROC(positives: [1], negatives: [1]) == 0.5)
    }

    /// R2-D2's loss by the textbook formula in double — the primal ridge solution W = (XᵀX + λI)⁻¹XᵀY with an
    /// explicit inverse, rather than the kernel's Woodbury form solved by Cholesky — for the support-size system
    /// and the feature-size one alike.
    static func ridgeReference(_ e: Episode, z: [Double], lambda: Double, scale: Double, bias: Double) -> Double {
        let n = e.support, dim = e.d + 1, root = Double(n).squareRoot()
        let x: [[Double]] = (0 ..< n).map { s in (0 ..< e.d).map { z[s * e.d + $0] / root } + [1 / root] }
        let y: [[Double]] = (0 ..< n).map { s in (0 ..< e.ways).map { $0 == Int(e.labels[s]) ? 1 / root : 0 } }
        // (XᵀX + λI)⁻¹ by Gauss-Jordan elimination with partial pivoting.
        var a = [[Double]](repeating: [Double](repeating: 0, count: dim), count: dim)
        for i in 0 ..< dim {
            for j in 0 ..< dim {
                var sum = i == j ? lambda : 0
                for s in 0 ..< n { sum += x[s][i] * x[s][j] }
                a[i][j] = sum
            }
        }
        var inverse: [[Double]] = (0 ..< dim).map { i in (0 ..< dim).map { $0 == i ? 1.0 : 0 } }
        for c in 0 ..< dim {
            let p = (c ..< dim).max { abs(a[$0][c]) < abs(a[$1][c]) }!
            a.swapAt(c, p); inverse.swapAt(c, p)
            let pivot = a[c][c]
            for j in 0 ..< dim { a[c][j] /= pivot; inverse[c][j] /= pivot }
            for r in 0 ..< dim where r != c {
                let f = a[r][c]
                for j in 0 ..< dim { a[r][j] -= f * a[c][j]; inverse[r][j] -= f * inverse[c][j] }
            }
        }
        let xty: [[Double]] = (0 ..< dim).map { i in (0 ..< e.ways).map { k in (0 ..< n).reduce(0.0) { $0 + x[$1][i] * y[$1][k] } } }
        let w: [[Double]] = (0 ..< dim).map { i in (0 ..< e.ways).map { k in (0 ..< dim).reduce(0.0) { $0 + inverse[i][$1] * xty[$1][k] } } }
        var total = 0.0
        for q in 0 ..< e.query {
            let row: [Double] = (0 ..< e.d).map { z[(n + q) * e.d + $0] } + [1]
            let logits: [Double] = (0 ..< e.ways).map { k in scale * (0 ..< dim).reduce(0.0) { $0 + row[$1] * w[$1][k] } + bias }
            let m = logits.max()!
            total += log(logits.reduce(0) { $0 + exp($1 - m) }) + m - logits[Int(e.labels[n + q])]
        }
        return total / Double(e.query)
    }

    /// The kernel's loss equals the explicit-inverse reference, and its gradient (embeddings, scale, bias, λ)
    /// equals central differences of the reference in double, to float rounding — with fewer support rows than
    /// features (the Woodbury system is the smaller) and more.
    @Test func ridgeHeadMatchesTheExplicitInverseReference() {
        for (ways, shots, d) in [(3, 1, 6), (4, 3, 5)] {
            let e = Episode(ways: ways, shots: shots, queries: 2, d: d, seed: UInt64(ways * 100 + shots))
            let extra: [Float] = [2, 0.3, 0.7], learner = Self.learners[2]
            var gradient = [Float](repeating: .nan, count: e.z.count), extraGradient = [Float](repeating: .nan, count: 3)
            let value = gradient.withUnsafeMutableBufferPointer { loss(learner, e, z: e.z, extra: extra, gradient: $0.baseAddress, extraGradient: &extraGradient) }.0
            let z = e.z.map(Double.init)
            let reference = { (z: [Double], p: [Double]) in Self.ridgeReference(e, z: z, lambda: p[2], scale: p[0], bias: p[1]) }
            let p = extra.map(Double.init)
            #expect(abs(value - reference(z, p)) < 1e-6 * max(1, abs(value)), "loss \(value) vs reference \(reference(z, p))")
            let h = 1e-5
            var worst = 0.0
            for i in z.indices {
                var plus = z, minus = z
                plus[i] += h; minus[i] -= h
                let numeric = (reference(plus, p) - reference(minus, p)) / (2 * h)
                worst = max(worst, abs(numeric - Double(gradient[i])) / max(abs(numeric), 1e-2))
            }
            for i in p.indices {
                var plus = p, minus = p
                plus[i] += h; minus[i] -= h
                let numeric = (reference(z, plus) - reference(z, minus)) / (2 * h)
                worst = max(worst, abs(numeric - Double(extraGradient[i])) / max(abs(numeric), 1e-2))
            }
            #expect(worst < 1e-5, "\(ways)-way \(shots)-shot, d \(d): worst relative error \(worst)")
        }
    }
}
