import Foundation
import Synchronization

/// Meta-training: each iteration samples a meta-batch of tasks, averages the learner's meta-gradients,
/// optionally clamps their entries and clips their norm, and takes one meta-optimiser step (a
/// ``CarriedStateMetaLearner``'s state is averaged instead, and set).
///
/// Task `i` of iteration `t` is drawn from a random source derived from (seed, t, i) alone, so a run resumed
/// from a checkpoint sees exactly the tasks the uninterrupted run would have. The tasks of a meta-batch run
/// concurrently on ``runner``'s threads; each task's meta-gradient lands in its own slot and the slots are
/// summed in task order (threads running blocks of tasks stacked add theirs to the sum in task order), so the
/// result does not depend on the thread count or on scheduling: a fixed seed gives bit-identical training with
/// 1 thread or 8 — and, with ``GradientReduction/ordered``, with 1 MPI rank or 8 (``group``).
public struct MetaTrainer {
    public let learner: any MetaLearner
    public let tasks: any TaskDistribution
    public let metaBatch: Int
    public let clip: Float?
    /// Each entry of the averaged meta-gradient is clamped to ±`clipValue` (before ``clip``), if set.
    public let clipValue: Float?
    public let seed: UInt64
    public var optimizer: any Optimizer
    public var metaParameters: [Float]
    /// Iterations completed so far.
    public var iteration = 0
    /// The threads and workspaces tasks run on.
    public let runner: TaskRunner
    /// The processes the meta-batch is split across (default: this one alone).
    public var group: any ProcessGroup = SingleProcess()
    /// How the ranks' meta-gradients are combined (``GradientReduction``; only matters with several ranks).
    public var reduction = GradientReduction.ordered
    /// The decay of the meta learning rate (`nil`: none), on top of a ``ScheduledMetaLearner``'s own factor.
    public var decay: LearningRateDecay?
    /// Seconds the last ``step()`` spent exchanging results between the ranks (and summing the meta-gradients).
    public private(set) var exchangeSeconds = 0.0
    private var slots: TaskSlots?
    private let stacks = ModelStacks()

    public init(learner: any MetaLearner, model: Model, tasks: any TaskDistribution, optimizer: any Optimizer,
                metaBatch: Int, clip: Float? = nil, clipValue: Float? = nil, seed: UInt64, threads: Int = 1) throws {
        guard metaBatch > 0 else { throw MetaCoreError.argument("meta-batch must be at least 1 task, got \(metaBatch)") }
        if let clip, !(clip > 0) { throw MetaCoreError.argument("gradient clipping norm must be positive, got \(clip)") }
        if let clipValue, !(clipValue > 0) { throw MetaCoreError.argument("gradient clipping value must be positive, got \(clipValue)") }
        try learner.check(model: model, tasks: tasks)
        let initial = learner.initialMetaParameters(for: model, seed: seed)
        self.learner = learner; self.tasks = tasks; self.optimizer = optimizer
        self.metaBatch = metaBatch; self.clip = clip; self.clipValue = clipValue; self.seed = seed
        self.metaParameters = initial
        self.runner = try TaskRunner(model: model, threads: threads)
        // Tasks whose activations are large (ResNet-12 episodes) run one at a time, each pass split across the
        // threads: as fast, in one task's memory instead of one per thread.
        var probe = Self.taskRandom(seed: seed, iteration: 0, index: 0)
        if threads > 1, let task = try? tasks.sample(&probe, queryCount: nil) {
            let perSample = model.shapes.reduce(0) { $0 + $1.reduce(1, *) }
            if 4 * perSample * max(task.support.count, task.query.count) >= TaskRunner.largeTaskBytes { runner.tasksAtOnce = 1 }
        }
    }

    public var model: Model { runner.model }

    /// The blocks of consecutive tasks of `share` that run stacked, one per thread, if they do: the runner
    /// stacks tasks, the learner allows it, there are tasks for two groups at least and the model stacks.
    private func stackedBlocks(_ share: Range<Int>, learner: any MetaLearner) -> [Range<Int>]? {
        let blocks = min(runner.threads, runner.tasksAtOnce, share.count)
        guard runner.stacksTasks, (learner as? any StackableMetaLearner)?.isStackable == true, share.count >= 2 * blocks,
              stacks.stack(model, groups: share.count / blocks) != nil else { return nil }
        return (0 ..< blocks).map { b in share.lowerBound + share.count * b / blocks ..< share.lowerBound + share.count * (b + 1) / blocks }
    }

    public struct StepResult: Sendable {
        /// Mean query loss after adaptation over the meta-batch, and mean accuracy for classification.
        public let loss: Double, accuracy: Double?
        /// Norm of the averaged meta-gradient before clipping.
        public let gradientNorm: Double
    }

    /// The random source for task `index` of iteration `iteration`.
    public static func taskRandom(seed: UInt64, iteration: Int, index: Int) -> RandomSource {
        RandomSource(seed: seed).fork(UInt64(iteration)).fork(UInt64(index))
    }

    /// One meta-iteration. Under a ``group`` of several ranks, each rank runs its ``ProcessGroup/share(of:)``
    /// of the meta-batch and the meta-gradients are combined by ``reduction``; every rank then takes the same
    /// optimiser step.
    public mutating func step() throws -> StepResult {
        let share = group.share(of: metaBatch)
        // A slot per task's meta-gradient: every task's for the ordered reduction, this rank's for the summed one
        // (allocated at the first step, when the group is known; refused if they would not fit in memory).
        let kept = reduction == .ordered || group.size == 1 ? 0 ..< metaBatch : share
        if slots?.tasks != kept { slots = try TaskSlots(tasks: kept, width: metaParameters.count) }
        let scheduled = learner as? any ScheduledMetaLearner
        let learner = scheduled?.scheduled(at: iteration) ?? learner
        let (tasks, seed, iteration, meta, slots) = (tasks, seed, iteration, metaParameters, slots!)
        func sample(_ index: Int) throws -> Task {
            var random = Self.taskRandom(seed: seed, iteration: iteration, index: index)
            return try tasks.seededSample(&random)
        }
        func run(_ task: Task, _ index: Int, on worker: TaskRunner.Worker) throws -> LossValue {
            let value = try learner.metaGradient(meta, task: task, workspace: worker.workspace, into: &worker.vector)
            slots.store(index, worker.vector)
            return value
        }
        let values: [LossValue]
        var chained: ChainedSum?
        if let blocks = stackedBlocks(share, learner: learner) {
            // Each thread's block of tasks as one task of the stacked model; tasks of unequal sizes one by one. In
            // one process the blocks sum their meta-gradients themselves, in task order (ChainedSum).
            let (stacks, model) = (self.stacks, self.model)
            let chain = group.size == 1 ? ChainedSum(width: meta.count) : nil
            chained = chain
            values = try runner.map(blocks.count) { b, worker -> [LossValue] in
                // The block's part of the chained sum, once its gradients are in; a failed block adds nothing but
                // still takes its turn.
                var part: ((UnsafeMutablePointer<Float>) -> Void)?
                defer { chain?.add(block: b) { sum in part?(sum) } }
                let block = blocks[b], blockTasks = try block.map(sample)
                guard let stack = stacks.stack(model, groups: block.count), let task = try stack.stack(blockTasks) else {
                    let values = try zip(blockTasks, block).map { try run($0, $1, on: worker) }
                    part = { sum in for index in block { slots.add(index, into: sum) } }
                    return values
                }
                stack.stack(meta, into: &worker.stackedParameters)
                let workspace = worker.workspace(for: stack)
                workspace.groupsShareParameters = worker.stackedParameters
                defer { workspace.groupsShareParameters = nil }
                let value = try learner.metaGradient(worker.stackedParameters, task: task, workspace: workspace,
                                                     into: &worker.stackedVector)
                if chain != nil {
                    part = { sum in for group in 0 ..< block.count { stack.add(worker.stackedVector, group: group, into: sum) } }
                } else {
                    for (group, index) in block.enumerated() { slots.store(index) { stack.unstack(worker.stackedVector, group: group, into: $0) } }
                }
                return value.groups
            }.flatMap { $0 }
        } else {
            values = try runner.map(share.count) { j, worker in try run(sample(share.lowerBound + j), share.lowerBound + j, on: worker) }
        }
        let clock = ContinuousClock(), exchangeStart = clock.now
        // Each task's loss, correct answers (-1: not classification) and count, in task order on every rank.
        let results = try group.gather(values.map { [$0.loss, Double($0.correct ?? -1), Double($0.count)] }, tasks: metaBatch)
        var sum: [Float]
        if let chained {
            sum = chained.sum
        } else {
            sum = [Float](repeating: 0, count: metaParameters.count)
            switch reduction {
            case .ordered:
                if group.size > 1 { try slots.gather(group.shares(of: metaBatch), group) }
                sum.withUnsafeMutableBufferPointer { s in for index in 0 ..< metaBatch { slots.add(index, into: s.baseAddress!) } }
            case .sum:
                sum.withUnsafeMutableBufferPointer { s in for index in share { slots.add(index, into: s.baseAddress!) } }
                if group.size > 1 { try sum.withUnsafeMutableBufferPointer { try group.allReduceSum($0) } }
            }
        }
        exchangeSeconds = (clock.now - exchangeStart).seconds
        var loss = 0.0, correct = 0, count = 0, classification = false
        for result in results {
            loss += result[0]
            if result[1] >= 0 { correct += Int(result[1]); classification = true }
            count += Int(result[2])
        }
        sum.scale(by: 1 / Float(metaBatch))
        let carried = (learner as? any CarriedStateMetaLearner)?.carriedState(for: model)
        var state: [Float] = []
        if let carried {
            state = Array(sum[carried])
            sum.replaceSubrange(carried, with: repeatElement(0, count: carried.count))
        }
        let norm = sum.norm
        if let clipValue { for i in sum.indices { sum[i] = min(max(sum[i], -clipValue), clipValue) } }
        if let clip { _ = clipNorm(&sum, maxNorm: clip) }
        guard norm.isFinite else {
            throw MetaCoreError.argument("meta-gradient is not finite at iteration \(iteration) (loss \(loss / Double(metaBatch))); lower the learning rates")
        }
        let factor = (scheduled?.metaLearningRateFactor(at: iteration) ?? 1) * (decay?.factor(at: iteration) ?? 1)
        optimizer.step(&metaParameters, gradient: sum, learningRateFactor: factor)
        if let carried { metaParameters.replaceSubrange(carried, with: state) }
        self.iteration += 1
        return StepResult(loss: loss / Double(metaBatch), accuracy: classification ? Double(correct) / Double(count) : nil,
                          gradientNorm: norm)
    }
}

/// One meta-gradient per task of a meta-batch (or of a rank's share of it), written concurrently (each task its
/// own slot) and summed in task order. Allocated once per trainer.
private final class TaskSlots: @unchecked Sendable {
    /// The tasks (by index in the meta-batch) that have a slot.
    let tasks: Range<Int>
    private let width: Int
    private let gradients: UnsafeMutablePointer<Float>

    init(tasks: Range<Int>, width: Int) throws {
        self.tasks = tasks; self.width = width
        gradients = .allocate(capacity: max(1, try Self.checkedBytes(tasks: tasks.count, width: width) / 4))
    }

    deinit { gradients.deallocate() }

    /// The bytes of `tasks` slots of `width` floats, if they fit in half this machine's memory.
    static func checkedBytes(tasks: Int, width: Int) throws -> Int {
        let (bytes, overflow) = tasks.multipliedReportingOverflow(by: width * 4)
        let memory = ProcessInfo.processInfo.physicalMemory / 2
        guard !overflow, UInt64(bytes) <= memory else {
            throw MetaCoreError.argument("a meta-batch of \(tasks) tasks needs \(overflow ? "more than an Int of" : "\(bytes / 1_000_000) MB of") memory for their meta-gradients (\(width) each); this machine has \(memory * 2 / 1_000_000) MB")
        }
        return bytes
    }

    private func slot(_ index: Int) -> UnsafeMutablePointer<Float> {
        precondition(tasks.contains(index), "task \(index) has no slot (slots for tasks \(tasks))")
        return gradients + (index - tasks.lowerBound) * width
    }

    func store(_ index: Int, _ gradient: [Float]) {
        precondition(gradient.count == width, "a task's meta-gradient has \(gradient.count) entries, expected \(width)")
        gradient.withUnsafeBufferPointer { slot(index).update(from: $0.baseAddress!, count: width) }
    }

    /// Lets `write` fill task `index`'s slot (`width` floats).
    func store(_ index: Int, _ write: (UnsafeMutablePointer<Float>) -> Void) { write(slot(index)) }

    /// Every rank's tasks' gradients, from the ranks that ran them (`shares[r]` tasks each, in task order; the
    /// slots hold the whole meta-batch).
    func gather(_ shares: [Int], _ group: any ProcessGroup) throws {
        try group.allGather(UnsafeMutableBufferPointer(start: gradients, count: tasks.count * width), counts: shares.map { $0 * width })
    }

    /// Adds task `index`'s gradient to `sum` (`width` floats).
    func add(_ index: Int, into sum: UnsafeMutablePointer<Float>) {
        let g = slot(index)
        for i in 0 ..< width { sum[i] += g[i] }
    }
}

/// The meta-gradients of a meta-step's blocks of consecutive tasks (one block per thread), summed in task order
/// by the threads that computed them: block b adds its tasks' gradients to the running sum once block b − 1 has
/// added its own. The sum is the slots' ordered sum to the bit, but no thread reads the others' gradients, only
/// the running sum: through the slots, every task's gradient travelled from the core that computed it to the one
/// that summed them, which is slow between cores that share no cache and matters for small tasks.
private final class ChainedSum: @unchecked Sendable {
    private let running: UnsafeMutableBufferPointer<Float>
    /// The block whose turn it is to add.
    private let turn = Atomic<Int>(0)

    init(width: Int) { running = .allocate(capacity: width); running.initialize(repeating: 0) }
    deinit { running.deallocate() }

    /// Waits for block `block`'s turn, lets `add` add the block's gradients to the running sum (a block that
    /// failed adds nothing, but must still take its turn), and passes the turn on.
    func add(block: Int, _ add: (UnsafeMutablePointer<Float>) -> Void) {
        var checks = 0
        while turn.load(ordering: .acquiring) != block {
            checks += 1
            if checks >= 1024 { sched_yield() }   // the block before runs on a core this thread may be taking
        }
        add(running.baseAddress!)
        turn.store(block + 1, ordering: .releasing)
    }

    /// The sum, once every block has added.
    var sum: [Float] { Array(running) }
}

/// The stacks of a trainer's model by group count, made when first asked for (`nil` where the model does not
/// stack). Shared by the threads of a meta-step.
private final class ModelStacks: @unchecked Sendable {
    private let lock = Mutex<[Int: ModelStack?]>([:])

    func stack(_ model: Model, groups: Int) -> ModelStack? {
        lock.withLock { stacks in
            if let stack = stacks[groups] { return stack }
            let stack = ModelStack(model, groups: groups)
            stacks[groups] = stack
            return stack
        }
    }
}
