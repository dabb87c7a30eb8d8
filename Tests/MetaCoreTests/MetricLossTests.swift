import CKernels
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

    static let learners: [any MetricMetaLearner] = [PrototypicalNetworks(), MatchingNetworks(initialScale: 3)]
    /// The learners' own meta-parameters: Matching Networks' cosine scale.
    static let extras: [[Float]] = [[], [3]]

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

    @Test(arguments: [0, 1])
    func gradientMatchesFiniteDifferences(_ which: Int) {
        let learner = Self.learners[which], extra = Self.extras[which]
        for (ways, shots) in [(3, 1), (4, 3)] {
            let e = Episode(ways: ways, shots: shots, queries: 2, d: 5, seed: UInt64(ways * 10 + shots))
            var gradient = [Float](repeating: .nan, count: e.z.count), extraGradient = [Float](repeating: .nan, count: extra.count)
            _ = gradient.withUnsafeMutableBufferPointer { loss(learner, e, z: e.z, extra: extra, gradient: $0.baseAddress, extraGradient: &extraGradient) }
            var worst = 0.0
            // The loss is computed in double from the float inputs: divide by the step the floats really took.
            for i in e.z.indices {
                var plus = e.z, minus = e.z
                plus[i] += 1e-2; minus[i] -= 1e-2
                let numeric = (loss(learner, e, z: plus, extra: extra).0 - loss(learner, e, z: minus, extra: extra).0) / Double(plus[i] - minus[i])
                worst = max(worst, abs(numeric - Double(gradient[i])) / max(abs(numeric), 1e-3))
            }
            for i in extra.indices {
                var plus = extra, minus = extra
                plus[i] += 1e-2; minus[i] -= 1e-2
                let numeric = (loss(learner, e, z: e.z, extra: plus).0 - loss(learner, e, z: e.z, extra: minus).0) / Double(plus[i] - minus[i])
                worst = max(worst, abs(numeric - Double(extraGradient[i])) / max(abs(numeric), 1e-3))
            }
            #expect(worst < 2e-3, "\(learner.name) \(ways)-way \(shots)-shot: worst relative error \(worst)")
        }
    }

    /// Queries that sit on their class's support embedding are classified correctly by both learners.
    @Test(arguments: [0, 1])
    func queriesOnTheirSupportAreClassifiedCorrectly(_ which: Int) {
        var e = Episode(ways: 5, shots: 1, queries: 3, d: 8, seed: 9)
        for q in 0 ..< e.query {
            let s = Int(e.labels[e.support + q])
            for j in 0 ..< e.d { e.z[(e.support + q) * e.d + j] = e.z[s * e.d + j] * 1.01 }
        }
        let (value, correct) = loss(Self.learners[which], e, z: e.z, extra: Self.extras[which])
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
}
