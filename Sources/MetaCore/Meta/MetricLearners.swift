import CKernels

/// A metric-based few-shot learner: the model is an embedding network, and an episode's queries are classified
/// by comparing their embeddings with the support set's — no gradient steps at adaptation time. The meta-
/// parameters are the embedding network's parameters; the meta-gradient is the gradient of the episode loss.
///
/// Support and query images are embedded in one batch, so BatchNorm layers use the episode's statistics in
/// the default transductive mode, as MAML's do (Snell et al. embed them jointly as well).
public protocol MetricMetaLearner: MetaLearner {
    /// The episode loss over embeddings `z` `[support + query, dimension]` (support rows first) with `labels`
    /// in `0 ..< ways`; with `gradient`, also dL/dz. Sets `correct` to the number of correctly classified queries.
    func episodeLoss(support: Int, query: Int, dimension: Int, ways: Int, z: UnsafePointer<Float>,
                     labels: UnsafePointer<Int32>, gradient: UnsafeMutablePointer<Float>?, correct: inout Int32) -> Double
}

extension MetricMetaLearner {
    /// The model must embed the tasks' inputs as vectors; the number of classes comes from each episode.
    public func check(model: Model, tasks: any TaskDistribution) throws {
        guard model.inputShape == tasks.inputShape else {
            throw MetaCoreError.shape("the tasks' inputs are \(describe(tasks.inputShape)) but the embedding network takes \(describe(model.inputShape))")
        }
        guard model.outputShape.count == 1, tasks.outputShape.count == 1 else {
            throw MetaCoreError.shape("\(name) needs classification tasks and an embedding network with vector outputs; the model outputs \(describe(model.outputShape)), the tasks \(describe(tasks.outputShape))")
        }
    }

    public func metaGradient(_ meta: [Float], task: Task, workspace: Workspace, into gradient: inout [Float]) throws -> LossValue {
        let episode = try Episode(task)
        return try workspace.gradient(at: meta, inputs: episode.inputs, into: &gradient) { z, dz in
            episode.loss(self, z: z, gradient: dz)
        }
    }

    public func metaLoss(_ meta: [Float], task: Task, workspace: Workspace) throws -> LossValue {
        let episode = try Episode(task)
        return try workspace.loss(at: meta, inputs: episode.inputs) { z, _ in episode.loss(self, z: z, gradient: nil) }
    }

    public func adaptationCurve(_ meta: [Float], task: Task, steps: Int, workspace: Workspace) throws -> [LossValue] {
        [try metaLoss(meta, task: task, workspace: workspace)]
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

    func loss(_ learner: some MetricMetaLearner, z: UnsafeBufferPointer<Float>, gradient: UnsafeMutableBufferPointer<Float>?) -> LossValue {
        var correct: Int32 = 0
        let loss = labels.withUnsafeBufferPointer { l in
            learner.episodeLoss(support: support, query: query, dimension: z.count / (support + query), ways: ways,
                                z: z.baseAddress!, labels: l.baseAddress!, gradient: gradient?.baseAddress, correct: &correct)
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
                            labels: UnsafePointer<Int32>, gradient: UnsafeMutablePointer<Float>?, correct: inout Int32) -> Double {
        var scratch = [Double](repeating: 0, count: mc_proto_scratch(Int32(query), Int32(dimension), Int32(ways)))
        return mc_proto_loss(Int32(support), Int32(query), Int32(dimension), Int32(ways), z, labels, gradient, &scratch, &correct)
    }
}

/// Matching Networks (Vinyals et al. 2016), without full-context embeddings: a query's class distribution is
/// the softmax attention over the cosine similarities to the support embeddings, summed per class.
public struct MatchingNetworks: MetricMetaLearner {
    public init() {}
    public var name: String { "matchnet" }

    public func episodeLoss(support: Int, query: Int, dimension: Int, ways: Int, z: UnsafePointer<Float>,
                            labels: UnsafePointer<Int32>, gradient: UnsafeMutablePointer<Float>?, correct: inout Int32) -> Double {
        var scratch = [Double](repeating: 0, count: mc_matching_scratch(Int32(support), Int32(query), Int32(ways)))
        return mc_matching_loss(Int32(support), Int32(query), Int32(dimension), Int32(ways), z, labels, gradient, &scratch, &correct)
    }
}
