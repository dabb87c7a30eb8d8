import Foundation
import Glibc
import Synchronization
import Testing
@testable import MetaCore

/// Tasks run concurrently on a ``TaskRunner``: the results must not depend on the number of threads, and a
/// fixed seed must reproduce a run bit for bit.
@Suite("Tasks in parallel")
struct ParallelTests {
    /// A trainer for a small but real workload: MAML (both orders), Meta-SGD or ProtoNets, on sinusoids or
    /// on synthetic images through a conv + BatchNorm net.
    static func trainer(_ learner: String, threads: Int, seed: UInt64 = 3) throws -> MetaTrainer {
        let inner = try InnerLoop(steps: 2, learningRate: 0.05)
        let images = try SyntheticImageTasks(ways: 3, shots: 2, queries: 3, inputShape: [1, 8, 8])
        switch learner {
        case "maml-sine":
            return try MetaTrainer(learner: MAML(inner: inner), model: .mlp([1, 16, 16, 1]), tasks: SinusoidTasks(shots: 5),
                                   optimizer: Adam(learningRate: 0.01), metaBatch: 7, seed: seed, threads: threads)
        case "maml-conv", "fomaml-conv":
            return try MetaTrainer(learner: MAML(inner: inner, order: learner == "maml-conv" ? .second : .first),
                                   model: .conv4(classes: 3, inputShape: [1, 8, 8], channels: 4, blocks: 2), tasks: images,
                                   optimizer: Adam(learningRate: 0.01), metaBatch: 5, seed: seed, threads: threads)
        case "reptile-carried-sine":
            return try MetaTrainer(learner: Reptile(inner: inner, innerOptimizer: .adam, innerBeta1: 0, innerState: .persistent),
                                   model: .mlp([1, 16, 16, 1]), tasks: SinusoidTasks(shots: 5),
                                   optimizer: SGD(learningRate: 0.5), metaBatch: 5, seed: seed, threads: threads)
        case "metasgd-sine":
            return try MetaTrainer(learner: MetaSGD(inner: inner), model: .mlp([1, 16, 16, 1]), tasks: SinusoidTasks(shots: 5),
                                   optimizer: Adam(learningRate: 0.01), metaBatch: 6, seed: seed, threads: threads)
        default:
            return try MetaTrainer(learner: PrototypicalNetworks(), model: .conv4(classes: 0, inputShape: [1, 8, 8], channels: 4, blocks: 2),
                                   tasks: images, optimizer: Adam(learningRate: 0.01), metaBatch: 3, seed: seed, threads: threads)
        }
    }

    static let learners = ["maml-sine", "maml-conv", "fomaml-conv", "metasgd-sine", "reptile-carried-sine", "protonet-conv"]

    /// Meta-parameters and losses after a few steps, for comparison.
    static func run(_ learner: String, threads: Int, steps: Int = 3) throws -> (meta: [Float], losses: [Double]) {
        var trainer = try trainer(learner, threads: threads)
        let losses = try (0 ..< steps).map { _ in try trainer.step().loss }
        return (trainer.metaParameters, losses)
    }

    /// Each task's meta-gradient has its own slot and the slots are summed in task order, so 2 or 3 threads
    /// give exactly the single-threaded meta-gradients (not merely close ones).
    @Test(arguments: learners)
    func threadCountDoesNotChangeTheMetaGradients(_ learner: String) throws {
        let single = try Self.run(learner, threads: 1)
        for threads in [2, 3] {
            let parallel = try Self.run(learner, threads: threads)
            #expect(parallel.meta == single.meta, "\(learner): \(threads) threads moved the meta-parameters differently")
            #expect(parallel.losses == single.losses)
        }
        #expect(single.meta != (try Self.trainer(learner, threads: 1).metaParameters), "\(learner): training must move the meta-parameters")
    }

    @Test(arguments: learners)
    func rerunsAreBitIdentical(_ learner: String) throws {
        let first = try Self.run(learner, threads: 2), second = try Self.run(learner, threads: 2)
        #expect(first.meta == second.meta && first.losses == second.losses)
        let otherSeed = try Self.trainer(learner, threads: 2, seed: 4).metaParameters
        #expect(otherSeed != (try Self.trainer(learner, threads: 2).metaParameters), "the seed must matter")
    }

    @Test func evaluationDoesNotDependOnTheThreadCount() throws {
        let trainer = try Self.trainer("maml-conv", threads: 1)
        func evaluate(_ threads: Int) throws -> Evaluation {
            try Evaluation.run(trainer.learner, meta: trainer.metaParameters, tasks: trainer.tasks, taskCount: 9, steps: 2,
                               queryCount: nil, seed: 5, runner: TaskRunner(model: trainer.model, threads: threads))
        }
        let one = try evaluate(1), three = try evaluate(3)
        #expect(one.loss.map(\.mean) == three.loss.map(\.mean) && one.accuracy!.map(\.mean) == three.accuracy!.map(\.mean))
    }

    /// A failing task stops the meta-step with that task's error, whichever thread ran it.
    @Test func aFailingTaskReportsItsError() throws {
        struct Failing: TaskDistribution {
            var inputShape: [Int] { [1] }
            var outputShape: [Int] { [1] }
            var isClassification: Bool { false }
            func sample(_ random: inout RandomSource, queryCount: Int?) throws -> Task {
                throw MetaCoreError(.missingData, "task source unavailable")
            }
        }
        var trainer = try MetaTrainer(learner: MAML(inner: InnerLoop(steps: 1, learningRate: 0.1)), model: .mlp([1, 4, 1]),
                                      tasks: Failing(), optimizer: SGD(learningRate: 0.1), metaBatch: 6, seed: 0, threads: 2)
        #expect { _ = try trainer.step() } throws: { ($0 as? MetaCoreError)?.message == "task source unavailable" }
        #expect(trainer.iteration == 0)
        #expect(throws: MetaCoreError.self) { try TaskRunner(model: .mlp([1, 1]), threads: 0) }
    }

    /// The runner's thread pool runs every part of a batch exactly once and returns only when all have run,
    /// batch after batch, whether its threads are still spinning from the last batch or have parked (the
    /// pauses outlast the spin), and its deinit stops its threads.
    @Test(arguments: [1, 2, 3]) func workerPoolRunsEveryPartOncePerBatch(_ size: Int) {
        let pool = WorkerPool(size: size)
        // A pthread lock, which ThreadSanitizer sees (Synchronization's Mutex waits on futexes, which it does not).
        final class Counts: @unchecked Sendable {
            let lock = NSLock()
            var values: [Int]
            init(_ size: Int) { values = [Int](repeating: 0, count: size) }
        }
        let counts = Counts(size)
        for batch in 1 ... 300 {
            if batch % 60 == 0 { usleep(2_000) }
            pool.run { k in counts.lock.withLock { counts.values[k] += 1 } }
            #expect(counts.lock.withLock { counts.values } == [Int](repeating: batch, count: size))
        }
    }
}
