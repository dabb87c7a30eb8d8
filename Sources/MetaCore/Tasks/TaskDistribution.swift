/// One few-shot task: a support set to adapt on and a query set to measure the adapted model on.
public struct Task: Sendable {
    public let support: Batch
    public let query: Batch
    /// Randomness of the task's own for a learner that needs it within the task (Reptile's order of inner
    /// mini-batches): drawn by the trainer and the evaluation after the task, so it is reproduced with it.
    public var seed: UInt64
    public init(support: Batch, query: Batch, seed: UInt64 = 0) { self.support = support; self.query = query; self.seed = seed }
}

/// A distribution over tasks. Sampling is a pure function of the random source, so a seed reproduces the
/// tasks exactly (and a resumed run sees the tasks an uninterrupted one would have).
public protocol TaskDistribution: Sendable {
    /// Per-sample input shape of the tasks' batches.
    var inputShape: [Int] { get }
    /// Per-sample output shape the model must produce.
    var outputShape: [Int] { get }
    /// Whether the tasks' targets are class labels (else regression values).
    var isClassification: Bool { get }
    /// A fresh task; `queryCount` overrides the query-set size (evaluation uses larger query sets).
    func sample(_ random: inout RandomSource, queryCount: Int?) throws -> Task
}

extension TaskDistribution {
    public func sample(_ random: inout RandomSource) throws -> Task { try sample(&random, queryCount: nil) }

    /// A fresh task with its ``Task/seed`` drawn from `random` after it.
    public func seededSample(_ random: inout RandomSource, queryCount: Int? = nil) throws -> Task {
        var task = try sample(&random, queryCount: queryCount)
        task.seed = random.next()
        return task
    }
}
