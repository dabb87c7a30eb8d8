/// ANIL, "almost no inner loop" (Raghu et al. 2020): the inner loop adapts only the head (the last layer
/// with parameters, ``Model/head(layers:)``); the body is meta-learned through it, exactly.
///
/// With P the projection onto the head's parameters, θ_{k+1} = θ_k − α P ∇L_S(θ_k), so the reverse step is
/// g ← g − α H_S(θ_k) (P g): one Hessian-vector product along a head-only direction, whose result reaches
/// the body through the Hessian's off-diagonal blocks.
///
/// The body does not change in the inner loop, so its features of the support set are the same at every
/// step. With ``precomputesFeatures`` a task runs the body once on its support set and once on its query set
/// (each a batch of its own, as batch-norm's statistics require), the inner steps, the query loss and the
/// reverse steps on the head alone, and then the body's backward pass on each set with the derivatives left
/// on its features: the query loss's, and on the support features Σ_k −α ∂⟨∇_w L_S(w_k), g_k⟩/∂F (the body's
/// part of each step's Hessian-vector product). Two passes through the body instead of about 3K + 1.
public struct ANIL: InnerUpdateLearner {
    public let inner: InnerLoop
    /// Whether tasks run on the body's features where that is the same computation (see ``runsOnFeatures(_:)``):
    /// the same derivative up to the order of float sums; otherwise every pass runs the whole model.
    public let precomputesFeatures: Bool

    public init(inner: InnerLoop, precomputesFeatures: Bool = true) {
        self.inner = inner
        self.precomputesFeatures = precomputesFeatures
    }

    public var name: String { "anil" }

    public func innerUpdate(for model: Model) throws -> InnerUpdate {
        InnerUpdate(rate: .scalar(inner.learningRate), adapted: try model.head(layers: 1))
    }

    public func check(model: Model, tasks: any TaskDistribution) throws {
        try checkShapes(model: model, tasks: tasks)
        _ = try model.head(layers: 1)
    }

    /// Whether `workspace`'s passes may run on features: one input, not stacked across tasks, and no running
    /// statistics updated by every pass (which the whole model's passes would update once per step).
    func runsOnFeatures(_ workspace: Workspace) -> Bool {
        if case .training = workspace.normalization { return false }
        return precomputesFeatures && workspace.model.groups == 1 && workspace.model.inputShapes.count == 1
    }

    /// The inner step on the head alone (on features).
    private var headUpdate: InnerUpdate { InnerUpdate(rate: .scalar(inner.learningRate)) }

    /// The body's features of `batch` (its forward pass's `outputs`), as a batch with `batch`'s targets.
    private func features(_ outputs: UnsafeBufferPointer<Float>, of batch: Batch, body: Workspace) throws -> Batch {
        try Batch(inputs: Tensor(shape: [batch.count] + body.model.outputShape, scalars: Array(outputs)), targets: batch.targets)
    }

    /// Runs `body` with the body's parameters, the head's after `steps` inner steps, and the head's workspace
    /// and query features (for the feature paths that do not differentiate).
    private func adaptedOnFeatures<T>(_ meta: [Float], support: Batch, queries: Tensor, steps: Int, workspace: Workspace,
                                      _ body: (_ trajectory: [[Float]], _ queryFeatures: Tensor, _ head: Workspace) throws -> T) throws -> T {
        try workspace.onSplit(headLayers: 1) { bodyWorkspace, head in
            let cut = bodyWorkspace.model.parameterCount, phi = Array(meta[..<cut])
            let supportFeatures = try Batch(inputs: bodyWorkspace.predict(at: phi, inputs: support.inputs), targets: support.targets)
            let queryFeatures = try bodyWorkspace.predict(at: phi, inputs: queries)
            var trajectory = [Array(meta[cut ..< workspace.model.parameterCount])]
            for _ in 0 ..< steps {
                trajectory.append(try headUpdate.steps(from: trajectory[trajectory.count - 1], over: [supportFeatures], head: head, recording: false).w)
            }
            return try body(trajectory, queryFeatures, head)
        }
    }

    public func metaGradient(_ meta: [Float], task: Task, workspace: Workspace, into gradient: inout [Float]) throws -> LossValue {
        guard runsOnFeatures(workspace) else { return try secondOrderMetaGradient(meta, task: task, workspace: workspace, into: &gradient) }
        return try workspace.onSplit(headLayers: 1) { body, head in
            let cut = body.model.parameterCount, phi = Array(meta[..<cut])
            var supportGradient: [Float] = [], queryGradient: [Float] = [], headGradient: [Float] = []
            var value: LossValue?
            head.differentiatesInput = true   // the steps' passes too, so that their H·v start from them
            defer { head.differentiatesInput = false }
            _ = try body.gradient(at: phi, inputs: task.support.inputs, into: &supportGradient) { supportOutputs, supportDerivative in
                let supportFeatures = try features(supportOutputs, of: task.support, body: body)
                let steps = Array(repeating: supportFeatures, count: inner.steps)
                let (w, before) = try headUpdate.steps(from: Array(meta[cut...]), over: steps, head: head, recording: true)
                // The query set's body pass, on a workspace of its own, open while the support set's is.
                _ = try body.onQuerySet { bodyOnQuery in
                    try bodyOnQuery.gradient(at: phi, inputs: task.query.inputs, into: &queryGradient) { queryOutputs, queryDerivative in
                        let queryFeatures = try features(queryOutputs, of: task.query, body: body)
                        let loss = try head.onQuerySet { query in
                            query.differentiatesInput = true
                            defer { query.differentiatesInput = false }
                            let loss = try query.gradient(at: w, on: queryFeatures, into: &headGradient)
                            _ = queryDerivative!.update(fromContentsOf: query.inputGradient)
                            return loss
                        }
                        value = loss
                        return loss
                    }
                }
                // Back through the steps: g ← g − α H_ww g on the head, and −α ∂⟨∇_w L_S, g⟩/∂F onto the support features.
                supportDerivative!.update(repeating: 0)
                try headUpdate.backpropagate(&headGradient, before: before, batches: steps, offsets: steps.map { _ in 0 }, head: head,
                                             featureDerivative: supportDerivative!)
                return value!
            }
            supportGradient.add(queryGradient, scaledBy: 1)
            gradient = supportGradient + headGradient
            return value!
        }
    }

    public func metaLoss(_ meta: [Float], task: Task, workspace: Workspace) throws -> LossValue {
        guard runsOnFeatures(workspace) else {
            return try workspace.loss(at: adapt(meta, support: task.support, steps: inner.steps, workspace: workspace), on: task.query)
        }
        return try adaptedOnFeatures(meta, support: task.support, queries: task.query.inputs, steps: inner.steps, workspace: workspace) { w, queries, head in
            try head.loss(at: w[inner.steps], on: Batch(inputs: queries, targets: task.query.targets))
        }
    }

    public func adaptationCurve(_ meta: [Float], task: Task, steps: Int, workspace: Workspace) throws -> [LossValue] {
        guard runsOnFeatures(workspace) else { return try wholeModelAdaptationCurve(meta, task: task, steps: steps, workspace: workspace) }
        return try adaptedOnFeatures(meta, support: task.support, queries: task.query.inputs, steps: steps, workspace: workspace) { w, queries, head in
            let query = try Batch(inputs: queries, targets: task.query.targets)
            return try w.map { try head.loss(at: $0, on: query) }
        }
    }

    public func predict(_ meta: [Float], support: Batch, queries: Tensor, steps: Int, workspace: Workspace) throws -> Tensor {
        guard runsOnFeatures(workspace) else {
            return try workspace.predict(at: adapt(meta, support: support, steps: steps, workspace: workspace), inputs: queries)
        }
        return try adaptedOnFeatures(meta, support: support, queries: queries, steps: steps, workspace: workspace) { w, queries, head in
            try head.predict(at: w[steps], inputs: queries)
        }
    }

    static let registrations = [
        AlgorithmEntry(name: "anil", summary: "ANIL: only the head adapts; the body is meta-learned through it exactly") { config, _ in
            ANIL(inner: try config.innerLoop())
        },
    ]
}
