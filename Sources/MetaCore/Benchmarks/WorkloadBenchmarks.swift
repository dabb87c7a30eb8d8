import Foundation

/// An end-to-end meta-training workload of `metactl bench`: one meta-step is what ``MetaTrainer/step()``
/// does — sample the meta-batch, compute every task's meta-gradient, average, take an Adam step.
///
/// The image workloads use Conv-4 (64 channels, transductive BatchNorm) on synthetic 28x28x1 episodes of
/// the real shapes (``SyntheticImageTasks``), and Conv-4 or ResNet-12 on 84x84x3 ones (mini-ImageNet's): the
/// cost does not depend on the pixels, and no dataset is needed.
public struct Workload: Sendable, Equatable {
    /// `sine`, `omni5`, `omni20`, `proto`, `mini5`, `mini-proto`, `resnet12` or `resnet12-proto`.
    public let name: String
    /// MAML's order; `nil` for Prototypical Networks.
    public let order: MAML.Order?

    /// Every workload in the standard order.
    public static let all: [Workload] = ["sine", "omni5", "omni20"].flatMap { name in
        [Workload(name: name, order: .second), Workload(name: name, order: .first)]
    } + [Workload(name: "proto", order: nil), Workload(name: "mini5", order: .second), Workload(name: "mini5", order: .first),
         Workload(name: "mini-proto", order: nil), Workload(name: "resnet12", order: .second), Workload(name: "resnet12-proto", order: nil)]

    /// The workloads' names, each once, in the standard order.
    public static let names = all.map(\.name).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }

    /// The workloads called `name` (both orders for a MAML workload).
    public static func named(_ name: String) throws -> [Workload] {
        let found = all.filter { $0.name == name }
        guard !found.isEmpty else {
            throw MetaCoreError(.unknownName, "unknown workload '\(name)'; choose one of \(names.joined(separator: ", "))")
        }
        return found
    }

    /// E.g. `omni5 order 2`.
    public var label: String { order.map { "\(name) order \($0 == .second ? 2 : 1)" } ?? name }

    /// What one meta-step is.
    public var summary: String {
        switch name {
        case "sine": return "MLP 1-40-40-1, 10+10 points, meta-batch 25, 1 inner step"
        case "omni5": return "Conv-4, 5-way 1-shot 15-query, meta-batch 32, 1 inner step"
        case "omni20": return "Conv-4, 20-way 1-shot 5-query, meta-batch 16, 5 inner steps"
        case "mini5": return "Conv-4 with 32 channels on 84x84x3 (Finn et al.'s mini-ImageNet MAML), 5-way 1-shot 15-query, meta-batch 4, 5 inner steps"
        case "mini-proto": return "ProtoNet Conv-4 on 84x84x3, one 5-way 5-shot 15-query episode"
        case "resnet12": return "ResNet-12 64-160-320-640 on 84x84x3, 5-way 1-shot 15-query, meta-batch 4, 1 inner step"
        case "resnet12-proto": return "ProtoNet ResNet-12 on 84x84x3, one 5-way 5-shot 15-query episode"
        default: return "ProtoNet Conv-4, one 60-way 5-shot 5-query episode"
        }
    }

    /// A trainer for this workload on `threads` threads.
    public func makeTrainer(threads: Int, seed: UInt64 = 0) throws -> MetaTrainer {
        let adam = try Adam(learningRate: 0.001)
        func maml(steps: Int, lr: Float) throws -> MAML { MAML(inner: try InnerLoop(steps: steps, learningRate: lr), order: order ?? .second) }
        switch name {
        case "sine":
            return try MetaTrainer(learner: maml(steps: 1, lr: 0.01), model: .mlp([1, 40, 40, 1]), tasks: SinusoidTasks(shots: 10),
                                   optimizer: adam, metaBatch: 25, seed: seed, threads: threads)
        case "omni5":
            return try MetaTrainer(learner: maml(steps: 1, lr: 0.4), model: .conv4(classes: 5),
                                   tasks: SyntheticImageTasks(ways: 5, shots: 1, queries: 15, inputShape: [1, 28, 28]),
                                   optimizer: adam, metaBatch: 32, seed: seed, threads: threads)
        case "omni20":
            return try MetaTrainer(learner: maml(steps: 5, lr: 0.1), model: .conv4(classes: 20),
                                   tasks: SyntheticImageTasks(ways: 20, shots: 1, queries: 5, inputShape: [1, 28, 28]),
                                   optimizer: adam, metaBatch: 16, seed: seed, threads: threads)
        case "mini5":
            return try MetaTrainer(learner: maml(steps: 5, lr: 0.01), model: .conv4(classes: 5, inputShape: [3, 84, 84], channels: 32),
                                   tasks: SyntheticImageTasks(ways: 5, shots: 1, queries: 15, inputShape: [3, 84, 84]),
                                   optimizer: adam, metaBatch: 4, seed: seed, threads: threads)
        case "mini-proto":
            return try MetaTrainer(learner: PrototypicalNetworks(), model: .conv4(classes: 0, inputShape: [3, 84, 84]),
                                   tasks: SyntheticImageTasks(ways: 5, shots: 5, queries: 15, inputShape: [3, 84, 84]),
                                   optimizer: adam, metaBatch: 1, seed: seed, threads: threads)
        case "resnet12":
            return try MetaTrainer(learner: maml(steps: 1, lr: 0.01), model: .resnet12(classes: 5),
                                   tasks: SyntheticImageTasks(ways: 5, shots: 1, queries: 15, inputShape: [3, 84, 84]),
                                   optimizer: adam, metaBatch: 4, seed: seed, threads: threads)
        case "resnet12-proto":
            return try MetaTrainer(learner: PrototypicalNetworks(), model: .resnet12(classes: 0),
                                   tasks: SyntheticImageTasks(ways: 5, shots: 5, queries: 15, inputShape: [3, 84, 84]),
                                   optimizer: adam, metaBatch: 1, seed: seed, threads: threads)
        default:
            return try MetaTrainer(learner: PrototypicalNetworks(), model: .conv4(classes: 0),
                                   tasks: SyntheticImageTasks(ways: 60, shots: 5, queries: 5, inputShape: [1, 28, 28]),
                                   optimizer: adam, metaBatch: 1, seed: seed, threads: threads)
        }
    }
}

extension Workload {
    /// Floating-point operations of one meta-step by the usual count: a forward pass is 2 × the model's
    /// ``Model/multiplyAdds`` per sample, a backward pass twice that, an R-forward pass twice and an
    /// R-backward pass four times (each product of the pass is repeated with the direction's values).
    /// Second-order MAML with K inner steps runs per task K gradient passes and K Hessian-vector products on
    /// the support set and one gradient pass on the query set; first order omits the products; ProtoNets run
    /// one gradient pass over the episode.
    public func flopsPerStep(_ trainer: MetaTrainer) throws -> Double {
        let forward = 2 * Double(trainer.model.multiplyAdds)
        var random = RandomSource(seed: 0)
        let task = try trainer.tasks.sample(&random, queryCount: nil)
        let (support, query) = (Double(task.support.count), Double(task.query.count))
        guard let order else { return 3 * forward * (support + query) * Double(trainer.metaBatch) }
        let steps = Double((trainer.learner as? MAML)?.inner.steps ?? 1)
        let perTask = steps * 3 * forward * support + 3 * forward * query + (order == .second ? steps * 6 * forward * support : 0)
        return perTask * Double(trainer.metaBatch)
    }
}

/// A workload's measured throughput.
public struct WorkloadResult: Sendable, Codable {
    public let workload: String
    /// 1 or 2 for MAML workloads.
    public let order: Int?
    public let threads: Int
    /// Median over the repetitions of meta-steps (episodes for `proto`) per second.
    public let stepsPerSecond: Double
    public let tasksPerSecond: Double
    /// Meta-steps timed per repetition, and repetitions.
    public let stepsPerRepetition: Int, repetitions: Int
    /// Peak resident memory of the process while the workload ran (Linux), in bytes.
    public let peakMemoryBytes: Int?
    /// Floating-point operations per second by ``Workload/flopsPerStep(_:)``, in GFLOP/s.
    public let gflops: Double
    /// Processes (MPI ranks) the meta-batch was split across; the figures above are the whole job's.
    public var ranks = 1
    /// Mean seconds per timed meta-step that rank 0 spent exchanging results with the other ranks, waiting for
    /// the slowest included (0 on one rank).
    public var exchangeSeconds = 0.0
    /// The exchange alone, after the ranks have met: the median time of gathering one meta-step's meta-gradients
    /// (the ``GradientReduction/ordered`` allgather) right after a barrier.
    public var gatherSeconds = 0.0
}

public enum WorkloadBenchmarks {
    /// Runs `workload` on `threads` threads: warm-up steps for about `warmUp` seconds (at least one), then
    /// `repetitions` timed blocks of meta-steps, each block long enough to last about `minimumSeconds`.
    /// Under a `group` of several ranks, every rank runs it, the meta-batch split across them, and rank 0's
    /// clock decides the warm-up and the block length for all. `fusesLayers: false` runs the passes unfused
    /// (``Workspace/fusesLayers``), to measure what fusion brings; `stacksTasks: false` runs the tasks one by one
    /// (``TaskRunner/stacksTasks``).
    public static func run(_ workload: Workload, threads: Int, repetitions: Int = 5, warmUp: Double = 1,
                           minimumSeconds: Double = 0.5, fusesLayers: Bool = true, stacksTasks: Bool = true,
                           group: any ProcessGroup = SingleProcess()) throws -> WorkloadResult {
        guard repetitions > 0 else { throw MetaCoreError.argument("repetitions must be positive, got \(repetitions)") }
        ProcessMemory.resetPeak()
        var trainer = try workload.makeTrainer(threads: threads)
        trainer.group = group
        trainer.runner.fusesLayers = fusesLayers
        trainer.runner.stacksTasks = stacksTasks
        let flops = try workload.flopsPerStep(trainer)
        let clock = ContinuousClock()
        var start = clock.now, warmUpSteps = 0
        repeat { _ = try trainer.step(); warmUpSteps += 1 } while try group.agree((clock.now - start).seconds < warmUp)
        let perStep = (clock.now - start).seconds / Double(warmUpSteps)
        var steps = [Double(max(1, Int((minimumSeconds / perStep).rounded(.up))))]
        try steps.withUnsafeMutableBufferPointer { try group.broadcast($0, from: 0) }
        var rates: [Double] = [], exchange = 0.0
        for _ in 0 ..< repetitions {
            start = clock.now
            for _ in 0 ..< Int(steps[0]) { _ = try trainer.step(); exchange += trainer.exchangeSeconds }
            rates.append(steps[0] / (clock.now - start).seconds)
        }
        var result = WorkloadResult(workload: workload.name, order: workload.order.map { $0 == .second ? 2 : 1 }, threads: threads,
                                    stepsPerSecond: median(rates), tasksPerSecond: median(rates) * Double(trainer.metaBatch),
                                    stepsPerRepetition: Int(steps[0]), repetitions: repetitions, peakMemoryBytes: ProcessMemory.peak(),
                                    gflops: median(rates) * flops / 1e9)
        result.ranks = group.size
        if group.size > 1 {
            result.exchangeSeconds = exchange / (steps[0] * Double(repetitions))
            result.gatherSeconds = try gatherTime(trainer.metaBatch * trainer.metaParameters.count, group, repetitions: max(5, repetitions))
        }
        return result
    }

    /// The median time of an allgather of `count` floats split across `group`'s ranks, each timed from a barrier.
    static func gatherTime(_ count: Int, _ group: any ProcessGroup, repetitions: Int) throws -> Double {
        var buffer = [Float](repeating: 1, count: count), times: [Double] = []
        let counts = (0 ..< group.size).map { count * ($0 + 1) / group.size - count * $0 / group.size }
        let clock = ContinuousClock()
        for _ in 0 ..< repetitions {
            try group.barrier()
            let start = clock.now
            try buffer.withUnsafeMutableBufferPointer { try group.allGather($0, counts: counts) }
            times.append((clock.now - start).seconds)
        }
        // The slowest rank's (each rank's share of `size` tasks is one).
        return try group.gather([[median(times)]], tasks: group.size).map { $0[0] }.max()!
    }

    private static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted(), n = sorted.count
        return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    }
}

/// The process's peak resident memory (Linux `/proc/self/status`, `VmHWM`), which can be reset between
/// measurements.
public enum ProcessMemory {
    /// Peak resident set size in bytes since the start or the last ``resetPeak()``; `nil` where unavailable.
    public static func peak() -> Int? { statusField("VmHWM") }

    /// Resident set size in bytes now; `nil` where unavailable.
    public static func resident() -> Int? { statusField("VmRSS") }

    /// A size field of `/proc/self/status` (given there in kB), in bytes.
    private static func statusField(_ name: String) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }),
              let kilobytes = Int(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? "") else { return nil }
        return kilobytes * 1024
    }

    /// glibc's `malloc_trim` (not in Swift's Glibc module), looked up once; `nil` on other C libraries.
    private static let trimHeap: (@convention(c) (Int) -> Int32)? = {
        guard let symbol = dlsym(nil, "malloc_trim") else { return nil }   // nil handle: RTLD_DEFAULT
        return unsafeBitCast(symbol, to: (@convention(c) (Int) -> Int32).self)
    }()

    /// Restarts the peak from the current resident size (Linux ≥ 4.0: writing 5 to `/proc/self/clear_refs`),
    /// after handing the memory the allocator keeps from freed blocks back to the system, so that a peak
    /// does not count what an earlier measurement left in the heap.
    public static func resetPeak() {
        _ = trimHeap?(0)
        try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)
    }
}

extension Duration {
    /// The duration in seconds.
    public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}
