import Foundation
import Testing
@testable import MetaCore

/// Weights from elsewhere: a run started from a checkpoint's or a PyTorch `state_dict`'s tensors.
@Suite("Weights from other runs and frameworks")
struct InteropTests {
    static func trainer(seed: UInt64, learner: any MetaLearner = MAML(inner: try! InnerLoop(steps: 1, learningRate: 0.1))) throws -> MetaTrainer {
        try MetaTrainer(learner: learner, model: .conv4(classes: 3, inputShape: [1, 8, 8], channels: 4, blocks: 2),
                        tasks: SyntheticImageTasks(ways: 3, shots: 1, queries: 2, inputShape: [1, 8, 8]),
                        optimizer: Adam(learningRate: 0.01), metaBatch: 2, seed: seed)
    }

    @Test func aRunStartsFromACheckpointsWeights() throws {
        let learner = MetaSGD(inner: try InnerLoop(steps: 1, learningRate: 0.1))
        var trained = try Self.trainer(seed: 1, learner: learner)
        for _ in 0 ..< 2 { _ = try trained.step() }
        let file = try TrainingCheckpoint.make(trained, configuration: TrainingConfiguration())
        var fresh = try Self.trainer(seed: 2, learner: learner)
        #expect(fresh.metaParameters != trained.metaParameters)
        let line = try fresh.initialize(from: file, source: "trained.safetensors")
        #expect(fresh.metaParameters == trained.metaParameters, "the model's parameters and Meta-SGD's rates")
        #expect(line.hasPrefix("started from") && line.contains("trained.safetensors"))
        _ = try fresh.step()
        #expect { _ = try fresh.initialize(from: file, source: "f") } throws: { "\($0)".contains("iteration 1") }
    }

    /// A PyTorch `state_dict` of the same network: parameters by name, batch-norm's running statistics beside
    /// them (accepted, not used), and nothing else.
    @Test func aPyTorchStateDictFitsByName() throws {
        let source = try Self.trainer(seed: 1)
        var tensors = try source.model.layout.entries.map { ($0.name, try Tensor(shape: $0.shape, scalars: Array(source.metaParameters[$0.range]))) }
        tensors += try source.model.stateLayout.entries.map { ($0.name, try Tensor(shape: $0.shape, scalars: .init(repeating: 1, count: $0.count))) }
        #expect(tensors.contains { $0.0 == "1.running_mean" })
        var fresh = try Self.trainer(seed: 3)
        _ = try fresh.initialize(from: SafeTensors(tensors: tensors), source: "torch.safetensors")
        #expect(fresh.metaParameters == source.metaParameters)

        func failure(_ tensors: [(String, Tensor)]) throws -> String {
            var trainer = try Self.trainer(seed: 3)
            do { _ = try trainer.initialize(from: SafeTensors(tensors: tensors), source: "w.safetensors") } catch { return "\(error)" }
            return "no error"
        }
        let withoutFirst = Array(tensors.dropFirst())
        #expect(try failure(withoutFirst).contains("missing 0.weight 4x1x3x3"))
        var reshaped = tensors
        reshaped[0].1 = try Tensor(shape: [4, 9], scalars: tensors[0].1.scalars)
        #expect(try failure(reshaped).contains("0.weight is 4x9 in the file, 4x1x3x3 in the model"))
        #expect(try failure(tensors + [("fc.weight", try Tensor(shape: [1], scalars: [0]))]).contains("not in the model: fc.weight"))
        var infinite = tensors
        infinite[1].1 = try Tensor(shape: tensors[1].1.shape, scalars: .init(repeating: .infinity, count: tensors[1].1.count))
        #expect(try failure(infinite).contains("not finite"))
    }
}
