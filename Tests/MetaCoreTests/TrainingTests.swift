import Foundation
import Testing
@testable import MetaCore

@Suite("Training, evaluation and checkpoints")
struct TrainingTests {
    func configuration(_ algorithm: String) -> TrainingConfiguration {
        var config = TrainingConfiguration()
        config.algorithm = algorithm
        config.metaBatch = 4
        config.iterations = 6
        config.shots = 5
        config.queries = 5
        return config
    }

    /// Training three iterations, saving, restoring and training three more equals six straight iterations,
    /// bit for bit — for every algorithm (Meta-SGD's α and Adam's moments included).
    @Test(arguments: Registry.algorithms.filter { !$0.embedding }.map(\.name))
    func resumedRunContinuesExactly(_ algorithm: String) throws {
        try expectResumedRunContinuesExactly(configuration(algorithm))
    }

    /// A run asked to stop ends after that iteration with its checkpoint written there, however far the next
    /// scheduled one; resumed, it ends where an uninterrupted run does, bit for bit.
    @Test func aRunAskedToStopCheckpointsThereAndResumesExactly() throws {
        var config = configuration("maml")
        config.iterations = 7
        let straight = temporaryFile("straight-stop.safetensors"), stopped = temporaryFile("stopped.safetensors")
        defer { for url in [straight, stopped] { try? FileManager.default.removeItem(at: url) } }
        var whole = try TrainingSession(configuration: config, output: .init(checkpoint: straight))
        #expect(try !whole.run().stoppedOnRequest)
        var session = try TrainingSession(configuration: config, output: .init(checkpoint: stopped, checkpointEvery: 1000))
        var asked = 0
        let summary = try session.run(stopRequested: { asked += 1; return asked == 3 })
        #expect(summary.iterations == 3 && summary.stoppedOnRequest && !summary.stoppedAtTimeLimit)
        var rest = try TrainingSession(resuming: .init(checkpoint: stopped), data: { _ in DataSource() })
        #expect(rest.trainer.iteration == 3)
        #expect(try rest.run().iterations == 7)
        let a = try SafeTensors.read(from: straight), b = try SafeTensors.read(from: stopped)
        #expect(a.tensors.map(\.tensor) == b.tensors.map(\.tensor))
    }

    /// Reptile's carried inner Adam is part of the checkpoint: the resumed run continues it.
    @Test func resumedRunCarriesReptilesInnerAdam() throws {
        let config = try configuration("reptile").applying(["--inner-optimizer", "adam", "--inner-state", "persistent", "--inner-beta1", "0"])
        try expectResumedRunContinuesExactly(config)
    }

    /// Whether Reptile predicts with the support in the batch is evaluation's choice: `eval` may change it, and
    /// with batch-norm it changes the result.
    @Test func evaluationMayPredictReptileWithTheSupport() throws {
        var config = try TrainingConfiguration().applying(["--algorithm", "reptile", "--task", "synthetic-images", "--ways", "3",
                                                           "--channels", "4", "--blocks", "2", "--inner-optimizer", "adam"])
        config.iterations = 2; config.shots = 2; config.queries = 2; config.metaBatch = 2
        let trainer = try config.makeTrainer()
        let file = try TrainingCheckpoint.make(trainer, configuration: config)
        let stored = try TrainingCheckpoint.configuration(of: file)
        let alone = try Evaluation.run(checkpoint: file, taskCount: 4, steps: 2, seed: 1).0
        let together = try Evaluation.run(checkpoint: file, configuration: stored.applying(["--predict-with-support"]), taskCount: 4, steps: 2, seed: 1).0
        #expect(alone.accuracy!.map(\.mean) != together.accuracy!.map(\.mean) || alone.loss.map(\.mean) != together.loss.map(\.mean))
    }

    @Test(arguments: Registry.algorithms.filter(\.embedding).map(\.name))
    func metricLearnersRefuseRegressionTasks(_ algorithm: String) throws {
        do {
            _ = try configuration(algorithm).makeTrainer()
            Issue.record("\(algorithm) on sinusoids must be refused")
        } catch let error as MetaCoreError {
            #expect(error.message.contains("classification"), "\(error.message)")
        }
    }

    /// `clipValue` clamps each entry of the averaged meta-gradient (seen through one SGD step at rate 1),
    /// and the reported norm is the one before clipping.
    @Test func clipValueClampsEachEntryOfTheMetaGradient() throws {
        func step(clipValue: Float?) throws -> (change: [Float], norm: Double) {
            var trainer = try MetaTrainer(learner: MAML(inner: InnerLoop(steps: 1, learningRate: 0.05)), model: .mlp([1, 16, 16, 1]),
                                          tasks: SinusoidTasks(shots: 5), optimizer: SGD(learningRate: 1), metaBatch: 3,
                                          clipValue: clipValue, seed: 4)
            let before = trainer.metaParameters, result = try trainer.step()
            return (zip(before, trainer.metaParameters).map { $0 - $1 }, result.gradientNorm)
        }
        let free = try step(clipValue: nil), limit = free.change.map(abs).max()! / 4
        let clamped = try step(clipValue: limit)
        #expect(clamped.norm == free.norm)
        // (the change θ − (θ − g) is g up to the rounding of θ − g)
        for (c, f) in zip(clamped.change, free.change) {
            #expect(abs(c - (abs(f) > limit ? (f > 0 ? limit : -limit) : f)) < 1e-6)
        }
        #expect(throws: MetaCoreError.self) {
            try MetaTrainer(learner: MAML(inner: InnerLoop(steps: 1, learningRate: 0.05)), model: .mlp([1, 4, 1]), tasks: SinusoidTasks(shots: 5),
                            optimizer: SGD(learningRate: 1), metaBatch: 1, clipValue: 0, seed: 0)
        }
    }

    @Test func safetensorsRoundTripAndLayout() throws {
        let a = try Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, -6.5]), b = try Tensor(shape: [1], scalars: [.pi])
        let file = SafeTensors(tensors: [("a", a), ("b", b)], metadata: ["k": "v"])
        let data = try file.encoded()
        let length = Int(data.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        #expect((8 + length) % 8 == 0 && data.count == 8 + length + 28)
        let header = try JSONSerialization.jsonObject(with: data[8 ..< 8 + length]) as! [String: Any]
        #expect((header["a"] as! [String: Any])["data_offsets"] as! [Int] == [0, 24])
        let decoded = try SafeTensors(decoding: data, source: "test")
        #expect(decoded.tensor(named: "a") == a && decoded.tensor(named: "b") == b && decoded.metadata == ["k": "v"])
    }

    @Test func corruptCheckpointsAreRejectedWithAReason() throws {
        let good = try SafeTensors(tensors: [("a", Tensor(shape: [4], scalars: [1, 2, 3, 4]))]).encoded()
        for (bytes, reason) in [(good.prefix(5), "shorter than the 8-byte header"),
                                (good.prefix(good.count - 4), "does not match its byte range"),
                                (Data([255, 0, 0, 0, 0, 0, 0, 0]) + good.dropFirst(8), "exceeds the file")] {
            #expect {
                _ = try SafeTensors(decoding: Data(bytes), source: "x.safetensors")
            } throws: { error in
                (error as? MetaCoreError)?.kind == .corruptData && "\(error)".contains(reason)
            }
        }
        // A valid safetensors file that is not a training checkpoint.
        #expect(throws: MetaCoreError.self) { try TrainingCheckpoint.restore(SafeTensors(decoding: good, source: "x")) }
        var badTime = SafeTensors()
        badTime.metadata = ["training.seconds": "-3"]
        #expect(throws: MetaCoreError.self) { try TrainingCheckpoint.trainingSeconds(of: badTime) }
        #expect { try SafeTensors.read(from: URL(fileURLWithPath: "/nonexistent/run.safetensors")) } throws: {
            (($0 as? MetaCoreError)?.kind == .missingData)
        }
    }

    @Test func atomicWriteReplacesTheFileAndLeavesNoTemporary() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("atomic-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("c.safetensors")
        try SafeTensors(tensors: [("a", Tensor(shape: [1], scalars: [1]))]).write(to: url)
        try SafeTensors(tensors: [("a", Tensor(shape: [1], scalars: [2]))]).write(to: url)
        #expect(try SafeTensors.read(from: url).tensor(named: "a")?.scalars == [2])
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["c.safetensors"])
    }

    @Test func evaluationIsReproducibleAndAdaptationHelps() throws {
        var config = configuration("maml")
        config.iterations = 200
        var trainer = try config.makeTrainer()
        for _ in 0 ..< 200 { _ = try trainer.step() }
        let run = {
            try Evaluation.run(trainer.learner, meta: trainer.metaParameters, tasks: config.makeTasks(), taskCount: 50,
                               steps: 5, queryCount: 50, seed: 9, runner: trainer.runner)
        }
        let a = try run(), b = try run()
        #expect(a.loss.map(\.mean) == b.loss.map(\.mean))
        #expect(a.loss[5].mean < a.loss[0].mean, "adaptation should lower the query loss: \(a.loss.map(\.mean))")
        #expect(a.loss.allSatisfy { $0.confidence95 > 0 })
    }

    @Test func nonsenseHyperParametersAreRejected() {
        var config = TrainingConfiguration()
        config.algorithm = "mamll"
        #expect(throws: MetaCoreError.self) { try config.makeTrainer() }
        config = TrainingConfiguration(); config.innerLearningRate = -1
        #expect(throws: MetaCoreError.self) { try config.makeTrainer() }
        config = TrainingConfiguration(); config.metaBatch = 0
        #expect(throws: MetaCoreError.self) { try config.makeTrainer() }
        config = TrainingConfiguration(); config.shots = 0
        #expect(throws: MetaCoreError.self) { try config.makeTrainer() }
    }

    /// `--meta-lr-decay linear`: SGD's step at iteration t is (1 − t/N) of the undecayed one from the same
    /// parameters, and nothing moves once the decay reaches its final factor 0; the cosine is MAML++'s.
    @Test func theMetaLearningRateDecays() throws {
        var config = configuration("maml")
        config.metaOptimizer = "sgd"; config.metaLearningRate = 0.1; config.iterations = 4
        #expect(try config.metaLearningRateDecay() == nil)
        config.options = ["meta-lr-decay": .string("linear"), "meta-lr-decay-iterations": .int(2)]
        #expect(try config.metaLearningRateDecay() == LearningRateDecay(shape: .linear, iterations: 2, finalFactor: 0))
        var decayed = try config.makeTrainer()
        config.options = [:]
        var constant = try config.makeTrainer()
        func stepFromDecayed() throws -> (decayed: [Float], constant: [Float]) {
            let start = decayed.metaParameters
            constant.metaParameters = start; constant.iteration = decayed.iteration
            _ = try decayed.step(); _ = try constant.step()
            return (zip(decayed.metaParameters, start).map(-), zip(constant.metaParameters, start).map(-))
        }
        let first = try stepFromDecayed(), second = try stepFromDecayed()
        #expect(first.decayed == first.constant && first.constant.contains { $0 != 0 })
        // Equal up to the rounding of θ + Δ (parameters of order 1, steps of order 1e-3).
        #expect(zip(second.decayed, second.constant).allSatisfy { abs($0 - 0.5 * $1) <= 1e-6 } && second.constant.contains { abs($0) > 1e-3 })
        let halved = second.decayed != second.constant
        #expect(halved)
        for _ in 0 ..< 2 { #expect(try stepFromDecayed().decayed.allSatisfy { $0 == 0 }) }
        let cosine = try LearningRateDecay(shape: .cosine, iterations: 1000, finalFactor: 0.01)
        #expect(abs(cosine.factor(at: 500) - 0.505) < 1e-6 && cosine.factor(at: 0) == 1 && cosine.factor(at: 2000) == 0.01)
        config.options = ["final-meta-lr-factor": .float(2)]
        #expect(throws: MetaCoreError.self) { try config.makeTrainer() }
    }

    @Test func adamMatchesItsDefinition() throws {
        var adam = try Adam(learningRate: 0.1)
        var p: [Float] = [1, -1]
        adam.step(&p, gradient: [0.5, -2])
        // First step: m̂ = g, v̂ = g², update = lr · g / (|g| + eps) = lr · sign(g).
        #expect(abs(p[0] - 0.9) < 1e-6 && abs(p[1] - (-0.9)) < 1e-6)

        // The meta-optimizer's options reach it: with ε = 1 the first step is lr · g / (|g| + 1).
        let config = try TrainingConfiguration().applying(["--meta-lr", "0.1", "--adam-beta1", "0.5", "--adam-beta2", "0.9", "--adam-epsilon", "1"])
        var configured = try #require(try config.makeOptimizer() as? Adam)
        #expect(configured.beta1 == 0.5 && configured.beta2 == 0.9 && configured.epsilon == 1)
        p = [1, -1]
        configured.step(&p, gradient: [0.5, -2])
        #expect(abs(p[0] - (1 - 0.1 * 0.5 / 1.5)) < 1e-6 && abs(p[1] - (-1 + 0.1 * 2 / 3)) < 1e-6)
        #expect(throws: MetaCoreError.self) { try TrainingConfiguration().applying(["--adam-beta1", "1"]).makeOptimizer() }
    }

    /// A parameter whose gradient falls to zero decays its moments towards the subnormal range (m by 0.9 a
    /// step), where each operation costs x86 a microcode assist; Adam stores them as 0 there instead, which
    /// leaves the parameters where the exact definition (in double, moments never flushed) puts them.
    @Test func adamHoldsSubnormalMomentsAtZero() throws {
        var adam = try Adam(learningRate: 0.01)
        var p: [Float] = [0.5, -0.25, 2, 1]
        var reference = p.map(Double.init), m = [Double](repeating: 0, count: 4), v = m
        for t in 1 ... 2000 {
            // The last parameter's v, 1e-3 · (1e-18)², is subnormal at once.
            let g: [Float] = t == 1 ? [1, -3e-3, 0, 1e-18] : t <= 5 ? [0.25, 1e-19, 0, 0] : [0, 0, 0, 0]
            adam.step(&p, gradient: g)
            for i in 0 ..< 4 {
                m[i] = 0.9 * m[i] + 0.1 * Double(g[i])
                v[i] = 0.999 * v[i] + 0.001 * Double(g[i]) * Double(g[i])
                let mHat = m[i] / (1 - pow(0.9, Double(t))), vHat = v[i] / (1 - pow(0.999, Double(t)))
                reference[i] -= 0.01 * mHat / (vHat.squareRoot() + 1e-8)
            }
            let state = try #require(adam.state.vectors["m"]) + (try #require(adam.state.vectors["v"]))
            if state.contains(where: \.isSubnormal) { Issue.record("subnormal moments after step \(t): \(state)"); break }
            if t % 250 == 0 {
                for i in 0 ..< 4 { #expect(abs(Double(p[i]) - reference[i]) <= 1e-6 * abs(reference[i]), "step \(t), parameter \(i)") }
            }
        }
        #expect(adam.state.vectors["m"]![0] == 0 && adam.state.vectors["v"]![0] > 0)
    }
}

/// Training three iterations, saving, restoring and training three more equals six straight iterations, bit for bit.
func expectResumedRunContinuesExactly(_ config: TrainingConfiguration, data: DataSource = DataSource()) throws {
    var straight = try config.makeTrainer(data: data)
    for _ in 0 ..< 6 { _ = try straight.step() }

    var first = try config.makeTrainer(data: data)
    for _ in 0 ..< 3 { _ = try first.step() }
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("resume-\(config.algorithm)-\(UUID()).safetensors")
    defer { try? FileManager.default.removeItem(at: url) }
    try TrainingCheckpoint.make(first, configuration: config, trainingSeconds: 12.5).write(to: url)
    let file = try SafeTensors.read(from: url)
    var (resumed, restoredConfig) = try TrainingCheckpoint.restore(file, data: data)
    #expect(restoredConfig == config && resumed.iteration == 3)
    #expect(try TrainingCheckpoint.trainingSeconds(of: file) == 12.5)
    for _ in 0 ..< 3 { _ = try resumed.step() }
    #expect(resumed.metaParameters == straight.metaParameters)
}
