import Foundation
import Testing
@testable import MetaCore

@Suite("Predictions: every learner's, FewShotClassifier, metactl predict")
struct PredictionTests {
    /// Log-softmax of one row of scores.
    func logSoftmax(_ row: ArraySlice<Float>) -> [Double] {
        let top = Double(row.max()!), total = row.reduce(0.0) { $0 + exp(Double($1) - top) }
        return row.map { Double($0) - top - log(total) }
    }

    /// For every registered classification learner: the predicted classes are those its evaluation counts as
    /// correct, and (cross-entropy learners) the query loss is the cross-entropy of the predicted distribution.
    @Test(arguments: Registry.algorithms.map(\.name))
    func predictionsAgreeWithTheQueryLoss(_ algorithm: String) throws {
        let config = try TrainingConfiguration().applying(["--algorithm", algorithm, "--task", "synthetic-images", "--image", "1,8,8",
                                                           "--ways", "3", "--shots", "2", "--queries", "4", "--inner-steps", "2",
                                                           "--inner-lr", "0.3", "--channels", "4", "--blocks", "2", "--seed", "3"]).resolved()
        let learner = try config.makeLearner(), tasks = try config.makeTasks()
        let model = try config.makeModel(for: tasks)
        let workspace = Workspace(model: model)
        var meta = learner.initialMetaParameters(for: model, seed: 3), random = RandomSource(seed: 9)
        for i in meta.indices { meta[i] += 0.01 * random.normal() }   // off the initial symmetric point
        let task = try tasks.sample(&random)
        let steps = 2
        let scores = try learner.predict(meta, support: task.support, queries: task.query.inputs, steps: steps, workspace: workspace)
        let curve = try learner.adaptationCurve(meta, task: task, steps: steps, workspace: workspace)
        guard case .labels(let labels) = task.query.targets else { Issue.record("labels"); return }
        #expect(scores.shape == [labels.count, 3])
        var correct = 0, crossEntropy = 0.0
        for (q, label) in labels.enumerated() {
            let row = scores.scalars[q * 3 ..< q * 3 + 3]
            if row.firstIndex(of: row.max()!)! - q * 3 == Int(label) { correct += 1 }
            crossEntropy -= logSoftmax(row)[Int(label)] / Double(labels.count)
        }
        #expect(correct == curve.last!.correct, "\(algorithm): \(correct) predicted right, evaluation counts \(curve.last!.correct!)")
        if algorithm != "siamese" {   // Siamese's loss is on pairs, not on the class distribution
            #expect(abs(crossEntropy - curve.last!.loss) <= 1e-4 * max(1, curve.last!.loss), "\(algorithm): \(crossEntropy) vs \(curve.last!.loss)")
        }
    }

    @Test func regressionPredictionsAreTheAdaptedOutputs() throws {
        let config = try TrainingConfiguration().applying(["--algorithm", "maml", "--task", "sine", "--inner-steps", "3"]).resolved()
        let learner = try config.makeLearner(), tasks = try config.makeTasks()
        let model = try config.makeModel(for: tasks), workspace = Workspace(model: model)
        var random = RandomSource(seed: 4)
        let task = try tasks.sample(&random), meta = learner.initialMetaParameters(for: model, seed: 1)
        let outputs = try learner.predict(meta, support: task.support, queries: task.query.inputs, steps: 3, workspace: workspace)
        guard case .values(let targets) = task.query.targets else { Issue.record("values"); return }
        let mse = zip(outputs.scalars, targets.scalars).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +) / Double(targets.scalars.count)
        let loss = try learner.adaptationCurve(meta, task: task, steps: 3, workspace: workspace).last!.loss
        #expect(abs(mse - loss) <= 1e-5 * max(1, loss), "\(mse) vs \(loss)")
    }

    /// A folder of four classes of made-up pictures, each class its own hue and texture.
    func writeFolder(_ root: URL, classes: [String], images: Int) throws {
        for (c, name) in classes.enumerated() {
            for i in 0 ..< images {
                var pixels: [UInt8] = []
                for y in 0 ..< 20 { for x in 0 ..< 20 { for k in 0 ..< 3 {
                    pixels.append(UInt8(truncatingIfNeeded: (k == c % 3 ? 200 : 40) + ((x * (c + 1) + y * (3 - c % 3)) % 7) * 5 + i))
                } } }
                try writePicture(try Image(width: 20, height: 20, channels: 3, pixels: pixels), to: root.appendingPathComponent("\(name)/\(i).png"))
            }
        }
    }

    @Test func aClassifierFromACheckpointNeedsNoDatasetAndPredictsAsTheLearner() throws {
        let root = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        try writeFolder(root.appendingPathComponent("train"), classes: ["a", "b", "c", "d"], images: 4)
        try writeFolder(root.appendingPathComponent("test"), classes: ["e", "f", "g"], images: 4)
        for algorithm in ["protonet", "maml"] {
            let config = try TrainingConfiguration().applying(["--algorithm", algorithm, "--task", "images", "--ways", "3", "--shots", "1",
                                                               "--queries", "2", "--image-size", "16", "--channels", "4", "--iterations", "2",
                                                               "--inner-steps", "1"]).resolved()
            let data = DataSource(path: root.path, cacheDirectory: nil)
            var trainer = try config.makeTrainer(data: data)
            for _ in 0 ..< 2 { _ = try trainer.step() }
            let file = try TrainingCheckpoint.make(trainer, configuration: config)
            #expect(file.metadata["metacore.inputs"] != nil)
            let classifier = try FewShotClassifier(checkpoint: SafeTensors(decoding: file.encoded(), source: "test"))   // no data source
            #expect(classifier.metaParameters == trainer.metaParameters)
            let folder = root.appendingPathComponent("test")
            let support = try ["e", "f", "g"].map { name in (label: name, images: [try Image(contentsOf: folder.appendingPathComponent("\(name)/0.png"))]) }
            let queries = try (1 ..< 4).map { try Image(contentsOf: folder.appendingPathComponent("f/\($0).png")) }
            let predictions = try classifier.classify(support: support, queries: queries)
            #expect(predictions.count == 3 && predictions.allSatisfy { abs($0.probabilities.reduce(0, +) - 1) < 1e-5 })
            #expect(predictions.allSatisfy { ["e", "f", "g"].contains($0.label) })
            // The same scores as the learner on the same inputs, prepared as the task family prepares them.
            let tasks = try config.makeTasks(.test, data: data) as! ImageTasks
            #expect(tasks.preprocessing == classifier.preprocessing)
            let supportBatch = try Batch(inputs: Tensor(shape: [3, 3, 16, 16], scalars: support.flatMap { try tasks.preprocessing.input($0.images[0]) }),
                                         labels: [0, 1, 2])
            let queryInputs = try Tensor(shape: [3, 3, 16, 16], scalars: queries.flatMap { try tasks.preprocessing.input($0) })
            let direct = try trainer.learner.predict(trainer.metaParameters, support: supportBatch, queries: queryInputs,
                                                     steps: config.innerSteps, workspace: Workspace(model: trainer.model))
            #expect(try classifier.predict(support: supportBatch, queries: queryInputs).scalars == direct.scalars)
            if algorithm == "maml" {
                #expect { try classifier.classify(support: Array(support.prefix(2)), queries: queries) } throws: { "\($0)".contains("3-way") }
            }
        }
    }

    @Test func metactlPredictWritesEveryQueryAndItsAccuracy() throws {
        let root = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        try writeFolder(root.appendingPathComponent("data/train"), classes: ["a", "b", "c", "d"], images: 4)
        try writeFolder(root.appendingPathComponent("data/test"), classes: ["e", "f"], images: 4)
        try writeFolder(root.appendingPathComponent("support"), classes: ["e", "f"], images: 1)
        try writeFolder(root.appendingPathComponent("queries"), classes: ["e", "f"], images: 3)
        let train = try runMetactl(["train", "--algorithm", "protonet", "--task", "images", "--data", "data", "--no-cache", "--ways", "2",
                                    "--shots", "1", "--queries", "1", "--image-size", "16", "--channels", "4", "--iterations", "3",
                                    "--threads", "1", "--checkpoint", "run.safetensors"], in: root)
        #expect(train.status == 0, "\(train.err)")
        let listed = try runMetactl(["data", "--dataset", "images", "--data", "data", "--no-cache", "--list-classes", "test"], in: root)
        #expect(listed.status == 0 && listed.out == "e\nf\n", "\(listed.err)")
        try FileManager.default.moveItem(at: root.appendingPathComponent("data"), to: root.appendingPathComponent("moved"))   // not needed any more
        let predict = try runMetactl(["predict", "--checkpoint", "run.safetensors", "--support", "support", "--query", "queries",
                                      "queries/e/0.png"], in: root)
        #expect(predict.status == 0, "\(predict.err)")
        let lines = predict.out.split(separator: "\n")
        #expect(lines.first == "file,label,predicted,p(e),p(f)")
        #expect(lines.count == 1 + 6 + 1)
        #expect(lines.last!.hasPrefix("queries/e/0.png,,"))
        #expect(predict.err.contains("of 6 queries of known class"))
        let json = try runMetactl(["predict", "--checkpoint", "run.safetensors", "--support", "support", "--query", "queries", "--format", "jsonl"], in: root)
        #expect(json.status == 0 && json.out.split(separator: "\n").count == 6 && json.out.contains("\"probabilities\""))
        let bad = try runMetactl(["predict", "--checkpoint", "run.safetensors", "--support", "queries/e", "--query", "queries"], in: root)
        #expect(bad.status != 0 && bad.err.contains("no class folders"))
    }
}

@Suite("The README's mini-ImageNet walkthrough")
struct WalkthroughTests {
    /// benchmarks/mini-imagenet.sh, the README's commands, on a generated dataset of mini-ImageNet's layout
    /// (JPEGs in images/, three CSVs) with tiny settings: every command runs and writes its results.
    @Test func theWalkthroughRunsOnADatasetOfTheLayout() throws {
        let root = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let data = root.appendingPathComponent("mini-imagenet")
        for (split, classes) in [("train", 0 ..< 5), ("val", 5 ..< 7), ("test", 7 ..< 12)] {
            var csv = "filename,label\n"
            for c in classes {
                let label = String(format: "n%08d", c)
                for i in 0 ..< 20 {
                    let name = "\(label)\(String(format: "%08d", i + 1)).jpg"
                    try writePicture(testPicture(width: 30, height: 24, channels: 3, seed: c * 20 + i), to: data.appendingPathComponent("images/\(name)"))
                    csv += "\(name),\(label)\n"
                }
            }
            try Data(csv.utf8).write(to: data.appendingPathComponent("\(split).csv"))
        }
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../benchmarks/mini-imagenet.sh").standardizedFileURL
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [script.path, data.path, root.appendingPathComponent("out").path]
        process.environment = ProcessInfo.processInfo.environment.merging(
            ["METACTL": metactl.path, "XDG_CACHE_HOME": root.appendingPathComponent("cache").path, "SIZE": "16", "TASKS": "2",
             "PROTO_WAYS": "5", "PROTO_ITERATIONS": "1", "MAML_ITERATIONS": "1", "RESNET_ITERATIONS": "1", "QUERIES": "2", "THREADS": "2"]) { $1 }
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let err = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "\(err)")
        for name in ["proto", "maml", "resnet12-proto"] {
            #expect(FileManager.default.fileExists(atPath: root.appendingPathComponent("out/\(name)-eval.json").path), "\(name)")
            #expect(FileManager.default.fileExists(atPath: root.appendingPathComponent("out/\(name).safetensors").path), "\(name)")
        }
        #expect(err.contains("images: decoded and cached"))
        #expect(err.contains("images: read from cache"), "the runs after `metactl data` map its cache")
    }
}
