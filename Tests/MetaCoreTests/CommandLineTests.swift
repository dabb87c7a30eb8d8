import CKernels
import Foundation
import Testing
@testable import MetaCore

/// The `metactl` built beside this test bundle (`make test` and `make sanitize` build it before the tests).
let metactl: URL = {
    var directory = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.deletingLastPathComponent()
    while directory.path != "/" {   // the test binary sits in BUILD/debug/MetaCorePackageTests.xctest[/…]
        let candidate = directory.appendingPathComponent("metactl")
        if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        directory = directory.deletingLastPathComponent()
    }
    return URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../.build/debug/metactl").standardizedFileURL
}()

/// Runs metactl with `arguments` in `directory` (in `environment`, if given, instead of this process's); returns its exit status, stdout and stderr.
func runMetactl(_ arguments: [String], in directory: URL, environment: [String: String]? = nil) throws -> (status: Int32, out: String, err: String) {
    let process = Process()
    process.executableURL = metactl
    process.arguments = arguments
    if let environment { process.environment = environment }
    process.currentDirectoryURL = directory
    let out = Pipe(), err = Pipe()
    process.standardOutput = out; process.standardError = err
    try process.run()
    // Both pipes drain at once: a child that fills one while this reads the other would wait forever.
    nonisolated(unsafe) var errData = Data()
    let drained = DispatchSemaphore(value: 0)
    DispatchQueue.global().async { errData = err.fileHandleForReading.readDataToEndOfFile(); drained.signal() }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    drained.wait()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
}

@Suite("metactl: configuration files, overrides, progress")
struct CommandLineTests {
    let directory: URL

    init() throws {
        #expect(FileManager.default.isExecutableFile(atPath: metactl.path), "build metactl first (make test does): \(metactl.path)")
        directory = try temporaryDirectory()
    }

    func file(_ name: String) -> URL { directory.appendingPathComponent(name) }

    /// `--print-config` fed back through `--config` is the same run, bit for bit: parameters, optimiser state and
    /// the stored configuration.
    @Test func printedConfigurationRepeatsTheRun() throws {
        let flags = ["--algorithm", "metasgd", "--inner-steps", "2", "--shots", "4", "--queries", "6", "--meta-batch", "3",
                     "--iterations", "12", "--hidden", "16,8", "--activation", "tanh", "--meta-lr", "0.003", "--seed", "7", "--threads", "1"]
        let printed = try runMetactl(["train"] + flags + ["--print-config"], in: directory)
        #expect(printed.status == 0, "\(printed.err)")
        try printed.out.write(to: file("run.yaml"), atomically: true, encoding: .utf8)
        #expect(try runMetactl(["train"] + flags + ["--checkpoint", "a.safetensors"], in: directory).status == 0)
        let fromFile = try runMetactl(["train", "--config", "run.yaml", "--threads", "1", "--checkpoint", "b.safetensors"], in: directory)
        #expect(fromFile.status == 0, "\(fromFile.err)")
        let a = try SafeTensors.read(from: file("a.safetensors")), b = try SafeTensors.read(from: file("b.safetensors"))
        #expect(a.tensors.count > 0 && a.tensors.map(\.name) == b.tensors.map(\.name) && a.tensors.map(\.tensor) == b.tensors.map(\.tensor))
        #expect(try TrainingCheckpoint.configuration(of: a) == TrainingCheckpoint.configuration(of: b))
        // Printing the file's run again gives the file.
        #expect(try runMetactl(["train", "--config", "run.yaml", "--print-config"], in: directory).out == printed.out)
    }

    @Test func theCommandLineOverridesTheFile() throws {
        try "algorithm: anil\nshots: 3\nhidden: [20, 20]\nbackbone: mlp\n".write(to: file("base.yaml"), atomically: true, encoding: .utf8)
        let result = try runMetactl(["train", "--config", "base.yaml", "--shots", "5", "--print-config"], in: directory)
        #expect(result.status == 0, "\(result.err)")
        #expect(result.out.contains("algorithm: anil\n") && result.out.contains("shots: 5\n") && result.out.contains("hidden: 20,20\n"))
    }

    @Test(arguments: [("colour: blue\n", "--colour"), ("a: " + String(repeating: "[", count: 100_000) + "\n", "not valid YAML"),
                      ("a0: &a [1, 2, 3]\na1: [*a, *a, *a]\n", "'a1'"), (String(repeating: "# padding\n", count: 120_000), "at most 1 MiB"), ("shots: five\n", "shots"), ("ways: [1, [2]]\n", "'ways'"),
                      ("checkpoint-every: often\n", "--checkpoint-every"), ("- maml\n", "mapping")])
    func aBadKeyOrValueNamesTheFile(_ text: String, _ named: String) throws {
        try text.write(to: file("bad.yaml"), atomically: true, encoding: .utf8)
        let result = try runMetactl(["train", "--config", "bad.yaml", "--iterations", "1"], in: directory)
        #expect(result.status != 0)
        #expect(result.err.contains("bad.yaml") && result.err.contains(named), "\(result.err)")
    }

    @Test func resumeRefusesAChangedRunButExtendsIt() throws {
        let base = ["train", "--iterations", "4", "--meta-batch", "2", "--threads", "1", "--checkpoint", "r.safetensors"]
        #expect(try runMetactl(base, in: directory).status == 0)
        let changed = try runMetactl(base + ["--resume", "--meta-lr", "0.1"], in: directory)
        #expect(changed.status != 0 && changed.err.contains("--meta-lr"), "\(changed.err)")
        var longer = base
        longer[2] = "6"
        let extended = try runMetactl(longer + ["--resume"], in: directory)
        #expect(extended.status == 0, "\(extended.err)")
        #expect(try TrainingCheckpoint.restore(SafeTensors.read(from: file("r.safetensors"))).0.iteration == 6)
    }

    /// SIGTERM (which Slurm sends ahead of a job's time limit) or Ctrl-C stops training after the iteration under
    /// way, with the checkpoint written there, and exits cleanly.
    @Test func aSignalStopsTrainingWithACheckpoint() throws {
        let process = Process()
        process.executableURL = metactl
        process.arguments = ["train", "--iterations", "100000000", "--checkpoint", "s.safetensors", "--checkpoint-every", "100000000",
                             "--log", "s.jsonl", "--log-every", "1", "--threads", "1"]
        process.currentDirectoryURL = directory
        let out = Pipe()
        process.standardOutput = out; process.standardError = FileHandle.nullDevice
        try process.run()
        // Once the log has a line, training has started, and with it the handler.
        let deadline = Date().addingTimeInterval(120)
        while (try? Data(contentsOf: file("s.jsonl")))?.isEmpty ?? true, Date() < deadline { usleep(10_000) }
        process.terminate()
        let stopBy = Date().addingTimeInterval(60)
        while process.isRunning, Date() < stopBy { usleep(10_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            Issue.record("metactl train went on for a minute after SIGTERM")
        }
        let printed = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationReason == .exit && process.terminationStatus == 0, "\(printed)")
        let stop = try #require(printed.firstMatch(of: /stopped on SIGTERM after iteration (\d+)/), "\(printed)")
        let resumed = try TrainingSession(resuming: .init(checkpoint: file("s.safetensors")), data: { _ in DataSource() })
        #expect(resumed.trainer.iteration == Int(stop.1)! && resumed.trainer.iteration >= 1)
    }

    /// Written to a pipe, progress is plain lines, not a carriage-return line rewritten thousands of times.
    @Test func progressToAPipeIsPlainLines() throws {
        let result = try runMetactl(["train", "--iterations", "3000", "--meta-batch", "2", "--threads", "1", "--checkpoint", "p.safetensors"], in: directory)
        #expect(result.status == 0)
        #expect(!result.err.contains("\r") && result.err.contains("iter 3000/3000"), "\(result.err)")
        #expect(result.err.split(separator: "\n").count <= 3, "\(result.err)")
    }

    /// Flags that crashed metactl, or that it silently ignored, now get an error that names the problem.
    @Test(arguments: [
        (["train", "--inner-lr", "-1"], "inner-lr must be a positive number"),
        (["train", "--threads", "-1"], "--threads must be between 1 and"),
        (["train", "--threads", "100000"], "--threads must be between 1 and"),
        (["train", "--time-limit", "-5"], "time limit must be a positive"),
        (["train", "--shots", "1000000000000"], "shots must be between"),
        (["train", "--meta-batch", "4611686018427387904"], "meta-batch must be between"),
        (["train", "--task", "incremental-sine", "--ways", "9223372036854775807"], "ways must be between"),
        (["train", "--ways", "5"], "sine tasks have no ways"),
        (["train", "--checkpoint", "/nonexistent/dir/c.safetensors"], "does not exist"),
        (["eval", "--checkpoint", "FIXTURE", "--steps", "100000000"], "--steps must be between 0 and 10000"),
        (["verify", "--steps", "0"], "--steps must be positive"),
        (["verify", "--steps", "nan"], "--steps must be positive"),
        (["continual", "--checkpoint", "FIXTURE-OML", "--stage-size", "0"], "--stage-size must be between"),
        (["bench", "--repetitions", "0"], "--repetitions must be between"),
        (["train", "--task", "synthetic-images", "--ways", "3", "--image", "3,84"], "--image takes channels,height,width (three numbers), got 3,84"),
        (["train", "--task", "synthetic-images", "--ways", "3", "--backbone", "resnet12", "--widths", "0,4"], "widths"),
    ])
    func badFlagsAreExplained(_ arguments: [String], _ expected: String) throws {
        let resolved = arguments.map { $0 == "FIXTURE" ? fixtures[0].url.path : $0 == "FIXTURE-OML" ? fixtures[3].url.path : $0 }
        let result = try runMetactl(resolved + ["--iterations", "1"].filter { _ in arguments[0] == "train" }, in: directory)
        #expect(result.status != 0 && result.err.contains(expected), "\(resolved): \(result.err)")
    }

    /// RGB images of any size through ResNet-12 from the command line: train, resume, evaluate.
    @Test func resnetOnSyntheticRGBImages() throws {
        let base = ["train", "--algorithm", "maml", "--task", "synthetic-images", "--image", "3,12,10", "--ways", "3", "--shots", "1",
                    "--queries", "2", "--meta-batch", "2", "--backbone", "resnet12", "--widths", "3,4", "--threads", "2",
                    "--checkpoint", "resnet.safetensors"]
        let trained = try runMetactl(base + ["--iterations", "2"], in: directory)
        #expect(trained.status == 0, "\(trained.err)")
        let resumed = try runMetactl(base + ["--iterations", "3", "--resume"], in: directory)
        #expect(resumed.status == 0, "\(resumed.err)")
        let evaluated = try runMetactl(["eval", "--checkpoint", "resnet.safetensors", "--tasks", "4"], in: directory)
        #expect(evaluated.status == 0 && evaluated.out.contains("evaluated"), "\(evaluated.err)")
        let configuration = try TrainingCheckpoint.configuration(of: SafeTensors.read(from: file("resnet.safetensors")))
        #expect(configuration.iterations == 3 && configuration.backbone == "resnet12")
    }

    @Test func resumeCannotEndARunBeforeWhereItIs() throws {
        let base = ["train", "--meta-batch", "2", "--threads", "1", "--checkpoint", "early.safetensors"]
        #expect(try runMetactl(base + ["--iterations", "4"], in: directory).status == 0)
        let result = try runMetactl(base + ["--iterations", "2", "--resume"], in: directory)
        #expect(result.status != 0 && result.err.contains("at iteration 4 already"), "\(result.err)")
        #expect(try TrainingCheckpoint.configuration(of: SafeTensors.read(from: file("early.safetensors"))).iterations == 4)
    }

    @Test func aContinualSeedAtTheTopOfItsRangeRuns() throws {
        let result = try runMetactl(["continual", "--checkpoint", fixtures[3].url.path, "--seed", "18446744073709551615", "--runs", "2",
                                     "--test-points", "5"], in: directory)
        #expect(result.status == 0, "\(result.err)")
    }

    @Test func plotRefusesValuesBeyondItsRange() throws {
        let report = #"{"label":"x","checkpoint":"c","algorithm":"oml","task":"incremental-sine","iteration":1,"learner":"l","metric":"mse","runs":1,"points":[{"seen":1,"mean":1e308,"sd":0},{"seen":2,"mean":-1e308,"sd":0}],"forgetting":null,"backwardTransfer":null,"matrices":[],"seconds":1}"#
        try report.write(to: file("report.json"), atomically: true, encoding: .utf8)
        let result = try runMetactl(["plot", "report.json", "--output", "plot.svg"], in: directory)
        #expect(result.status == 1 && result.err.contains("1e300"), "\(result.err)")
    }

    /// A full disk for the log is an error; for stderr it is ignored (progress is not worth a failed run).
    @Test func failedWritesAreErrorsNotCrashes() throws {
        let logged = try runMetactl(["train", "--iterations", "200", "--meta-batch", "2", "--threads", "1", "--log", "/dev/full",
                                     "--log-every", "1", "--checkpoint", "full.safetensors"], in: directory)
        #expect(logged.status == 1 && logged.err.contains("cannot write the log /dev/full"), "\(logged.err)")
        let process = Process()
        process.executableURL = metactl
        process.arguments = ["train", "--iterations", "50", "--meta-batch", "2", "--threads", "1", "--checkpoint", file("quiet.safetensors").path]
        process.standardError = FileHandle(forWritingAtPath: "/dev/full")
        process.standardOutput = FileHandle(forWritingAtPath: "/dev/full")
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0 && process.terminationReason == .exit)
    }

    /// kill -9 at random points of a run (many inside a checkpoint write: one is written every iteration), resumed
    /// each time from what it left: the final checkpoint is the uninterrupted run's, byte for byte but for the
    /// recorded training time, and no temporary file is left behind.
    @Test func aRunKilledAtRandomPointsResumesToTheSameCheckpoint() throws {
        let flags = ["train", "--iterations", "300", "--meta-batch", "4", "--threads", "1", "--checkpoint-every", "1", "--log-every", "10"]
        #expect(try runMetactl(flags + ["--checkpoint", "whole.safetensors", "--log", "whole.jsonl"], in: directory).status == 0)
        var random = RandomSource(seed: 42)
        var kills = 0, attempts = 0
        while attempts < 40 {
            attempts += 1
            let resume = FileManager.default.fileExists(atPath: file("killed.safetensors").path)
            let process = Process()
            process.executableURL = metactl
            process.arguments = flags + ["--checkpoint", "killed.safetensors", "--log", "killed.jsonl"] + (resume ? ["--resume"] : [])
            process.currentDirectoryURL = directory
            process.standardOutput = FileHandle.nullDevice; process.standardError = FileHandle.nullDevice
            try process.run()
            if kills < 8 {
                usleep(UInt32(20_000 + random.next() % 150_000))
                if process.isRunning { kill(process.processIdentifier, SIGKILL); kills += 1 }
            }
            process.waitUntilExit()
            if process.terminationReason == .exit {
                #expect(process.terminationStatus == 0)
                break
            }
        }
        #expect(kills >= 4, "only \(kills) of the runs were killed before they finished")
        var whole = try SafeTensors.read(from: file("whole.safetensors")), killed = try SafeTensors.read(from: file("killed.safetensors"))
        #expect(try TrainingCheckpoint.restore(killed).0.iteration == 300)
        whole.metadata["training.seconds"] = "0"; killed.metadata["training.seconds"] = "0"
        #expect(try whole.encoded() == killed.encoded())
        let left = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".tmp") }
        #expect(left.isEmpty, "\(left)")
    }

    @Test func helpListsTheRegisteredComponents() throws {
        let help = try runMetactl(["train", "--help"], in: directory).out
        // The built-in ones: this test process may have registered toy components that metactl does not know.
        let components: [any Component] = Registry.builtInAlgorithms + Registry.builtInTaskFamilies + Registry.builtInBackbones
        for entry in components {
            #expect(help.contains("  \(entry.name): "), "\(entry.name)")
            for option in entry.options { #expect(help.contains("--\(option.name) "), "\(option.name)") }
        }
    }

    /// `metactl episodes` writes a run's initial parameters and the very tasks its first iterations train on.
    @Test func episodesAreTheRunsOwn() throws {
        let flags = ["--algorithm", "fomaml", "--meta-batch", "3", "--shots", "4", "--queries", "5", "--seed", "7"]
        let result = try runMetactl(["episodes"] + flags + ["--first", "2", "--output", "e.safetensors"], in: directory)
        #expect(result.status == 0, "\(result.err)")
        let file = try SafeTensors.read(from: file("e.safetensors"))
        var config = TrainingConfiguration()
        config = try config.applying(flags, source: "test")
        let trainer = try config.resolved().makeTrainer()
        for entry in trainer.model.layout.entries {
            #expect(file.tensor(named: entry.name)?.scalars == Array(trainer.metaParameters[entry.range]), "\(entry.name)")
        }
        let support = try #require(file.tensor(named: "support.inputs")), targets = try #require(file.tensor(named: "query.targets"))
        #expect(support.shape == [6, 4, 1] && targets.shape == [6, 5, 1])
        // Task 1 of iteration 1 is the fifth.
        var random = MetaTrainer.taskRandom(seed: 7, iteration: 1, index: 1)
        let task = try trainer.tasks.sample(&random)
        #expect(Array(support.scalars[16 ..< 20]) == task.support.inputs.scalars)
        guard case .values(let values) = task.query.targets else { Issue.record("sine tasks are regression"); return }
        #expect(Array(targets.scalars[20 ..< 25]) == values.scalars)
        #expect(try runMetactl(["episodes", "--first", "0", "--output", "f.safetensors"], in: directory).err.contains("--first must be at least 1"))
    }

    /// `metactl export` writes the model's parameters alone, and `train --init-from` of it starts from them.
    @Test func exportedWeightsStartANewRun() throws {
        let flags = ["--algorithm", "metasgd", "--meta-batch", "2", "--shots", "3", "--queries", "3", "--hidden", "8", "--seed", "5", "--threads", "1"]
        #expect(try runMetactl(["train"] + flags + ["--iterations", "4", "--checkpoint", "a.safetensors"], in: directory).status == 0)
        let exported = try runMetactl(["export", "--checkpoint", "a.safetensors", "--output", "w.safetensors"], in: directory)
        #expect(exported.status == 0, "\(exported.err)")
        let a = try SafeTensors.read(from: file("a.safetensors")), w = try SafeTensors.read(from: file("w.safetensors"))
        #expect(w.tensors.map(\.name) == ["0.weight", "0.bias", "2.weight", "2.bias"], "the model's parameters alone: \(w.tensors.map(\.name))")
        for (name, tensor) in w.tensors { #expect(a.tensor(named: name) == tensor) }
        #expect(w.metadata["format"] == "pt" && w.metadata["metacore.architecture"]?.contains("Linear") == true)
        let started = try runMetactl(["train"] + flags + ["--iterations", "1", "--init-from", "w.safetensors", "--checkpoint", "b.safetensors"], in: directory)
        #expect(started.status == 0 && started.err.contains("started from 4 tensors of w.safetensors"), "\(started.err)")
        // A trainer started from the exported file has the checkpoint's model parameters (Meta-SGD's rates, not
        // exported, start afresh).
        var config = try TrainingCheckpoint.configuration(of: a)
        config.iterations = 1
        var fresh = try config.makeTrainer()
        _ = try fresh.initialize(from: w, source: "w")
        let restored = try TrainingCheckpoint.restore(a).0
        #expect(Array(fresh.metaParameters[..<fresh.model.parameterCount]) == Array(restored.metaParameters[..<restored.model.parameterCount]))
        let refused = try runMetactl(["train", "--resume", "--init-from", "w.safetensors", "--checkpoint", "a.safetensors"], in: directory)
        #expect(refused.status != 0 && refused.err.contains("--init-from starts a new run"))
    }

    /// `metactl export --format metacore` drops the optimiser state and nothing else: eval reads the smaller file
    /// to the same figures, `--init-from` starts from it, and `train --resume` refuses it.
    @Test func exportForEvaluationDropsOnlyTheOptimizerState() throws {
        let flags = ["--algorithm", "metasgd", "--meta-batch", "2", "--shots", "3", "--queries", "3", "--hidden", "8", "--seed", "5", "--threads", "1"]
        #expect(try runMetactl(["train"] + flags + ["--iterations", "4", "--checkpoint", "a.safetensors"], in: directory).status == 0)
        let exported = try runMetactl(["export", "--format", "metacore", "--checkpoint", "a.safetensors", "--output", "e.safetensors"], in: directory)
        #expect(exported.status == 0 && exported.out.contains("without its optimiser state"), "\(exported.err)")
        let a = try SafeTensors.read(from: file("a.safetensors")), e = try SafeTensors.read(from: file("e.safetensors"))
        #expect(a.tensors.contains { $0.name == "optimizer.m" })
        #expect(e.tensors.map(\.name) == a.tensors.map(\.name).filter { !$0.hasPrefix("optimizer.") })
        for (name, tensor) in e.tensors { #expect(a.tensor(named: name) == tensor) }
        #expect(e.metadata.filter { $0.key != "optimizer.state" } == a.metadata && !TrainingCheckpoint.holdsOptimizerState(e))

        let evalArguments = ["eval", "--tasks", "20", "--steps", "2", "--threads", "1", "--checkpoint"]
        let full = try runMetactl(evalArguments + ["a.safetensors"], in: directory), small = try runMetactl(evalArguments + ["e.safetensors"], in: directory)
        #expect(full.status == 0 && small.status == 0, "\(full.err) \(small.err)")
        let figures = { (out: String) in out.split(separator: "\n").filter { !$0.hasPrefix("evaluated in") } }
        #expect(figures(small.out) == figures(full.out) && full.out.contains("4 iterations"), "\(small.out) against \(full.out)")
        let started = try runMetactl(["train"] + flags + ["--iterations", "1", "--init-from", "e.safetensors", "--checkpoint", "b.safetensors"], in: directory)
        #expect(started.status == 0 && started.err.contains("started from \(e.tensors.count) tensors of e.safetensors"), "\(started.err)")

        let resumed = try runMetactl(["train", "--resume", "--iterations", "6", "--checkpoint", "e.safetensors"], in: directory)
        #expect(resumed.status != 0 && resumed.err.contains("holds no optimiser state"), "\(resumed.err)")
        let overwrite = try runMetactl(["export", "--format", "metacore", "--checkpoint", "a.safetensors", "--output", "./a.safetensors"], in: directory)
        #expect(overwrite.status != 0 && overwrite.err.contains("names the checkpoint itself"), "\(overwrite.err)")
        #expect(try SafeTensors.read(from: file("a.safetensors")).tensors.count == a.tensors.count)
    }

    /// A batch-norm that learns no scale (`--no-batch-norm-scale`) exports γ = 1 as its weight, so that
    /// nn.BatchNorm2d loads the file strictly; its shift is the checkpoint's.
    @Test func exportGivesABatchNormWithoutAScaleItsUnitWeight() throws {
        let flags = ["--algorithm", "maml", "--task", "synthetic-images", "--image", "1,8,8", "--ways", "2", "--shots", "1", "--queries", "1",
                     "--meta-batch", "1", "--channels", "3", "--blocks", "2", "--no-batch-norm-scale", "--threads", "1"]
        #expect(try runMetactl(["train"] + flags + ["--iterations", "2", "--checkpoint", "c.safetensors"], in: directory).status == 0)
        let exported = try runMetactl(["export", "--checkpoint", "c.safetensors", "--output", "w.safetensors"], in: directory)
        #expect(exported.status == 0, "\(exported.err)")
        let c = try SafeTensors.read(from: file("c.safetensors")), w = try SafeTensors.read(from: file("w.safetensors"))
        #expect(Set(w.tensors.map(\.name)) == ["0.weight", "0.bias", "1.weight", "1.bias", "4.weight", "4.bias", "5.weight", "5.bias", "9.weight", "9.bias"])
        #expect(c.tensor(named: "1.weight") == nil && w.tensor(named: "1.weight")?.scalars == [1, 1, 1] && w.tensor(named: "5.weight")?.shape == [3])
        for name in ["0.weight", "1.bias", "5.bias", "9.weight"] { #expect(w.tensor(named: name) == c.tensor(named: name)) }
    }

    /// `metactl plot` draws training logs and learning curves, and names the line of a log it cannot read.
    @Test func plotDrawsTrainingLogsAndCurves() throws {
        let trained = try runMetactl(["train", "--meta-batch", "2", "--iterations", "60", "--log-every", "20", "--threads", "1",
                                      "--checkpoint", "s.safetensors", "--log", "sine.jsonl"], in: directory)
        #expect(trained.status == 0, "\(trained.err)")
        let loss = try runMetactl(["plot", "sine.jsonl", "--output", "loss.svg", "--x", "minutes"], in: directory)
        #expect(loss.status == 0, "\(loss.err)")
        let svg = try String(contentsOf: file("loss.svg"), encoding: .utf8)
        #expect(svg.contains("loss during training") && svg.contains("minutes of training") && svg.contains(">sine<"))
        #expect(svg.components(separatedBy: "<circle").count - 1 == 3, "one point per log line")
        #expect(try runMetactl(["plot", "sine.jsonl", "--output", "x.svg", "--y", "accuracy"], in: directory).err.contains("has no accuracy"))
        // A classification log beside a learning curve, labelled.
        try #"{"accuracy":0.5,"iteration":100,"loss":1.2,"seconds":30}\#n{"accuracy":0.75,"iteration":200,"loss":0.7,"seconds":61}\#n"#
            .write(to: file("run.jsonl"), atomically: true, encoding: .utf8)
        try "iteration,minutes,accuracy,ci95\n100,0.5,60.0,1.0\n200,1.0,80.5,0.9\n".write(to: file("curve.csv"), atomically: true, encoding: .utf8)
        let both = try runMetactl(["plot", "run.jsonl", "curve.csv", "--labels", "training,test episodes", "--output", "both.svg"], in: directory)
        #expect(both.status == 0, "\(both.err)")
        let chart = try String(contentsOf: file("both.svg"), encoding: .utf8)
        #expect(chart.contains(">training<") && chart.contains(">test episodes<") && chart.contains("accuracy (%)"))
        try "{\"iteration\":1,\"loss\":1,\"seconds\":1}\n{\"iteration\":2,\"loss\":\"x\",\"seconds\":2}\n".write(to: file("bad.jsonl"), atomically: true, encoding: .utf8)
        #expect(try runMetactl(["plot", "bad.jsonl", "--output", "b.svg"], in: directory).err.contains("line 2: 'loss' is not a finite number"))
    }

    /// OpenBLAS 0.3.21 takes CPUs newer than it knows for a Prescott and runs SSE3 kernels on them: metactl
    /// starts again with the kernels of the CPU's AVX2 or AVX-512, and leaves a core the user chose alone.
    @Test func runsTheBLASKernelsOfItsCPU() throws {
        #expect(BLAS.suggestedCore(chosen: "Prescott", vectorLevel: 2) == "SkylakeX")
        #expect(BLAS.suggestedCore(chosen: "Prescott", vectorLevel: 1) == "Haswell")
        #expect(BLAS.suggestedCore(chosen: "Prescott", vectorLevel: 0) == nil)
        #expect(BLAS.suggestedCore(chosen: "Zen", vectorLevel: 2) == nil)
        #expect(BLAS.suggestedCore(chosen: "Haswell", vectorLevel: 2) == nil)

        func core(_ choice: String?) throws -> String? {
            var environment = ProcessInfo.processInfo.environment
            environment["OPENBLAS_CORETYPE"] = choice
            let run = try runMetactl(["bench", "--workload", "sine", "--repetitions", "1", "--threads", "1", "--json"],
                                     in: directory, environment: environment)
            #expect(run.status == 0, "\(run.err)")
            let report = try JSONSerialization.jsonObject(with: Data(run.out.utf8)) as? [String: Any]
            return report?["blasCore"] as? String
        }
        let chosen = try #require(try core(nil))
        if mc_cpu_vector_level() > 0 { #expect(chosen != "Prescott") }
        #expect(try core("Prescott") == "Prescott")
    }
}
