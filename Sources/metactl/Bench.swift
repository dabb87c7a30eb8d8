import ArgumentParser
import Foundation
import MetaCore

/// Throughput figures for this machine.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure kernel throughput (GEMM, Conv-4 forward+backward) on this machine.")

    @Option(help: "OpenBLAS threads (default: all cores).") var threads: Int?
    @Option(help: "Timed repetitions per figure (median reported, after one warm-up).") var repetitions = 5
    @Option(help: "Batch size for the Conv-4 figure.") var batch = 80
    @Flag(help: "Print JSON instead of a table.") var json = false

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1, got \(threads)") }
        guard repetitions > 0 else { throw ValidationError("--repetitions must be positive, got \(repetitions)") }
        guard batch > 0 else { throw ValidationError("--batch must be positive, got \(batch)") }
    }

    func run() throws {
        BLAS.threads = threads ?? ProcessInfo.processInfo.activeProcessorCount
        var timings = [256, 512, 1024].map { KernelBenchmarks.gemm(m: $0, n: $0, k: $0, repetitions: repetitions) }
        timings.append(try KernelBenchmarks.conv4ForwardBackward(batch: batch, repetitions: repetitions))
        if json {
            try printJSON(timings)
            return
        }
        print("BLAS threads: \(BLAS.threads)")
        for t in timings {
            let rate = t.gflops.map { String(format: "%8.1f GFLOP/s", $0) } ?? ""
            print(t.name.padding(toLength: 56, withPad: " ", startingAt: 0) + String(format: "%10.3f ms  ", t.seconds * 1e3) + rate)
        }
    }
}
