import Foundation
import Testing
@testable import MetaCore

/// MAML++'s schedules and its reductions to MAML; its exact meta-gradient is among `metaCases`.
/// MAML++ without per-step copies whose batch-norm parameters are not adapted by the inner loop: the
/// reference for the copies' summed gradient. (Its rates on the batch-norm tensors are zero.)
struct FrozenBatchNorm {
    let learner: MAMLPlusPlus, batchNorm: [Range<Int>]
    init(_ learner: MAMLPlusPlus, _ batchNorm: [Range<Int>]) { self.learner = learner; self.batchNorm = batchNorm }

    func metaGradient(_ meta: [Float], task: Task, workspace: Workspace, into gradient: inout [Float]) throws -> LossValue {
        // Zeroing the batch-norm tensors' rates through a learner with learned rates set to α and 0.
        let rates = try MAMLPlusPlus(inner: learner.inner, learnsRates: true, perStepBatchNorm: false)
        let model = workspace.model, starts = Set(batchNorm.map(\.lowerBound))
        let perStep = model.layout.entries.map { starts.contains($0.offset) ? 0 : learner.inner.learningRate }
        let full = meta + (0 ..< learner.inner.steps).flatMap { _ in perStep }
        let value = try rates.metaGradient(full, task: task, workspace: workspace, into: &gradient)
        gradient = Array(gradient[..<model.parameterCount])
        return value
    }
}

@Suite("MAML++")
struct MAMLPlusPlusTests {
    /// The multi-step loss weights follow the reference code's schedule: equal at first, the non-final ones
    /// down to 0.03/K and the last up to 1 − (K−1)·0.03/K at the end of the annealing, summing to 1 throughout.
    @Test func lossWeightsAnnealTowardsTheLastStep() {
        let k = 5
        #expect(MAMLPlusPlus.lossWeights(steps: k, iteration: 0, annealing: 5000, enabled: true) == [0.2, 0.2, 0.2, 0.2, 0.2])
        let half = MAMLPlusPlus.lossWeights(steps: k, iteration: 2500, annealing: 5000, enabled: true)
        #expect(abs(half[0] - 0.1) < 1e-12 && abs(half[4] - 0.6) < 1e-12)
        for t in [5000, 20_000] {
            let end = MAMLPlusPlus.lossWeights(steps: k, iteration: t, annealing: 5000, enabled: true)
            #expect(end.dropLast().allSatisfy { abs($0 - 0.006) < 1e-12 } && abs(end[4] - 0.976) < 1e-12, "\(end)")
        }
        for t in stride(from: 0, through: 6000, by: 250) {
            #expect(abs(MAMLPlusPlus.lossWeights(steps: k, iteration: t, annealing: 5000, enabled: true).reduce(0, +) - 1) < 1e-12)
        }
        #expect(MAMLPlusPlus.lossWeights(steps: 3, iteration: 0, annealing: 100, enabled: false) == [0, 0, 1])
    }

    @Test func theMetaLearningRateAndTheOrderFollowTheSchedule() throws {
        var schedule = MAMLPlusPlus.Schedule()
        schedule.cosineIterations = 1000; schedule.minimumLearningRateFactor = 0.01; schedule.firstOrderIterations = 10
        let learner = try MAMLPlusPlus(inner: InnerLoop(steps: 2, learningRate: 0.1), schedule: schedule)
        #expect(learner.metaLearningRateFactor(at: 0) == 1)
        #expect(abs(learner.metaLearningRateFactor(at: 500) - 0.505) < 1e-6)
        #expect(abs(learner.metaLearningRateFactor(at: 1000) - 0.01) < 1e-6 && abs(learner.metaLearningRateFactor(at: 5000) - 0.01) < 1e-6)
        #expect((learner.scheduled(at: 9) as! MAMLPlusPlus).order == .first)
        #expect((learner.scheduled(at: 10) as! MAMLPlusPlus).order == .second)
        let constant = try MAMLPlusPlus(inner: InnerLoop(steps: 2, learningRate: 0.1))
        #expect(constant.metaLearningRateFactor(at: 123) == 1)
    }

    /// Without the multi-step loss and the learned rates, MAML++ is MAML: second order against `maml`,
    /// first order against `fomaml`, to float rounding.
    @Test func withoutItsChangesItIsMAML() throws {
        let model = try tanhMLP(), workspace = Workspace(model: model)
        var random = RandomSource(seed: 7)
        let task = try SinusoidTasks(shots: 5).sample(&random)
        let meta = model.initialParameters(seed: 7)
        for (order, firstOrderIterations) in [(MAML.Order.second, 0), (.first, 1)] {
            var schedule = MAMLPlusPlus.Schedule()
            schedule.firstOrderIterations = firstOrderIterations
            let plain = try MAMLPlusPlus(inner: InnerLoop(steps: 3, learningRate: 0.05), multiStepLoss: false, learnsRates: false,
                                         perStepBatchNorm: false, schedule: schedule)
            var a: [Float] = [], b: [Float] = []
            let va = try plain.scheduled(at: 0).metaGradient(meta, task: task, workspace: workspace, into: &a)
            let vb = try MAML(inner: plain.inner, order: order).metaGradient(meta, task: task, workspace: workspace, into: &b)
            let difference = zip(a, b).map { abs($0 - $1) }.max()!, scale = b.map(abs).max()!
            #expect(a.count == b.count && difference <= 1e-5 * scale, "\(order): largest difference \(difference) of \(scale)")
            #expect(abs(va.loss - vb.loss) < 1e-9 && va.correct == vb.correct)
        }
    }

    /// Per-step batch-norm: the inner loop leaves every batch-norm parameter as it was, each step's copy is a
    /// meta-parameter of its own (named `bn.<k>`), and with the same values in every copy the meta-loss is
    /// that of one shared set whose gradient is the copies' sum.
    @Test func perStepBatchNormParametersAreTheStepsOwn() throws {
        let model = try smallConv4(), workspace = Workspace(model: model)
        var random = RandomSource(seed: 3)
        let task = try SyntheticImageTasks(ways: 3, shots: 2, queries: 2, inputShape: [1, 8, 8]).sample(&random)
        let learner = try MAMLPlusPlus(inner: InnerLoop(steps: 3, learningRate: 0.3), learnsRates: false)
        let meta = learner.initialMetaParameters(for: model, seed: 3), bn = learner.batchNormRanges(model)
        #expect(learner.extraMetaParameters(for: model).map(\.name) == ["bn.1", "bn.2"])
        #expect(bn.count == 4 && meta.count == model.parameterCount + 2 * bn.reduce(0) { $0 + $1.count })
        let adapted = try learner.adaptationCurve(meta, task: task, steps: 3, workspace: workspace)
        #expect(adapted.count == 4)
        var theta = Array(meta[..<model.parameterCount])
        for k in 0 ..< 3 { try learner.innerStep(&theta, step: k, meta: meta, support: task.support, workspace: workspace) }
        #expect(bn.allSatisfy { theta[$0] == meta[$0] })
        // The copies' gradients summed are the gradient of the shared set (the plain MAML++ without copies).
        var split: [Float] = [], shared: [Float] = []
        _ = try learner.metaGradient(meta, task: task, workspace: workspace, into: &split)
        let one = try MAMLPlusPlus(inner: learner.inner, learnsRates: false, perStepBatchNorm: false)
        _ = try FrozenBatchNorm(one, bn).metaGradient(Array(meta[..<model.parameterCount]), task: task, workspace: workspace, into: &shared)
        let size = bn.reduce(0) { $0 + $1.count }
        var offset = 0
        for range in bn {
            for i in range {
                let total = split[i] + split[model.parameterCount + offset + i - range.lowerBound] + split[model.parameterCount + size + offset + i - range.lowerBound]
                #expect(abs(total - shared[i]) <= 1e-4 * max(1, abs(shared[i])), "parameter \(i): \(total) vs \(shared[i])")
            }
            offset += range.count
        }
    }

    /// A run with every schedule on — first order, then second, the loss weights annealing, cosine annealing of
    /// the meta learning rate — stopped and resumed from its checkpoint is the uninterrupted run, bit for bit.
    @Test func aScheduledRunResumesBitForBit() throws {
        let directory = try temporaryDirectory()
        let flags = ["train", "--algorithm", "maml++", "--inner-steps", "2", "--meta-batch", "3", "--threads", "1", "--msl-iterations", "6",
                     "--first-order-iterations", "3", "--cosine-iterations", "8"]
        #expect(try runMetactl(flags + ["--iterations", "8", "--checkpoint", "whole.safetensors"], in: directory).status == 0)
        #expect(try runMetactl(flags + ["--iterations", "4", "--checkpoint", "split.safetensors"], in: directory).status == 0)
        let resumed = try runMetactl(flags + ["--iterations", "8", "--checkpoint", "split.safetensors", "--resume"], in: directory)
        #expect(resumed.status == 0, "\(resumed.err)")
        #expect(try sameRun(directory.appendingPathComponent("whole.safetensors"), directory.appendingPathComponent("split.safetensors")))
    }
}
