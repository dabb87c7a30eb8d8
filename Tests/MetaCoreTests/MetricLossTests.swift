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

    static let learners: [any MetricMetaLearner] = [PrototypicalNetworks(), MatchingNetworks()]

    func loss(_ learner: any MetricMetaLearner, _ e: Episode, z: [Float], gradient: UnsafeMutablePointer<Float>?) -> (Double, Int32) {
        var correct: Int32 = 0
        let value = z.withUnsafeBufferPointer { zp in
            e.labels.withUnsafeBufferPointer { l in
                learner.episodeLoss(support: e.support, query: e.query, dimension: e.d, ways: e.ways, z: zp.baseAddress!,
                                    labels: l.baseAddress!, gradient: gradient, correct: &correct)
            }
        }
        return (value, correct)
    }

    @Test(arguments: [0, 1])
    func gradientMatchesFiniteDifferences(_ which: Int) {
        let learner = Self.learners[which]
        for (ways, shots) in [(3, 1), (4, 3)] {
            let e = Episode(ways: ways, shots: shots, queries: 2, d: 5, seed: UInt64(ways * 10 + shots))
            var gradient = [Float](repeating: .nan, count: e.z.count)
            _ = gradient.withUnsafeMutableBufferPointer { loss(learner, e, z: e.z, gradient: $0.baseAddress) }
            var worst = 0.0
            for i in e.z.indices {
                var plus = e.z, minus = e.z
                plus[i] += 1e-2; minus[i] -= 1e-2
                // The loss is computed in double from the float inputs: divide by the step the floats really took.
                let numeric = (loss(learner, e, z: plus, gradient: nil).0 - loss(learner, e, z: minus, gradient: nil).0) / Double(plus[i] - minus[i])
                worst = max(worst, abs(numeric - Double(gradient[i])) / max(abs(numeric), 1e-3))
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
        let (value, correct) = loss(Self.learners[which], e, z: e.z, gradient: nil)
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
        #expect(loss(PrototypicalNetworks(), e, z: e.z, gradient: nil).0 < 1e-6)
    }
}
