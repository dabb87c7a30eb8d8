import Foundation
import CKernels
import Testing
@testable import MetaCore

// MARK: - A toy algorithm and a toy task family, defined here and registered from the test target only

/// Linear regression tasks y = w·x + b with w, b drawn per task: inputs of `--toy-dimension` values.
struct ToyLinearTasks: TaskDistribution {
    let dimension: Int, shots: Int, queries: Int
    var inputShape: [Int] { [dimension] }
    var outputShape: [Int] { [1] }
    var isClassification: Bool { false }

    func sample(_ random: inout RandomSource, queryCount: Int?) throws -> Task {
        let w = (0 ..< dimension).map { _ in random.normal() }, b = random.normal()
        func points(_ n: Int) throws -> Batch {
            let x = (0 ..< n * dimension).map { _ in random.uniform(-1, 1) }
            let y = (0 ..< n).map { i in zip(w, x[i * dimension ..< (i + 1) * dimension]).reduce(b) { $0 + $1.0 * $1.1 } }
            return try Batch(inputs: Tensor(shape: [n, dimension], scalars: x), values: Tensor(shape: [n, 1], scalars: y))
        }
        return Task(support: try points(shots), query: try points(queryCount ?? queries))
    }
}

/// MAML that adapts only the last `--toy-head` layers with parameters: the shared inner-update rule gives it
/// its inner step and its exact second-order meta-gradient.
struct ToyHeadMAML: InnerUpdateLearner {
    let inner: InnerLoop, headLayers: Int
    var name: String { "toy-head-maml" }
    func innerUpdate(for model: Model) throws -> InnerUpdate {
        InnerUpdate(rate: .scalar(inner.learningRate), adapted: try model.head(layers: headLayers))
    }
}

/// Registers the toy components once per test process.
let toyComponents: Void = {
    try! Registry.register(TaskFamilyEntry(
        name: "toy-linear", summary: "random linear functions",
        options: [OptionSpec("toy-dimension", .int(1 ... 100), default: .int(3), help: "input dimension")],
        defaultBackbone: "mlp", optionDefaults: ["hidden": .string("16")]) { request in
            ToyLinearTasks(dimension: request.options.int("toy-dimension")!, shots: request.configuration.shots,
                           queries: request.configuration.queries)
        })
    try! Registry.register(AlgorithmEntry(
        name: "toy-head-maml", summary: "MAML on the head only",
        options: [OptionSpec("toy-head", .int(1 ... 10), default: .int(1), help: "layers with parameters that adapt")]) { config, options in
            ToyHeadMAML(inner: try config.innerLoop(), headLayers: options.int("toy-head")!)
        })
}()

func temporaryFile(_ name: String) -> URL {
    FileManager.default.temporaryDirectory.appendingPathComponent("metacore-\(UUID().uuidString)-\(name)")
}

@Suite("Registry: components from outside the library, options, configurations")
struct RegistryTests {
    init() { _ = toyComponents }

    func toyConfiguration() throws -> TrainingConfiguration {
        try TrainingConfiguration().applying(["--algorithm", "toy-head-maml", "--task", "toy-linear", "--toy-dimension", "2",
                                              "--toy-head", "2", "--hidden=8,8", "--shots", "5", "--queries", "5",
                                              "--meta-batch", "3", "--inner-lr", "0.1", "--iterations", "6"])
    }

    /// Trained, checkpointed, resumed and evaluated through the code path `metactl train` and `eval` use.
    @Test func aToyAlgorithmOnAToyTaskFamilyTrainsResumesAndEvaluates() throws {
        let config = try toyConfiguration()
        let expectedCount = 2 * 8 + 8 + 8 * 8 + 8 + 8 + 1
        #expect(try config.makeModel().parameterCount == expectedCount)
        let straight = temporaryFile("straight.safetensors"), split = temporaryFile("split.safetensors")
        defer { for url in [straight, split] { try? FileManager.default.removeItem(at: url) } }
        var whole = try TrainingSession(configuration: config, output: .init(checkpoint: straight))
        #expect(try whole.run().iterations == 6)

        var first = config
        first.iterations = 3
        var part = try TrainingSession(configuration: first, output: .init(checkpoint: split))
        _ = try part.run()
        var rest = try TrainingSession(resuming: .init(checkpoint: split), data: { _ in DataSource() }, iterations: 6)
        #expect(rest.trainer.iteration == 3)
        _ = try rest.run()
        let a = try SafeTensors.read(from: straight), b = try SafeTensors.read(from: split)
        #expect(a.tensors.map(\.tensor) == b.tensors.map(\.tensor) && a.tensors.map(\.name) == b.tensors.map(\.name))
        #expect(try TrainingCheckpoint.configuration(of: b).options["toy-head"] == .int(2))

        let (evaluation, _) = try Evaluation.run(checkpoint: a, taskCount: 20, steps: 3, seed: 5)
        #expect(evaluation.loss.count == 4 && evaluation.loss[3].mean < evaluation.loss[0].mean, "\(evaluation.loss.map(\.mean))")
        // An overridden episode shape rebuilds the trainer; it still reports the checkpoint's iteration.
        let (_, shots) = try Evaluation.run(checkpoint: a, configuration: TrainingCheckpoint.configuration(of: a).applying(["--shots", "3"]),
                                            taskCount: 2, steps: 1, seed: 5)
        #expect(shots.iteration == 6)
        #expect(throws: MetaCoreError.self) {   // another backbone would evaluate another run
            try Evaluation.run(checkpoint: a, configuration: config.applying(["--hidden", "4"]), taskCount: 2, steps: 1, seed: 5)
        }
    }

    @Test func theToyAlgorithmsMetaGradientIsExact() throws {
        let config = try toyConfiguration().applying(["--activation", "tanh", "--inner-steps", "2"])
        let tasks = try config.makeTasks()
        let (error, detail) = try metaGradientError(config.makeLearner(), model: config.makeModel(for: tasks), tasks: tasks, seed: 3)
        #expect(error < 5e-3, "relative error \(error) on \(detail)")
    }

    @Test func registeringATakenNameOrAClashingOptionFails() {
        _ = toyComponents
        #expect(throws: MetaCoreError.self) {
            try Registry.register(AlgorithmEntry(name: "maml", summary: "again") { _, _ in PrototypicalNetworks() })
        }
        #expect(throws: MetaCoreError.self) {   // `channels` is conv4's whole number
            try Registry.register(BackboneEntry(name: "toy-net", summary: "x", options: [OptionSpec("channels", .bool, help: "x")]) { _ in
                try Model.mlp([1, 1])
            })
        }
    }

    @Test func unknownNamesListTheRegisteredOnes() throws {
        var config = TrainingConfiguration()
        config.algorithm = "mamll"
        #expect { try config.makeTrainer() } throws: { error in
            let message = "\(error)"
            return message.contains("unknown algorithm 'mamll'") && Registry.algorithms.allSatisfy { message.contains($0.name) }
        }
        config = TrainingConfiguration()
        config.backbone = "resnet-99"
        #expect { try config.makeTrainer() } throws: { error in
            let message = "\(error)"
            return message.contains("unknown backbone 'resnet-99'; choose one of") && Registry.backbones.allSatisfy { message.contains($0.name) }
        }
    }

    @Test func optionsAreCheckedWhereverTheyComeFrom() throws {
        let base = TrainingConfiguration()
        for (arguments, expected) in [(["--shots", "five"], "not a valid value for shots"),
                                      (["--channels", "32"], "does not apply to this run"),
                                      (["--hidden", "40,x"], "whole numbers"),
                                      (["--hidden", "0"], "must be whole numbers 1"),
                                      (["--activation", "gelu"], "must be one of relu, tanh"),
                                      (["--frobnicate", "1"], "unknown option --frobnicate"),
                                      (["--shots"], "needs a value"),
                                      (["stray"], "unexpected argument 'stray'")] {
            #expect { try base.applying(arguments, origin: ["shots": "run.yaml"]) } throws: { error in
                "\(error)".contains(expected)
            }
        }
        // A configuration file's key is named with the file.
        #expect { try base.applying(["--shots", "five"], origin: ["shots": "run.yaml"]) } throws: { "\($0)".hasPrefix("run.yaml") }
        // A value stored in a checkpoint is checked as the command line's would be.
        var stored = base
        stored.options["hidden"] = .string("-3")
        #expect(throws: MetaCoreError.self) { try stored.makeTrainer() }
        // Later arguments win; true/false options take --name, --no-name and a value.
        let conv = try base.applying(["--task", "omniglot", "--ways", "5", "--channels", "8", "--channels=16", "--no-batch-norm",
                                      "--batch-norm", "false", "--split", "lake"])
        #expect(conv.options == ["channels": .int(16), "batch-norm": .bool(false), "split": .string("lake")])
    }

    /// `arguments` (what `--print-config` writes) read back give the same configuration, resolved or not.
    @Test func argumentsRoundTrip() throws {
        _ = toyComponents
        for config in [try toyConfiguration(), try TrainingConfiguration().applying(["--algorithm", "reptile", "--inner-optimizer", "adam", "--clip", "0.25", "--clip-value", "5"]),
                       try TrainingConfiguration().applying(["--task", "continual-omniglot", "--algorithm", "oml", "--ways", "3", "--remember", "7"]),
                       try TrainingConfiguration().applying(["--hidden", "none"])] {
            for c in [config, try config.resolved()] {
                let words = c.arguments.flatMap { ["--\($0.name)", $0.value] }
                #expect(try TrainingConfiguration().applying(words) == c)
            }
        }
    }

    /// Conv-4's size, blocks and batch-norm, and the MLP's hidden layers, as the backbone options ask.
    @Test func backboneOptionsShapeTheModel() throws {
        var config = try TrainingConfiguration().applying(["--task", "omniglot", "--ways", "5", "--channels", "32", "--blocks", "3", "--no-batch-norm"])
        let model = try config.makeModel(for: SyntheticImageTasks(ways: 5, shots: 1, queries: 1, inputShape: [1, 28, 28]))
        #expect(model.layout.entries.map(\.name) == ["0.weight", "0.bias", "3.weight", "3.bias", "6.weight", "6.bias", "10.weight", "10.bias"])
        #expect(model.layout.entries.first?.shape == [32, 1, 3, 3] && model.outputShape == [5])
        config = try TrainingConfiguration().applying(["--hidden", "7,9", "--activation", "tanh"])
        let expectedCount = 7 + 7 + 7 * 9 + 9 + 9 + 1
        #expect(try config.makeModel().parameterCount == expectedCount)
        // The default network of each family is the one MetaCore used before backbones could be chosen.
        #expect(try TrainingConfiguration().makeModel().parameterCount == 1761)
        // `none` is the empty list where a list may be empty: iMAML's Omniglot network (four stride-2 convolutions
        // with batch-norm, the 2x2 map flattened into the output layer), and a linear MLP.
        config = try TrainingConfiguration().applying(["--task", "omniglot", "--ways", "5", "--backbone", "strided-conv", "--channels", "64",
                                                       "--strides", "2,2,2,2", "--padding", "1", "--batch-norm", "--hidden", "none"])
        let strided = try config.makeModel(for: SyntheticImageTasks(ways: 5, shots: 1, queries: 1, inputShape: [1, 28, 28]))
        #expect(strided.layout.entries.suffix(2).map(\.shape) == [[5, 64 * 2 * 2], [5]])
        #expect(strided.parameterCount == 4 * (64 + 2 * 64) + 64 * 9 + 3 * 64 * 64 * 9 + 5 * 256 + 5)
        // Finn's: the mean of each channel of that map (`--pool mean`), so 64 features; an unknown pooling is refused.
        let finn = try config.applying(["--pool", "mean"]).makeModel(for: SyntheticImageTasks(ways: 5, shots: 1, queries: 1, inputShape: [1, 28, 28]))
        #expect(finn.layout.entries.suffix(2).map(\.shape) == [[5, 64], [5]] && finn.layers.contains { $0 is GlobalPool })
        #expect { try config.applying(["--pool", "max"]) } throws: { "\($0)".contains("pool") }
        // and his batch-norm, which learns a shift alone (`--no-batch-norm-scale`), on either network.
        let shiftOnly = try config.applying(["--pool", "mean", "--no-batch-norm-scale"])
            .makeModel(for: SyntheticImageTasks(ways: 5, shots: 1, queries: 1, inputShape: [1, 28, 28]))
        #expect(shiftOnly.parameterCount == finn.parameterCount - 4 * 64)
        #expect(shiftOnly.layers.compactMap { $0 as? BatchNorm }.map(\.learnsScale) == [false, false, false, false])
        let conv4 = try TrainingConfiguration().applying(["--task", "omniglot", "--ways", "5", "--batch-norm-scale", "false"])
            .makeModel(for: SyntheticImageTasks(ways: 5, shots: 1, queries: 1, inputShape: [1, 28, 28]))
        #expect(conv4.layout.entries.filter { $0.shape == [64] }.map(\.name) == ["0.bias", "1.bias", "4.bias", "5.bias", "8.bias", "9.bias", "12.bias", "13.bias"])
        config = try TrainingConfiguration().applying(["--hidden", "NONE"])
        #expect(try config.makeModel().parameterCount == 2)
        #expect(try TrainingConfiguration().applying(["--hidden", "none"]).arguments.contains { $0.name == "hidden" && $0.value == "none" })
        // A list that must have entries refuses it, on the command line and from a checkpoint.
        #expect { try TrainingConfiguration().applying(["--backbone", "strided-conv", "--strides", "none"]) } throws: {
            "\($0)".contains("strides")
        }
        var stored = try TrainingConfiguration().applying(["--task", "omniglot", "--ways", "5", "--backbone", "strided-conv"])
        stored.options["strides"] = .string("none")
        #expect(throws: MetaCoreError.self) { try stored.makeModel(for: SyntheticImageTasks(ways: 5, shots: 1, queries: 1, inputShape: [1, 28, 28])) }
    }
}

// MARK: - Checkpoints written before registries, options and backbones

/// Checkpoints written by MetaCore at efe72e6 (before this configuration format), with what that version
/// computed from them on a CPU with FMA and OpenBLAS's AVX2 kernels (Haswell, Zen): `metactl eval --tasks 20
/// --threads 1` (losses after 0 … steps) and, after `metactl train --resume --iterations 40`, the FNV-1a hash of
/// the meta-parameters' bytes. A build or a CPU without the FMA clones of the kernels, or on which OpenBLAS runs
/// its AVX-512 kernels (SkylakeX, Cooperlake: Zen 4), rounds differently, and is held to 1e-6 instead. A learner
/// that has since come to add the same terms in another order (`reassociated`: OML on precomputed features)
/// is held to 1e-6 too, and its resumed hash is this version's.
struct Fixture: Sendable, CustomStringConvertible {
    let name: String, steps: Int, loss: [Double], resumedHash: UInt64
    var reassociated = false
    var description: String { name }
    var url: URL { Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: "safetensors")! }
}

let fixtures = [
    Fixture(name: "maml-sine", steps: 3, loss: [3.6973015197843724, 3.5426383448169623, 3.479047395847877, 3.4673971015253877],
            resumedHash: 0x8dd0a4fd82f46fb5),
    Fixture(name: "metasgd-sine", steps: 2, loss: [3.959739956605972, 3.6421671476144875, 3.5564307939170257], resumedHash: 0x12e09ef74358c3e3),
    Fixture(name: "reptile-sine", steps: 2, loss: [3.702240644848517, 3.515682751209391, 3.442301871428378], resumedHash: 0x4b57d1f1d0d5be48),
    Fixture(name: "oml-isine", steps: 10, loss: [4.345329862230551, 4.272474064200164], resumedHash: 0x73817356cd064564,
            reassociated: true),   // 0xced06d71667e20fb when OML ran on the whole model
]

@Suite("Checkpoints of earlier versions")
struct EarlierCheckpointTests {
    @Test(arguments: fixtures)
    func theyLoadEvaluateAndResumeAsBefore(_ fixture: Fixture) throws {
        let file = try SafeTensors.read(from: fixture.url)
        let (evaluation, _) = try Evaluation.run(checkpoint: file, taskCount: 20, steps: fixture.steps, seed: 1_000_003)
        let exact = mc_fma_clones() == 1 && ["Haswell", "Zen"].contains(String(cString: mc_blas_core()))
        if exact && !fixture.reassociated { #expect(evaluation.loss.map(\.mean) == fixture.loss) }
        else { #expect(zip(evaluation.loss.map(\.mean), fixture.loss).allSatisfy { abs($0 - $1) <= 1e-6 * abs($1) }) }

        let copy = temporaryFile("\(fixture.name).safetensors")
        defer { try? FileManager.default.removeItem(at: copy) }
        try FileManager.default.copyItem(at: fixture.url, to: copy)
        var session = try TrainingSession(resuming: .init(checkpoint: copy), data: { _ in DataSource() }, iterations: 40)
        _ = try session.run()
        var hash: UInt64 = 0xcbf29ce484222325
        for (name, tensor) in try SafeTensors.read(from: copy).tensors where !name.hasPrefix("optimizer.") {
            for x in tensor.scalars { withUnsafeBytes(of: x.bitPattern.littleEndian) { for byte in $0 { hash = (hash ^ UInt64(byte)) &* 0x100000001b3 } } }
        }
        if exact { #expect(hash == fixture.resumedHash) }
    }

    /// An Omniglot configuration as that version stored it reads as the Vinyals split on Conv-4 64.
    @Test func anEarlierOmniglotConfigurationMeansWhatItMeant() throws {
        let json = #"{"algorithm":"maml","clip":null,"dataPath":"/data/omniglot","innerLearningRate":0.4,"innerOptimizer":"sgd","innerSteps":1,"iterations":60000,"metaBatch":32,"metaLearningRate":0.001,"metaOptimizer":"adam","queries":15,"seed":0,"shots":1,"task":"omniglot","ways":5}"#
        let config = try JSONDecoder().decode(TrainingConfiguration.self, from: Data(json.utf8))
        #expect(config.options.isEmpty && config.backbone == nil)
        let resolved = try config.resolved()
        #expect(resolved.backbone == "conv4" && resolved.options["split"] == .string("vinyals") && resolved.options["channels"] == .int(64))
        let oml = #"{"algorithm":"oml","innerOptimizer":"sgd","headLayers":2,"onlineBatch":4,"remember":9,"task":"continual-omniglot","ways":3,"shots":5,"queries":5,"innerSteps":1,"innerLearningRate":0.03,"metaOptimizer":"adam","metaLearningRate":0.001,"metaBatch":1,"iterations":10,"seed":0}"#
        let continual = try JSONDecoder().decode(TrainingConfiguration.self, from: Data(oml.utf8))
        #expect(continual.options == ["head-layers": .int(2), "online-batch": .int(4), "remember": .int(9)])
        #expect(try continual.resolved().options["batch-norm"] == .bool(false))
    }
}
