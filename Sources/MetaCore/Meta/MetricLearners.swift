import CKernels

/// A metric-based few-shot learner: the model is an embedding network, and an episode's queries are classified
/// by comparing their embeddings with the support set's — no gradient steps at adaptation time. The meta-
/// parameters are the embedding network's parameters; the meta-gradient is the gradient of the episode loss.
///
/// Support and query images are embedded in one batch, so BatchNorm layers use the episode's statistics in
/// the default transductive mode, as MAML's do (Snell et al. embed them jointly as well).
public protocol MetricMetaLearner: MetaLearner {
    /// The episode loss over embeddings `z` `[support + query, dimension]` (support rows first) with `labels`
    /// in `0 ..< ways`, given the learner's own meta-parameters `extra` (see ``MetaLearner/extraMetaParameters(for:)``);
    /// with `gradient`, also dL/dz, and dL/d`extra` into `extraGradient`. Sets `correct` to the number of
    /// correctly classified queries.
    func episodeLoss(support: Int, query: Int, dimension: Int, ways: Int, z: UnsafePointer<Float>,
                     labels: UnsafePointer<Int32>, extra: UnsafeBufferPointer<Float>,
                     gradient: UnsafeMutablePointer<Float>?, extraGradient: UnsafeMutableBufferPointer<Float>,
                     correct: inout Int32) -> Double

    /// The class scores `[query, ways]` of the query rows of `z` (after the `support` rows, labelled
    /// `supportLabels`). By default the log-probabilities of the distribution whose cross-entropy
    /// ``episodeLoss(support:query:dimension:ways:z:labels:extra:gradient:extraGradient:correct:)`` is: for each
    /// query and class, minus the loss of the episode of that one query with that label.
    func queryScores(support: Int, query: Int, dimension: Int, ways: Int, z: UnsafePointer<Float>,
                     supportLabels: UnsafePointer<Int32>, extra: UnsafeBufferPointer<Float>) -> [Float]
}

extension MetricMetaLearner {
    /// The model must embed the tasks' inputs as vectors; the number of classes comes from each episode.
    public func check(model: Model, tasks: any TaskDistribution) throws {
        guard model.inputShape == tasks.inputShape else {
            throw MetaCoreError.shape("the tasks' inputs are \(describe(tasks.inputShape)) but the embedding network takes \(describe(model.inputShape))")
        }
        guard tasks.isClassification, model.outputShape.count == 1 else {
            throw MetaCoreError.shape("\(name) needs classification tasks and an embedding network with vector outputs; the model outputs \(describe(model.outputShape)), the tasks \(describe(tasks.outputShape))")
        }
    }

    public func metaGradient(_ meta: [Float], task: Task, workspace: Workspace, into gradient: inout [Float]) throws -> LossValue {
        let episode = try Episode(task), count = workspace.model.parameterCount
        var extraGradient = [Float](repeating: 0, count: meta.count - count)
        let value = try workspace.gradient(at: modelParameters(meta, model: workspace.model), inputs: episode.inputs, into: &gradient) { z, dz in
            extraGradient.withUnsafeMutableBufferPointer { episode.loss(self, z: z, extra: meta[count...], gradient: dz, extraGradient: $0) }
        }
        gradient += extraGradient
        return value
    }

    public func metaLoss(_ meta: [Float], task: Task, workspace: Workspace) throws -> LossValue {
        let episode = try Episode(task), count = workspace.model.parameterCount
        var unused = [Float](repeating: 0, count: meta.count - count)
        return try workspace.loss(at: modelParameters(meta, model: workspace.model), inputs: episode.inputs) { z, _ in
            unused.withUnsafeMutableBufferPointer { episode.loss(self, z: z, extra: meta[count...], gradient: nil, extraGradient: $0) }
        }
    }

    public func adaptationCurve(_ meta: [Float], task: Task, steps: Int, workspace: Workspace) throws -> [LossValue] {
        [try metaLoss(meta, task: task, workspace: workspace)]
    }

    public func queryScores(support: Int, query: Int, dimension: Int, ways: Int, z: UnsafePointer<Float>,
                            supportLabels: UnsafePointer<Int32>, extra: UnsafeBufferPointer<Float>) -> [Float] {
        var rows = Array(UnsafeBufferPointer(start: z, count: (support + 1) * dimension))
        var labels: [Int32] = Array(UnsafeBufferPointer(start: supportLabels, count: support)) + [0]
        var scores = [Float](repeating: 0, count: query * ways), unused = [Float](repeating: 0, count: extra.count)
        for q in 0 ..< query {
            for j in 0 ..< dimension { rows[support * dimension + j] = z[(support + q) * dimension + j] }
            for c in 0 ..< ways {
                labels[support] = Int32(c)
                var correct: Int32 = 0
                let loss = unused.withUnsafeMutableBufferPointer { extraGradient in
                    episodeLoss(support: support, query: 1, dimension: dimension, ways: ways, z: rows, labels: labels, extra: extra,
                                gradient: nil, extraGradient: extraGradient, correct: &correct)
                }
                scores[q * ways + c] = Float(-loss)
            }
        }
        return scores
    }

    /// The query scores, from the support and query images embedded in one batch (as in training).
    public func predict(_ meta: [Float], support: Batch, queries: Tensor, steps: Int, workspace: Workspace) throws -> Tensor {
        guard case .labels(let labels) = support.targets, let ways = labels.max().map({ Int($0) + 1 }), Set(labels).count == ways else {
            throw MetaCoreError(.invalidLabel, "\(name) predicts from a support set whose labels cover classes 0 ..< ways")
        }
        let model = workspace.model, count = model.parameterCount, dimension = model.outputShape.reduce(1, *)
        let inputs = try Tensor(shape: [support.count + queries.shape[0]] + Array(queries.shape.dropFirst()),
                                scalars: support.inputs.scalars + queries.scalars)
        let z = try workspace.predict(at: modelParameters(meta, model: model), inputs: inputs)
        let scores = z.scalars.withUnsafeBufferPointer { z in
            labels.withUnsafeBufferPointer { l in
                meta[count...].withUnsafeBufferPointer { extra in
                    queryScores(support: support.count, query: queries.shape[0], dimension: dimension, ways: ways, z: z.baseAddress!,
                                supportLabels: l.baseAddress!, extra: extra)
                }
            }
        }
        return try Tensor(shape: [queries.shape[0], ways], scalars: scores)
    }
}

/// A classification task laid out for a metric learner: support and query inputs in one batch.
private struct Episode {
    let inputs: Tensor
    let labels: [Int32]
    let support: Int, query: Int, ways: Int

    init(_ task: Task) throws {
        guard case .labels(let supportLabels) = task.support.targets, case .labels(let queryLabels) = task.query.targets else {
            throw MetaCoreError.argument("metric learners classify: the task's support and query sets need class labels")
        }
        let ways = Int(supportLabels.max()!) + 1
        guard Set(supportLabels).count == ways else {
            throw MetaCoreError(.invalidLabel, "support labels must cover every class 0 ..< \(ways); got \(Set(supportLabels).sorted())")
        }
        if let bad = queryLabels.first(where: { Int($0) >= ways }) {
            throw MetaCoreError(.invalidLabel, "query label \(bad) has no support examples (the support covers classes 0 ..< \(ways))")
        }
        inputs = try task.support.concatenated(with: task.query).inputs
        labels = supportLabels + queryLabels
        support = supportLabels.count; query = queryLabels.count; self.ways = ways
    }

    func loss(_ learner: some MetricMetaLearner, z: UnsafeBufferPointer<Float>, extra: ArraySlice<Float>,
              gradient: UnsafeMutableBufferPointer<Float>?, extraGradient: UnsafeMutableBufferPointer<Float>) -> LossValue {
        var correct: Int32 = 0
        let loss = labels.withUnsafeBufferPointer { l in
            extra.withUnsafeBufferPointer { e in
                learner.episodeLoss(support: support, query: query, dimension: z.count / (support + query), ways: ways,
                                    z: z.baseAddress!, labels: l.baseAddress!, extra: e, gradient: gradient?.baseAddress,
                                    extraGradient: extraGradient, correct: &correct)
            }
        }
        return LossValue(loss: loss, correct: Int(correct), count: query)
    }
}

/// Prototypical Networks (Snell et al. 2017): each class is the mean of its support embeddings, and a query's
/// logits are its negative squared Euclidean distances to the class means.
public struct PrototypicalNetworks: MetricMetaLearner {
    public init() {}
    public var name: String { "protonet" }

    public func episodeLoss(support: Int, query: Int, dimension: Int, ways: Int, z: UnsafePointer<Float>,
                            labels: UnsafePointer<Int32>, extra: UnsafeBufferPointer<Float>,
                            gradient: UnsafeMutablePointer<Float>?, extraGradient: UnsafeMutableBufferPointer<Float>,
                            correct: inout Int32) -> Double {
        var scratch = [Double](repeating: 0, count: mc_proto_scratch(Int32(query), Int32(dimension), Int32(ways)))
        return mc_proto_loss(Int32(support), Int32(query), Int32(dimension), Int32(ways), z, labels, gradient, &scratch, &correct)
    }
}

/// Matching Networks (Vinyals et al. 2016), without full-context embeddings: a query's class distribution is
/// the softmax attention over the scaled cosine similarities to the support embeddings, summed per class.
///
/// The scale multiplies the cosines before the softmax. Vinyals et al. use none (scale 1): cosines lie in
/// [−1, 1], so the attention can never be sharp — with 5 classes a query's probability stays below 0.65 —
/// and training stalls early (85% on 5-way 1-shot Omniglot after 32 minutes here). By default the scale is
/// therefore a meta-parameter (`matchnet.scale`, from 10), as in Gidaris & Komodakis 2018.
public struct MatchingNetworks: MetricMetaLearner {
    /// The scale's initial value, or its value throughout when it is not learned.
    public let initialScale: Float
    public let learnsScale: Bool

    public init(initialScale: Float = 10, learnsScale: Bool = true) {
        self.initialScale = initialScale
        self.learnsScale = learnsScale
    }

    public var name: String { "matchnet" }

    public func initialMetaParameters(for model: Model, seed: UInt64) -> [Float] {
        model.initialParameters(seed: seed) + (learnsScale ? [initialScale] : [])
    }

    public func extraMetaParameters(for model: Model) -> [(name: String, range: Range<Int>)] {
        learnsScale ? [("matchnet.scale", model.parameterCount ..< model.parameterCount + 1)] : []
    }

    public func episodeLoss(support: Int, query: Int, dimension: Int, ways: Int, z: UnsafePointer<Float>,
                            labels: UnsafePointer<Int32>, extra: UnsafeBufferPointer<Float>,
                            gradient: UnsafeMutablePointer<Float>?, extraGradient: UnsafeMutableBufferPointer<Float>,
                            correct: inout Int32) -> Double {
        var scratch = [Double](repeating: 0, count: mc_matching_scratch(Int32(support), Int32(query), Int32(ways)))
        var dscale = 0.0
        let loss = mc_matching_loss(Int32(support), Int32(query), Int32(dimension), Int32(ways), z, labels,
                                    learnsScale ? extra[0] : initialScale, gradient, &dscale, &scratch, &correct)
        if learnsScale { extraGradient[0] = Float(dscale) }
        return loss
    }
}

extension PrototypicalNetworks {
    static let registrations = [
        AlgorithmEntry(name: "protonet", summary: "Prototypical Networks: distance to the class means of the support embeddings",
                       embedding: true) { _, _ in PrototypicalNetworks() },
    ]
}

extension MatchingNetworks {
    static let registrations = [
        AlgorithmEntry(name: "matchnet", summary: "Matching Networks: attention over scaled cosine similarities to the support embeddings",
                       embedding: true) { _, _ in MatchingNetworks() },
    ]
}
