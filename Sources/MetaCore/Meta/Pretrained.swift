/// The non-meta-learning baseline: plain multi-task training of one network on every task's data (the
/// support and query sets together), then fine-tuning by SGD at test time. Its "meta-gradient" is the
/// ordinary gradient of the joint loss; evaluation adapts with the same inner loop as the meta-learners.
public struct Pretrained: InnerUpdateLearner {
    public let inner: InnerLoop
    public init(inner: InnerLoop) { self.inner = inner }
    public var name: String { "pretrain" }

    public func innerUpdate(for model: Model) throws -> InnerUpdate { InnerUpdate(rate: .scalar(inner.learningRate)) }

    public func metaGradient(_ meta: [Float], task: Task, workspace: Workspace, into gradient: inout [Float]) throws -> LossValue {
        let all = try task.support.concatenated(with: task.query)
        return try workspace.gradient(at: meta, on: all, into: &gradient)
    }
}

extension Pretrained {
    static let registrations = [
        AlgorithmEntry(name: "pretrain", summary: "the multi-task baseline: joint training on every task's data, fine-tuning at test time",
                       verifiable: false) { config, _ in
            Pretrained(inner: try config.innerLoop())
        },
    ]
}
