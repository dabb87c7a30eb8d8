/// A batch of samples with their targets; the kind of target chooses the loss.
///
/// - `.labels`: class indices; the loss is softmax cross-entropy over the model's outputs (logits).
/// - `.values`: regression targets of the model's output shape; the loss is the mean squared error.
///
/// Both losses are averaged over the batch.
public struct Batch: Sendable, Equatable {
    public enum Targets: Sendable, Equatable {
        case labels([Int32])
        case values(Tensor)
    }

    /// `[N, ...per-sample shape]`.
    public let inputs: Tensor
    public let targets: Targets

    /// Throws if the batch is empty or the targets do not match the inputs' batch size.
    public init(inputs: Tensor, targets: Targets) throws {
        guard let n = inputs.shape.first, inputs.shape.count >= 2 else {
            throw MetaCoreError.shape("batch inputs need a batch dimension and a per-sample shape, got \(describe(inputs.shape))")
        }
        guard n > 0 else { throw MetaCoreError(.emptyBatch, "the batch is empty (0 samples)") }
        switch targets {
        case .labels(let labels):
            guard labels.count == n else {
                throw MetaCoreError.shape("batch has \(n) inputs but \(labels.count) labels")
            }
            if let bad = labels.first(where: { $0 < 0 }) {
                throw MetaCoreError(.invalidLabel, "label \(bad) is negative")
            }
        case .values(let values):
            guard values.shape.first == n else {
                throw MetaCoreError.shape("batch has \(n) inputs but targets of shape \(describe(values.shape))")
            }
        }
        self.inputs = inputs
        self.targets = targets
    }

    /// A classification batch: `inputs` `[N, ...]` and one label per sample.
    public init(inputs: Tensor, labels: [Int32]) throws { try self.init(inputs: inputs, targets: .labels(labels)) }
    /// A regression batch: `inputs` `[N, ...]` and targets `[N, ...]`.
    public init(inputs: Tensor, values: Tensor) throws { try self.init(inputs: inputs, targets: .values(values)) }

    /// Number of samples.
    public var count: Int { inputs.shape[0] }
    /// Per-sample input shape.
    public var sampleShape: [Int] { Array(inputs.shape.dropFirst()) }

    /// This batch followed by `other` (same per-sample shape and kind of target).
    public func concatenated(with other: Batch) throws -> Batch {
        guard sampleShape == other.sampleShape else {
            throw MetaCoreError.shape("cannot join batches of \(describe(sampleShape)) and \(describe(other.sampleShape)) samples")
        }
        let inputs = try Tensor(shape: [count + other.count] + sampleShape, scalars: self.inputs.scalars + other.inputs.scalars)
        switch (targets, other.targets) {
        case let (.labels(a), .labels(b)):
            return try Batch(inputs: inputs, labels: a + b)
        case let (.values(a), .values(b)) where a.shape.dropFirst() == b.shape.dropFirst():
            return try Batch(inputs: inputs, values: Tensor(shape: [a.shape[0] + b.shape[0]] + Array(a.shape.dropFirst()), scalars: a.scalars + b.scalars))
        default:
            throw MetaCoreError.shape("cannot join batches with different kinds or shapes of targets")
        }
    }

    /// The samples at `indices`, in that order (a shuffled or sliced view of the batch, copied).
    public func samples<Indices: Collection<Int>>(_ indices: Indices) throws -> Batch {
        guard !indices.isEmpty else { throw MetaCoreError(.emptyBatch, "no samples selected from a batch of \(count)") }
        if let bad = indices.first(where: { !(0 ..< count).contains($0) }) {
            throw MetaCoreError.argument("sample \(bad) is outside a batch of \(count)")
        }
        let size = sampleShape.reduce(1, *)
        var scalars: [Float] = []
        scalars.reserveCapacity(indices.count * size)
        for i in indices { scalars += inputs.scalars[i * size ..< (i + 1) * size] }
        let selected = try Tensor(shape: [indices.count] + sampleShape, scalars: scalars)
        switch targets {
        case .labels(let labels):
            return try Batch(inputs: selected, labels: indices.map { labels[$0] })
        case .values(let values):
            let width = values.shape.dropFirst().reduce(1, *)
            let picked = indices.flatMap { values.scalars[$0 * width ..< ($0 + 1) * width] }
            return try Batch(inputs: selected, values: Tensor(shape: [indices.count] + Array(values.shape.dropFirst()), scalars: picked))
        }
    }

    /// Throws unless this batch fits `model`: its per-sample shape is the model's input shape and its targets
    /// fit the model's output (labels below the number of outputs, values of the output shape).
    public func check(against model: Model) throws {
        guard sampleShape == model.inputShape else {
            throw MetaCoreError.shape("batch samples are \(describe(sampleShape)) but the model takes \(describe(model.inputShape))")
        }
        guard count % model.groups == 0 else {
            throw MetaCoreError.shape("a batch of \(count) samples does not split into the model's \(model.groups) equal groups")
        }
        switch targets {
        case .labels(let labels):
            guard model.outputShape.count == 1 else {
                throw MetaCoreError.shape("labels need a model with a vector of logits per sample, this one outputs \(describe(model.outputShape))")
            }
            let classes = model.outputShape[0]
            if let bad = labels.first(where: { Int($0) >= classes }) {
                throw MetaCoreError(.invalidLabel, "label \(bad) is out of range for a model with \(classes) outputs")
            }
        case .values(let values):
            guard Array(values.shape.dropFirst()) == model.outputShape else {
                throw MetaCoreError.shape("regression targets are \(describe(Array(values.shape.dropFirst()))) per sample but the model outputs \(describe(model.outputShape))")
            }
        }
    }
}

/// The value of a loss on a batch, and for classification the number of correctly classified samples.
public struct LossValue: Sendable, Equatable {
    public var loss: Double
    /// Samples whose arg-max output is their label (`nil` for regression).
    public var correct: Int?
    public var count: Int
    /// For a model of several groups (``Model/groups``, a ``ModelStack``), each group's value; `loss` is then
    /// their sum (what the passes differentiate), `correct` and `count` their totals. Empty otherwise.
    public var groups: [LossValue] = []
    /// `correct / count`, or `nil` for regression.
    public var accuracy: Double? { correct.map { Double($0) / Double(count) } }
}
