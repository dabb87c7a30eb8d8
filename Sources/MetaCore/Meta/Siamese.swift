import CKernels

/// Siamese networks (Koch, Zemel & Salakhutdinov 2015): one embedding network applied to both images of a
/// pair, and the pair's probability of showing the same class σ(w · |z₁ − z₂| + b), the weighted L1 distance
/// of the embeddings through a sigmoid.
///
/// Training pairs come from each meta-training episode: every query against every support image, the
/// same-class and the different-class pairs each weighted to half of the binary cross-entropy (the balance of
/// Koch et al.'s pair sampling, without discarding pairs). Episodes are drawn from (seed, iteration, task), so
/// the pairs are seeded. One-shot N-way classification gives a query the class of its most similar support
/// image. Meta-parameters: the embedding network's, then w (one weight per feature) and b.
public struct SiameseNetworks: MetricMetaLearner {
    public init() {}
    public var name: String { "siamese" }

    public func initialMetaParameters(for model: Model, seed: UInt64) -> [Float] {
        // Distances start as evidence against "same": w = −1/d, b = 0.
        let d = model.outputShape.reduce(1, *)
        return model.initialParameters(seed: seed) + [Float](repeating: -1 / Float(d), count: d) + [0]
    }

    public func extraMetaParameters(for model: Model) -> [(name: String, range: Range<Int>)] {
        let p = model.parameterCount, d = model.outputShape.reduce(1, *)
        return [("siamese.weight", p ..< p + d), ("siamese.bias", p + d ..< p + d + 1)]
    }

    public func episodeLoss(support: Int, query: Int, dimension: Int, ways: Int, z: UnsafePointer<Float>,
                            labels: UnsafePointer<Int32>, extra: UnsafeBufferPointer<Float>,
                            gradient: UnsafeMutablePointer<Float>?, extraGradient: UnsafeMutableBufferPointer<Float>,
                            correct: inout Int32) -> Double {
        var dw = [Double](repeating: 0, count: dimension), db = 0.0
        let loss = mc_siamese_loss(Int32(support), Int32(query), Int32(dimension), Int32(ways), z, labels, extra.baseAddress!,
                                   extra[dimension], gradient, &dw, &db, nil, &correct)
        if gradient != nil {
            for j in 0 ..< dimension { extraGradient[j] = Float(dw[j]) }
            extraGradient[dimension] = Float(db)
        }
        return loss
    }

    /// Every (query, support) pair of `task` as a verification problem: its score w · |z_q − z_s| + b (the
    /// logit of "same class") and whether the two images are of the same class.
    /// For each query and class, the highest pair score (the logit of "same") among the class's support
    /// images: a query is classified by its most similar support image, and the softmax of these scores is its
    /// class distribution.
    public func queryScores(support: Int, query: Int, dimension: Int, ways: Int, z: UnsafePointer<Float>,
                            supportLabels: UnsafePointer<Int32>, extra: UnsafeBufferPointer<Float>) -> [Float] {
        var pairs = [Double](repeating: 0, count: query * support), correct: Int32 = 0, db = 0.0
        // Query labels are not needed for the scores; the kernel reads one per query, so give it zeros.
        let labels = Array(UnsafeBufferPointer(start: supportLabels, count: support)) + [Int32](repeating: 0, count: query)
        _ = mc_siamese_loss(Int32(support), Int32(query), Int32(dimension), 0, z, labels, extra.baseAddress!, extra[dimension],
                            nil, nil, &db, &pairs, &correct)
        var scores = [Float](repeating: -.infinity, count: query * ways)
        for q in 0 ..< query {
            for j in 0 ..< support {
                let c = Int(supportLabels[j])
                scores[q * ways + c] = max(scores[q * ways + c], Float(pairs[q * support + j]))
            }
        }
        return scores
    }

    public func pairScores(_ meta: [Float], task: Task, workspace: Workspace) throws -> [(score: Double, same: Bool)] {
        guard case .labels(let s) = task.support.targets, case .labels(let q) = task.query.targets else {
            throw MetaCoreError.argument("siamese networks verify pairs of labelled images")
        }
        let model = workspace.model, p = model.parameterCount, d = model.outputShape.reduce(1, *)
        let labels = s + q
        var scores = [Double](repeating: 0, count: q.count * s.count)
        let inputs = try task.support.concatenated(with: task.query).inputs
        _ = try workspace.loss(at: modelParameters(meta, model: model), inputs: inputs) { z, _ in
            var correct: Int32 = 0, db = 0.0
            _ = meta[p ..< p + d + 1].withUnsafeBufferPointer { w in
                mc_siamese_loss(Int32(s.count), Int32(q.count), Int32(d), 0, z.baseAddress!, labels, w.baseAddress!, w[d],
                                nil, nil, &db, &scores, &correct)
            }
            return LossValue(loss: 0, correct: nil, count: 1)
        }
        let pairs = (0 ..< q.count).flatMap { i in (0 ..< s.count).map { j in (score: scores[i * s.count + j], same: q[i] == s[j]) } }
        return pairs
    }

    /// Verification over the pairs of `taskCount` seeded episodes (the episodes `Evaluation.run` draws from
    /// `seed`): the accuracy of "same" at probability 0.5 with same and different pairs weighted equally, and
    /// the area under the ROC curve.
    public func verification(_ meta: [Float], tasks: any TaskDistribution, taskCount: Int, queryCount: Int?, seed: UInt64,
                             runner: TaskRunner) throws -> (accuracy: Double, auc: Double, pairs: Int) {
        let root = RandomSource(seed: seed)
        let scores = try runner.map(taskCount) { index, worker in
            var random = root.fork(UInt64(index))
            return try pairScores(meta, task: tasks.sample(&random, queryCount: queryCount), workspace: worker.workspace)
        }.flatMap { $0 }
        let positives = scores.filter(\.same).map(\.score), negatives = scores.filter { !$0.same }.map(\.score)
        guard !positives.isEmpty, !negatives.isEmpty else { throw MetaCoreError.argument("verification needs same-class and different-class pairs") }
        let truePositives = Double(positives.filter { $0 > 0 }.count), trueNegatives = Double(negatives.filter { $0 <= 0 }.count)
        let accuracy: Double = (truePositives / Double(positives.count) + trueNegatives / Double(negatives.count)) / 2
        return (accuracy, Self.areaUnderROC(positives: positives, negatives: negatives), scores.count)
    }

    /// The probability that a random positive scores above a random negative (ties count half): the
    /// Mann–Whitney statistic, by sorting.
    public static func areaUnderROC(positives: [Double], negatives: [Double]) -> Double {
        let all = (positives.map { ($0, true) } + negatives.map { ($0, false) }).sorted { $0.0 < $1.0 }
        var rankSum = 0.0, i = 0
        while i < all.count {
            var j = i
            while j + 1 < all.count && all[j + 1].0 == all[i].0 { j += 1 }
            let rank = Double(i + j) / 2 + 1   // ties share their mean rank
            for k in i ... j where all[k].1 { rankSum += rank }
            i = j + 1
        }
        let p = Double(positives.count), n = Double(negatives.count)
        return (rankSum - p * (p + 1) / 2) / (p * n)
    }

    static let registrations = [
        AlgorithmEntry(name: "siamese", summary: "Siamese networks: weighted L1 distance of twin embeddings through a sigmoid, trained on same/different pairs",
                       embedding: true) { _, _ in SiameseNetworks() },
    ]
}
