import Foundation
import Testing
@testable import MetaCore

/// Open MPI's launcher, where it is installed (`make deps` installs it; the library builds without it).
let mpirun: URL? = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":")
    .map { URL(fileURLWithPath: String($0)).appendingPathComponent("mpirun") }
    .first { FileManager.default.isExecutableFile(atPath: $0.path) }

/// `mpirun -n ranks metactl arguments` in `directory`, ended (and reported as status -1) if it runs longer than
/// `timeout` seconds. Returns its status, stdout, stderr and how long it ran.
func runMPI(_ ranks: Int, _ arguments: [String], in directory: URL, timeout: Double = 300, launcher: [String] = [],
            whileRunning: ((Process) throws -> Void)? = nil) throws -> (status: Int32, out: String, err: String, seconds: Double) {
    let process = Process()
    process.executableURL = mpirun!
    // As root in CI; more ranks than cores in the 3- and 4-rank runs; Open MPI's own messages kept short.
    process.arguments = ["--allow-run-as-root", "--oversubscribe", "--mca", "orte_base_help_aggregate", "1", "-n", "\(ranks)"]
        + launcher + [metactl.path] + arguments
    process.currentDirectoryURL = directory
    let out = Pipe(), err = Pipe()
    process.standardOutput = out; process.standardError = err
    let clock = ContinuousClock(), start = clock.now
    try process.run()
    let timer = DispatchWorkItem { if process.isRunning { kill(-process.processIdentifier, SIGKILL); process.terminate() } }
    DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: timer)
    nonisolated(unsafe) var errData = Data()
    let drained = DispatchSemaphore(value: 0)
    DispatchQueue.global().async { errData = err.fileHandleForReading.readDataToEndOfFile(); drained.signal() }
    try whileRunning?(process)
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    drained.wait()
    process.waitUntilExit()
    timer.cancel()
    let seconds = (clock.now - start).seconds
    let timedOut = seconds >= timeout
    return (timedOut ? -1 : process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self), seconds)
}

/// The same training run, as checkpoints compare: every tensor bit for bit, and the configuration (the
/// training time, a measurement, aside).
func sameRun(_ a: URL, _ b: URL) throws -> Bool {
    var x = try SafeTensors.read(from: a), y = try SafeTensors.read(from: b)
    x.metadata["training.seconds"] = nil; y.metadata["training.seconds"] = nil
    return x.tensors.count > 0 && x.tensors.map(\.name) == y.tensors.map(\.name)
        && zip(x.tensors, y.tensors).allSatisfy { $0.tensor.shape == $1.tensor.shape && $0.tensor.scalars.elementsEqual($1.tensor.scalars) { $0.bitPattern == $1.bitPattern } }
        && x.metadata == y.metadata
}

/// Whether metactl was built with Open MPI (where its header was found) and mpirun is there to start it.
#if METACORE_MPI
let mpiReady = mpirun != nil
#else
let mpiReady = false
#endif

/// Built without Open MPI, metactl started by `mpirun -n 2` refuses to run the job twice over.
@Test(.enabled(if: !mpiReady && mpirun != nil, "metactl was built with Open MPI, or mpirun is missing"))
func metactlWithoutMPIRefusesToRunUnderMPIRun() throws {
    let directory = try temporaryDirectory()
    let run = try runMPI(2, ["train", "--iterations", "2", "--threads", "1"], in: directory, timeout: 60)
    #expect(run.status != 0 && run.err.contains("built without Open MPI"), "\(run.err)")
    #expect(!FileManager.default.fileExists(atPath: directory.appendingPathComponent("checkpoint.safetensors").path))
}

@Suite("MPI: the same run on any number of ranks", .enabled(if: mpiReady, "metactl built without Open MPI or mpirun not found (make deps installs it)"),
       .serialized)
struct DistributedTests {
    let directory: URL

    init() throws { directory = try temporaryDirectory() }

    func file(_ name: String) -> URL { directory.appendingPathComponent(name) }

    /// `flags` trained by one process (threads 1), and by 2 and 3 ranks and by 2 ranks of 2 threads: the same
    /// meta-parameters, optimiser state and configuration, bit for bit.
    func expectSameOnAnyRanks(_ name: String, _ flags: [String]) throws {
        let single = try runMetactl(["train"] + flags + ["--threads", "1", "--checkpoint", "\(name)-1.safetensors"], in: directory)
        try #require(single.status == 0, "\(single.err)")
        for (ranks, threads) in [(2, 1), (3, 1), (2, 2)] {
            let checkpoint = "\(name)-\(ranks)x\(threads).safetensors"
            let run = try runMPI(ranks, ["train"] + flags + ["--threads", "\(threads)", "--checkpoint", checkpoint], in: directory)
            #expect(run.status == 0 && run.out.contains("on \(ranks) ranks"), "\(name), \(ranks) ranks: \(run.err)")
            #expect(try sameRun(file("\(name)-1.safetensors"), file(checkpoint)), "\(name): \(ranks) ranks of \(threads) threads differ from one process")
        }
    }

    @Test func mamlOnSinesIsTheSameOnAnyRanks() throws {
        try expectSameOnAnyRanks("sine", ["--algorithm", "maml", "--iterations", "6", "--meta-batch", "5", "--inner-steps", "2"])
    }

    /// Conv-4 with batch-norm, second order, on 1x16x16 images; ProtoNets on the same images; OML on
    /// incremental sines.
    @Test func conv4ProtoNetsAndOMLAreTheSameOnAnyRanks() throws {
        let images = ["--task", "synthetic-images", "--image", "1,16,16", "--ways", "3", "--shots", "1", "--queries", "2",
                      "--backbone", "conv4", "--channels", "4", "--iterations", "4", "--meta-batch", "5"]
        try expectSameOnAnyRanks("conv4", ["--algorithm", "maml"] + images)
        try expectSameOnAnyRanks("proto", ["--algorithm", "protonet"] + images)
        try expectSameOnAnyRanks("oml", ["--algorithm", "oml", "--task", "incremental-sine", "--iterations", "4", "--meta-batch", "3"])
    }

    /// A run checkpointed on 2 ranks and resumed on 3, then on 1: the uninterrupted single-process run's
    /// checkpoint.
    @Test func resumingOnAnotherRankCountContinuesBitForBit() throws {
        let flags = ["train", "--algorithm", "maml", "--meta-batch", "4", "--threads", "1", "--checkpoint-every", "1"]
        #expect(try runMetactl(flags + ["--iterations", "9", "--checkpoint", "whole.safetensors"], in: directory).status == 0)
        let first = try runMPI(2, flags + ["--iterations", "3", "--checkpoint", "split.safetensors"], in: directory)
        #expect(first.status == 0, "\(first.err)")
        let second = try runMPI(3, flags + ["--iterations", "6", "--checkpoint", "split.safetensors", "--resume"], in: directory)
        #expect(second.status == 0 && second.out.contains("resuming maml on sine at iteration 3"), "\(second.err)")
        let third = try runMetactl(flags + ["--iterations", "9", "--checkpoint", "split.safetensors", "--resume"], in: directory)
        #expect(third.status == 0, "\(third.err)")
        #expect(try sameRun(file("whole.safetensors"), file("split.safetensors")))
    }

    /// The allreduce of the ranks' sums: not bit-identical across rank counts, but equal to a few units in the
    /// last place after a few steps.
    @Test func summedReductionAgreesUpToRounding() throws {
        let flags = ["train", "--algorithm", "maml", "--meta-batch", "6", "--iterations", "5", "--threads", "1"]
        #expect(try runMetactl(flags + ["--checkpoint", "one.safetensors"], in: directory).status == 0)
        let run = try runMPI(3, flags + ["--reduction", "sum", "--checkpoint", "sum.safetensors"], in: directory)
        #expect(run.status == 0, "\(run.err)")
        let a = try TrainingCheckpoint.restore(SafeTensors.read(from: file("one.safetensors"))).0.metaParameters
        let b = try TrainingCheckpoint.restore(SafeTensors.read(from: file("sum.safetensors"))).0.metaParameters
        let difference = zip(a, b).map { abs($0 - $1) }.max()!, scale = a.map(abs).max()!
        #expect(difference <= 1e-4 * scale, "largest difference \(difference) of parameters up to \(scale)")
    }

    /// Evaluation's episodes and the continual runs split across ranks: the same report.
    @Test func evaluationAndContinualRunsAreTheSameOnAnyRanks() throws {
        for (command, arguments) in [("eval", ["--checkpoint", fixtures[0].url.path, "--tasks", "7", "--steps", "3", "--threads", "1"]),
                                     ("continual", ["--checkpoint", fixtures[3].url.path, "--runs", "3", "--test-points", "5"])] {
            let single = try runMetactl([command] + arguments + ["--json"], in: directory)
            try #require(single.status == 0, "\(single.err)")
            for ranks in [2, 4] {
                let run = try runMPI(ranks, [command] + arguments + ["--json"], in: directory)
                #expect(run.status == 0, "\(command), \(ranks) ranks: \(run.err)")
                let strip = { (text: String) throws -> NSDictionary in
                    let object = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
                    return NSDictionary(dictionary: object.filter { $0.key != "seconds" })
                }
                #expect(try strip(single.out) == strip(run.out), "\(command) on \(ranks) ranks: \(run.out)")
            }
        }
    }

    /// A rank killed mid-run ends the job, naming the rank, within seconds; one that fails (rank 0 cannot write
    /// its checkpoint, while rank 1 waits in the first exchange) ends it with its error.
    @Test func aKilledOrFailingRankEndsTheJob() throws {
        let marker = UUID().uuidString
        let flags = ["train", "--iterations", "1000000", "--meta-batch", "4", "--threads", "1", "--checkpoint", "killed.safetensors",
                     "--checkpoint-every", "1"]
        setenv("METACORE_TEST_MARKER", marker, 1)
        defer { unsetenv("METACORE_TEST_MARKER") }
        var killedAt: ContinuousClock.Instant?
        let clock = ContinuousClock()
        let killed = try runMPI(2, flags, in: directory, timeout: 120, launcher: ["-x", "METACORE_TEST_MARKER"]) { _ in
            // Rank 1 is the process whose environment carries this test's marker and rank 1.
            for _ in 0 ..< 600 where killedAt == nil {
                usleep(100_000)
                guard FileManager.default.fileExists(atPath: file("killed.safetensors").path) else { continue }
                for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
                    guard let pid = Int32(entry), let environment = FileManager.default.contents(atPath: "/proc/\(entry)/environ") else { continue }
                    let variables = Set(environment.split(separator: 0).map { String(decoding: $0, as: UTF8.self) })
                    if variables.contains("METACORE_TEST_MARKER=\(marker)") && variables.contains("OMPI_COMM_WORLD_RANK=1") {
                        kill(pid, SIGKILL); killedAt = clock.now
                    }
                }
            }
        }
        let after = try #require(killedAt.map { (clock.now - $0).seconds }, "rank 1 was never found: \(killed.err)")
        #expect(killed.status != 0 && killed.status != -1, "\(killed.err)")
        #expect(killed.err.contains("rank 1") && killed.err.contains("signal 9"), "\(killed.err)")
        #expect(after < 30, "the job ran on for \(after) s after rank 1 was killed")

        let failed = try runMPI(2, ["train", "--iterations", "100", "--threads", "1", "--checkpoint", "missing/run.safetensors"],
                                in: directory, timeout: 120)
        #expect(failed.status == 1, "\(failed.status): \(failed.err)")
        #expect(failed.err.contains("Error on rank 0 of 2: cannot write the checkpoint") && failed.err.contains("does not exist"), "\(failed.err)")
    }

    /// One rank on each of two network-namespace "hosts" (benchmarks/netns-hosts.sh), talking over TCP only:
    /// the single process's run, bit for bit.
    @Test(.enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip"), "needs root and ip(8) for network namespaces"))
    func twoHostsOverTCPGiveTheSameRun() throws {
        let flags = ["train", "--algorithm", "maml", "--iterations", "5", "--meta-batch", "5", "--threads", "1"]
        #expect(try runMetactl(flags + ["--checkpoint", "local.safetensors"], in: directory).status == 0)
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../benchmarks/netns-hosts.sh").standardizedFileURL
        let process = Process()
        process.executableURL = script
        process.arguments = ["/bin/sh", "-c", "mpirun --allow-run-as-root $MPIRUN_TCP -n 2 \"$0\" \"$@\"", metactl.path]
            + flags + ["--checkpoint", file("tcp.safetensors").path]
        process.currentDirectoryURL = directory
        let err = Pipe()
        process.standardError = err; process.standardOutput = FileHandle.nullDevice
        try process.run()
        let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "\(message)")
        #expect(try sameRun(file("local.safetensors"), file("tcp.safetensors")))
    }

    /// Two ranks building one Omniglot cache at once (each writes its own temporary file and renames it into
    /// place): the cache is whole and serves the same pixels.
    @Test(.enabled(if: omniglotPresent, skipMessage)) func twoRanksBuildingOneCacheLeaveAWholeOne() throws {
        let (root, _) = try OmniglotTests().smallFolderDataset()
        defer { try? FileManager.default.removeItem(at: root) }
        for attempt in 0 ..< 2 {
            let cache = file("cache-\(attempt)")
            let run = try runMPI(2, ["data", "--data", root.path, "--cache", cache.path], in: directory)
            #expect(run.status == 0, "\(run.err)")
            let (cached, status) = try Omniglot.load(from: root.path, cacheDirectory: cache)
            guard case .loaded = status else { Issue.record("the cache was not read: \(status)"); continue }
            #expect(cached.pixels == (try Omniglot.load(from: root.path, cacheDirectory: nil)).0.pixels)
            let left = try FileManager.default.contentsOfDirectory(atPath: cache.path).filter { $0.hasSuffix(".tmp") }
            #expect(left.isEmpty, "\(left)")
        }
    }
}
