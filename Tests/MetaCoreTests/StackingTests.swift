import Foundation
import Synchronization
import Testing
@testable import MetaCore

/// Tasks stacked into one pass (``ModelStack``): each group's results must be its task's own to the bit, and
/// meta-training with stacking must be meta-training without it.
@Suite("Tasks stacked into one pass")
struct StackingTests {
    static func tasks(_ count: Int, seed: UInt64, shots: Int = 4) throws -> [Task] {
        var random = RandomSource(seed: seed)
        let sines = try SinusoidTasks(shots: shots, queries: 3)
        return try (0 ..< count).map { _ in try sines.sample(&random) }
    }

    /// Gradient, Hessian-vector product and loss of the stacked model, group by group, against each task's
    /// own on the base model: equal, not merely close.
    @Test(arguments: [Model.Activation.relu, .tanh])
    func eachGroupIsItsTasksOwnPass(_ activation: Model.Activation) throws {
        let base = try Model.mlp([1, 7, 5, 1], activation: activation)
        let stack = try #require(ModelStack(base, groups: 3))
        let tasks = try Self.tasks(3, seed: 1), task = try #require(try stack.stack(tasks))
        // Each group at parameters of its own, with a direction of its own.
        var random = RandomSource(seed: 2)
        let thetas = (0 ..< 3).map { _ in (0 ..< base.parameterCount).map { _ in random.normal() } }
        let directions = (0 ..< 3).map { _ in (0 ..< base.parameterCount).map { _ in random.normal() } }
        func stacked(_ vectors: [[Float]]) -> [Float] {
            var all = [Float](repeating: .nan, count: stack.stacked.parameterCount)
            for (t, vector) in vectors.enumerated() {
                var one: [Float] = []
                stack.stack(vector, into: &one)
                var back = [Float](repeating: 0, count: base.parameterCount)
                stack.unstack(one, group: t, into: &back)
                #expect(back == vector, "unstack(stack(θ)) must give θ back")
                // Group t's entries of `one` into `all`.
                for l in base.nodes.indices where !base.parameterRange(ofLayer: l).isEmpty {
                    let count = base.parameterRange(ofLayer: l).count, start = stack.stacked.parameterRange(ofLayer: l).lowerBound + t * count
                    for k in 0 ..< count { all[start + k] = one[start + k] }
                }
            }
            #expect(!all.contains { $0.isNaN }, "the groups' blocks must cover the stacked vector")
            return all
        }
        let workspace = Workspace(model: stack.stacked)
        var gradient: [Float] = [], hv: [Float] = []
        let value = try workspace.hessianVectorProduct(at: stacked(thetas), on: task.support, direction: stacked(directions),
                                                       into: &hv, gradient: &gradient)
        let one = Workspace(model: base)
        var sum = 0.0
        for (t, task) in tasks.enumerated() {
            var g: [Float] = [], h: [Float] = []
            let own = try one.hessianVectorProduct(at: thetas[t], on: task.support, direction: directions[t], into: &h, gradient: &g)
            var groupGradient = [Float](repeating: 0, count: base.parameterCount), groupHV = groupGradient
            stack.unstack(gradient, group: t, into: &groupGradient)
            stack.unstack(hv, group: t, into: &groupHV)
            #expect(groupGradient == g, "group \(t)'s gradient")
            #expect(groupHV == h, "group \(t)'s H·v")
            #expect(value.groups[t] == own, "group \(t)'s loss")
            sum += own.loss
        }
        #expect(value.loss == sum && value.count == 3 * tasks[0].support.count)
    }

    /// Groups at the same parameters (a meta-step's start), which the workspace is told of: the layers run the
    /// products with the shared weights over all groups at once, and each group's gradient, H·v and loss are
    /// still its task's own to the bit. Width 300 makes the hidden layer's products over all groups too big for the
    /// loop kernel (3 groups of 4 samples x 300 x 300), so those run group by group.
    @Test(arguments: [7, 300])
    func groupsAtSharedParametersAreEachTheirTasksOwn(_ width: Int) throws {
        let base = try Model.mlp([1, width, width, 1])
        let stack = try #require(ModelStack(base, groups: 3))
        let tasks = try Self.tasks(3, seed: 4), task = try #require(try stack.stack(tasks))
        var random = RandomSource(seed: 5)
        let theta = (0 ..< base.parameterCount).map { _ in random.normal() * 0.3 }
        let directions = (0 ..< 3).map { _ in (0 ..< base.parameterCount).map { _ in random.normal() } }
        var shared: [Float] = [], direction = [Float](repeating: 0, count: stack.stacked.parameterCount)
        stack.stack(theta, into: &shared)
        for (t, d) in directions.enumerated() {
            var one: [Float] = []
            stack.stack(d, into: &one)
            for l in base.nodes.indices where !base.parameterRange(ofLayer: l).isEmpty {
                let count = base.parameterRange(ofLayer: l).count, start = stack.stacked.parameterRange(ofLayer: l).lowerBound + t * count
                for k in 0 ..< count { direction[start + k] = one[start + k] }
            }
        }
        let workspace = Workspace(model: stack.stacked)
        workspace.groupsShareParameters = shared
        workspace.heldPasses = 1
        var gradient: [Float] = [], hv: [Float] = [], heldHV: [Float] = []
        let value = try workspace.gradient(at: shared, on: task.support, into: &gradient)
        try workspace.hessianVectorProduct(at: shared, on: task.support, direction: direction, into: &heldHV)
        #expect(workspace.reusedPasses == 1, "the product must start from the held pass")
        workspace.heldPasses = 0
        try workspace.hessianVectorProduct(at: shared, on: task.support, direction: direction, into: &hv)
        let one = Workspace(model: base)
        for (t, task) in tasks.enumerated() {
            var g: [Float] = [], h: [Float] = []
            let own = try one.hessianVectorProduct(at: theta, on: task.support, direction: directions[t], into: &h, gradient: &g)
            var groupGradient = [Float](repeating: 0, count: base.parameterCount), groupHV = groupGradient, groupHeldHV = groupGradient
            stack.unstack(gradient, group: t, into: &groupGradient)
            stack.unstack(hv, group: t, into: &groupHV)
            stack.unstack(heldHV, group: t, into: &groupHeldHV)
            #expect(groupGradient == g, "group \(t)'s gradient")
            #expect(groupHV == h && groupHeldHV == h, "group \(t)'s H·v")
            #expect(value.groups[t] == own, "group \(t)'s loss")
        }
    }

    /// Meta-parameters and losses after a few meta-steps, with the runner stacking tasks or not.
    static func train(_ learner: any MetaLearner, stacking: Bool, threads: Int, tasks: any TaskDistribution = try! SinusoidTasks(shots: 5),
                      metaBatch: Int = 7) throws -> (meta: [Float], losses: [Double]) {
        var trainer = try MetaTrainer(learner: learner, model: .mlp([1, 12, 12, 1]), tasks: tasks,
                                      optimizer: Adam(learningRate: 0.01), metaBatch: metaBatch, seed: 3, threads: threads)
        trainer.runner.stacksTasks = stacking
        let losses = try (0 ..< 3).map { _ in try trainer.step().loss }
        return (trainer.metaParameters, losses)
    }

    static let learners: [any MetaLearner] = [
        MAML(inner: try! InnerLoop(steps: 2, learningRate: 0.05)),
        MAML(inner: try! InnerLoop(steps: 2, learningRate: 0.05), order: .first),
        try! Reptile(inner: try! InnerLoop(steps: 3, learningRate: 0.02), innerOptimizer: .adam),
    ]

    /// 1 thread stacks the whole meta-batch (7 groups); 2 threads stack blocks of 3 and 4.
    @Test(arguments: learners.indices, [1, 2])
    func stackedMetaTrainingIsBitIdentical(_ learner: Int, _ threads: Int) throws {
        let learner = Self.learners[learner]
        let stacked = try Self.train(learner, stacking: true, threads: threads)
        let alone = try Self.train(learner, stacking: false, threads: 1)
        #expect(stacked.meta == alone.meta, "\(learner.name): stacking changed the meta-parameters")
        #expect(stacked.losses == alone.losses)
        let start = try MetaTrainer(learner: learner, model: .mlp([1, 12, 12, 1]), tasks: SinusoidTasks(shots: 5),
                                    optimizer: Adam(learningRate: 0.01), metaBatch: 7, seed: 3).metaParameters
        #expect(stacked.meta != start, "training must move the meta-parameters")
    }

    /// Tasks of a block whose sizes differ run one by one, with the same result.
    @Test func tasksOfUnequalSizesRunOneByOne() throws {
        struct Uneven: TaskDistribution {
            var inputShape: [Int] { [1] }
            var outputShape: [Int] { [1] }
            var isClassification: Bool { false }
            func sample(_ random: inout RandomSource, queryCount: Int?) throws -> Task {
                try SinusoidTasks(shots: 3 + Int(random.next() % 3)).sample(&random, queryCount: queryCount)
            }
        }
        let learner = MAML(inner: try InnerLoop(steps: 1, learningRate: 0.05))
        let stacked = try Self.train(learner, stacking: true, threads: 2, tasks: Uneven())
        let alone = try Self.train(learner, stacking: false, threads: 1, tasks: Uneven())
        #expect(stacked.meta == alone.meta && stacked.losses == alone.losses)
    }

    /// The blocks of a meta-step add their meta-gradients in turn; a block whose task fails must still pass the
    /// turn on, so that the step ends with the failure instead of the next block waiting forever.
    @Test(arguments: [[0], [6], [1, 5]])
    func aFailingBlockEndsTheStepWithItsError(_ refused: [Int]) throws {
        /// Sinusoid tasks, but the tasks of the given indices of iteration 0 (seed 3) are refused.
        struct Refusing: TaskDistribution {
            let draws: Set<UInt64>
            var inputShape: [Int] { [1] }
            var outputShape: [Int] { [1] }
            var isClassification: Bool { false }
            func sample(_ random: inout RandomSource, queryCount: Int?) throws -> Task {
                var peek = random
                if draws.contains(peek.next()) {
                    Thread.sleep(forTimeInterval: 0.02)   // late, so that the next block has started and waits for this one's turn
                    throw MetaCoreError.argument("task refused")
                }
                return try SinusoidTasks(shots: 5).sample(&random, queryCount: queryCount)
            }
        }
        let draws = Set(refused.map { i in var random = MetaTrainer.taskRandom(seed: 3, iteration: 0, index: i); return random.next() })
        // On a thread of its own, so that a hang is reported (and the rest of the suite goes on) rather than waited for.
        let outcome = Mutex<[String]?>(nil), finished = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            var errors: [String] = []
            do {
                var trainer = try MetaTrainer(learner: Self.learners[0], model: .mlp([1, 12, 12, 1]), tasks: Refusing(draws: draws),
                                              optimizer: Adam(learningRate: 0.01), metaBatch: 7, seed: 3, threads: 2)
                // Twice: a failed step is not taken (the same tasks come again), and the threads are free for the next.
                for _ in 0 ..< 2 {
                    do { _ = try trainer.step(); errors.append("the step succeeded") } catch { errors.append("\(error)") }
                    if trainer.iteration != 0 { errors.append("iteration \(trainer.iteration)") }
                }
            } catch { errors.append("no trainer: \(error)") }
            outcome.withLock { $0 = errors }
            finished.signal()
        }
        guard finished.wait(timeout: .now() + 60) == .success else { Issue.record("the meta-step did not end"); return }
        let errors = try #require(outcome.withLock { $0 })
        #expect(errors.count == 2 && errors.allSatisfy { $0.contains("task refused") }, "\(errors)")
    }

    @Test func onlyChainsOfLinearAndPerSampleLayersStack() throws {
        let mlp = try Model.mlp([2, 3, 1]), conv = try Model.conv4(classes: 2, inputShape: [1, 8, 8], channels: 2, blocks: 1)
        let normalized = try Model(inputShape: [3], layers: [Linear(3, 4), BatchNorm(4), Linear(4, 2)])
        #expect(ModelStack(conv, groups: 2) == nil, "batch-norm mixes a task's samples")
        #expect(ModelStack(normalized, groups: 2) == nil)
        let stack = try #require(ModelStack(mlp, groups: 4))
        #expect(ModelStack(stack.stacked, groups: 2) == nil, "a stacked model does not stack again")
        #expect(stack.stacked.parameterCount == 4 * mlp.parameterCount && stack.stacked.groups == 4)
        // A batch that is not whole groups is refused, naming both.
        let workspace = Workspace(model: stack.stacked)
        let batch = try Batch(inputs: Tensor(shape: [6, 2], scalars: .init(repeating: 1, count: 12)), values: Tensor(shape: [6, 1], scalars: .init(repeating: 0, count: 6)))
        #expect { _ = try workspace.loss(at: stack.stacked.initialParameters(seed: 0), on: batch) } throws: {
            ($0 as? MetaCoreError)?.message.contains("6 samples does not split into the model's 4 equal groups") == true
        }
        // Tasks of different sizes do not stack.
        let tasks = try Self.tasks(3, seed: 1) + Self.tasks(1, seed: 2, shots: 5)
        #expect(try stack.stack(tasks) == nil)
        #expect(try stack.stack(Array(tasks.prefix(3))) == nil, "3 tasks for 4 groups")
    }
}
