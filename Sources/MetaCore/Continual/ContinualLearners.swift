/// A learning rule for a continual stream: it sees each stage's training samples once, in order, and updates
/// the parameters as it goes. It may keep state between stages (MER's replay memory).
public protocol ContinualLearner {
    /// A short description for reports ("online SGD on the head, lr 0.03").
    var description: String { get }
    /// Learns one stage from its training samples, updating `parameters`.
    mutating func learn(_ samples: Batch, parameters: inout [Float], workspace: Workspace, random: inout RandomSource) throws
}

func checkLearningRate(_ value: Float, _ what: String) throws {
    guard value > 0, value.isFinite else { throw MetaCoreError.argument("\(what) must be a positive number, got \(value)") }
}

/// Plain online SGD, one small batch at a time, on the parameters in `adapted` (OML's meta-test rule with the
/// head; the fine-tuning baseline with the head or everything).
public struct OnlineSGD: ContinualLearner {
    public let learningRate: Float
    public let batchSize: Int
    public let adapted: Range<Int>
    private var gradient: [Float] = []

    public init(learningRate: Float, batchSize: Int = 1, adapted: Range<Int>) throws {
        try checkLearningRate(learningRate, "the online learning rate")
        guard batchSize >= 1 else { throw MetaCoreError.argument("the online batch must be at least 1 sample, got \(batchSize)") }
        self.learningRate = learningRate; self.batchSize = batchSize; self.adapted = adapted
    }

    public var description: String { "online SGD, lr \(learningRate), batch \(batchSize), \(adapted.count) parameters adapted" }

    public mutating func learn(_ samples: Batch, parameters: inout [Float], workspace: Workspace, random: inout RandomSource) throws {
        for start in stride(from: 0, to: samples.count, by: batchSize) {
            let batch = try samples.samples(start ..< min(start + batchSize, samples.count))
            try workspace.gradient(at: parameters, on: batch, into: &gradient)
            for i in adapted { parameters[i] -= learningRate * gradient[i] }
        }
    }
}

/// Meta-Experience Replay, MER (Riemer et al. 2019, their Algorithm 1): for each incoming sample, `batches`
/// batches of `batchSize` samples — the new one with `batchSize − 1` drawn from a reservoir-sampled memory —
/// are learned by SGD one sample at a time; within a batch the move is scaled by β (θ ← θ₀ + β(θ_k − θ₀)),
/// and across the batches by γ. These Reptile-style interpolations favour updates whose gradients agree
/// across samples (transfer) over ones that conflict (interference); then the sample enters the memory.
public struct MER: ContinualLearner {
    public let learningRate: Float, withinBatch: Float, acrossBatches: Float
    public let batches: Int, batchSize: Int, memorySize: Int
    public let adapted: Range<Int>
    /// The replay memory (a reservoir sample of everything seen) and how many samples have been seen.
    private var memory: [Batch] = []
    private var seen = 0
    private var gradient: [Float] = []

    public init(learningRate: Float, withinBatch: Float, acrossBatches: Float, batches: Int, batchSize: Int,
                memorySize: Int, adapted: Range<Int>) throws {
        try checkLearningRate(learningRate, "MER's learning rate α")
        guard withinBatch > 0, withinBatch <= 1, acrossBatches > 0, acrossBatches <= 1 else {
            throw MetaCoreError.argument("MER's β and γ must be in (0, 1], got \(withinBatch) and \(acrossBatches)")
        }
        guard batches >= 1, batchSize >= 1, memorySize >= 1 else {
            throw MetaCoreError.argument("MER needs at least 1 batch, a batch of at least 1 sample and a memory of at least 1, got \(batches), \(batchSize), \(memorySize)")
        }
        self.learningRate = learningRate; self.withinBatch = withinBatch; self.acrossBatches = acrossBatches
        self.batches = batches; self.batchSize = batchSize; self.memorySize = memorySize; self.adapted = adapted
    }

    public var description: String {
        "MER, α \(learningRate), β \(withinBatch), γ \(acrossBatches), \(batches) batches of \(batchSize), memory \(memorySize), \(adapted.count) parameters adapted"
    }

    public mutating func learn(_ samples: Batch, parameters: inout [Float], workspace: Workspace, random: inout RandomSource) throws {
        for index in 0 ..< samples.count {
            let current = try samples.samples(index ..< index + 1)
            let start = parameters
            for _ in 0 ..< batches {
                let batchStart = parameters
                var batch = [current]
                if !memory.isEmpty {
                    for _ in 1 ..< batchSize { batch.append(memory[Int(random.next() % UInt64(memory.count))]) }
                }
                batch.shuffle(using: &random)
                for sample in batch {
                    try workspace.gradient(at: parameters, on: sample, into: &gradient)
                    for i in adapted { parameters[i] -= learningRate * gradient[i] }
                }
                for i in adapted { parameters[i] = batchStart[i] + withinBatch * (parameters[i] - batchStart[i]) }
            }
            for i in adapted { parameters[i] = start[i] + acrossBatches * (parameters[i] - start[i]) }
            remember(current, &random)
        }
    }

    /// Reservoir sampling (Vitter 1985): every sample seen so far is in the memory with equal probability.
    private mutating func remember(_ sample: Batch, _ random: inout RandomSource) {
        seen += 1
        if memory.count < memorySize { memory.append(sample); return }
        let slot = Int(random.next() % UInt64(seen))
        if slot < memorySize { memory[slot] = sample }
    }
}

/// The offline upper bound: after each stage, training restarts from the initial parameters on everything
/// seen so far, shuffled (i.i.d.), for several epochs of minibatch SGD — what a learner allowed to store and
/// revisit all data would reach with the same parameters adapted.
public struct OfflineIID: ContinualLearner {
    public let learningRate: Float, batchSize: Int, epochs: Int
    public let adapted: Range<Int>
    private var initial: [Float]?
    private var data: Batch?
    private var gradient: [Float] = []

    public init(learningRate: Float, batchSize: Int, epochs: Int, adapted: Range<Int>) throws {
        try checkLearningRate(learningRate, "the i.i.d. learning rate")
        guard batchSize >= 1, epochs >= 1 else {
            throw MetaCoreError.argument("i.i.d. training needs a batch of at least 1 sample and at least 1 epoch, got \(batchSize) and \(epochs)")
        }
        self.learningRate = learningRate; self.batchSize = batchSize; self.epochs = epochs; self.adapted = adapted
    }

    public var description: String { "offline i.i.d., lr \(learningRate), batch \(batchSize), \(epochs) epochs, \(adapted.count) parameters adapted" }

    public mutating func learn(_ samples: Batch, parameters: inout [Float], workspace: Workspace, random: inout RandomSource) throws {
        if initial == nil { initial = parameters }
        let all = try data.map { try $0.concatenated(with: samples) } ?? samples
        data = all
        parameters = initial!
        for _ in 0 ..< epochs {
            var order = Array(0 ..< all.count)
            order.shuffle(using: &random)
            for start in stride(from: 0, to: order.count, by: batchSize) {
                try workspace.gradient(at: parameters, on: all.samples(order[start ..< min(start + batchSize, order.count)]), into: &gradient)
                for i in adapted { parameters[i] -= learningRate * gradient[i] }
            }
        }
    }
}
