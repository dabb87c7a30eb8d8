import ArgumentParser
import Foundation
import MetaCore

/// Throughput figures for this machine: kernels against the BLAS ceiling, and end-to-end meta-training workloads.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure kernel rates (GFLOP/s against OpenBLAS's SGEMM) and meta-training throughput (meta-steps/s).")

    @OptionGroup var threadOptions: ThreadOptions
    @Option(help: "What to run: kernels, \(Workload.names.joined(separator: ", ")), or all.") var workload = "all"
    @Option(parsing: .unconditional, help: "Timed repetitions per figure (median reported, after a warm-up).") var repetitions = 5
    @Option(help: "Run batch-norm, ReLU and max-pooling fused (on, the default) or each on its own (off), to measure fusion.")
    var fusion: Toggle = .on
    @Option(help: "Run the tasks a thread takes of a meta-batch of small tasks as one task of the model stacked across them (on, the default) or one by one (off), to measure stacking.")
    var stacking: Toggle = .on

    enum Toggle: String, ExpressibleByArgument, CaseIterable { case on, off }
    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard (1 ... 1000).contains(repetitions) else { throw ValidationError("--repetitions must be between 1 and 1000, got \(repetitions)") }
        guard ["all", "kernels"].contains(workload) || Workload.names.contains(workload) else {
            throw ValidationError("unknown --workload '\(workload)'; choose kernels, \(Workload.names.joined(separator: ", ")) or all")
        }
    }

    struct Report: Encodable {
        let threads: Int
        /// OpenBLAS's CPU kernels (``BLAS/core``).
        var blasCore = BLAS.core
        /// The best square-SGEMM rate of the run (GFLOP/s): the machine's practical ceiling.
        var ceiling: Double?
        var kernels: [Timing] = []
        var workloads: [WorkloadResult] = []
    }

    func run() throws {
        let threads = threadOptions.count, json = output.json, group = Cluster.group
        if group.size > 1 && ["all", "kernels"].contains(workload) {
            throw ValidationError("under MPI, bench one workload at a time (--workload \(Workload.names.joined(separator: "|"))); kernel rates are a single process's figures")
        }
        var report = Report(threads: threads)
        if workload == "all" || workload == "kernels" {
            // The ceiling: OpenBLAS's best square SGEMM, on its own threads or one single-threaded call per thread.
            BLAS.threads = threads
            report.kernels = [256, 512, 1024].map { KernelBenchmarks.gemm(m: $0, n: $0, k: $0, repetitions: repetitions) }
            if threads > 1 {
                report.kernels += [512, 1024].map {
                    KernelBenchmarks.gemm(m: $0, n: $0, k: $0, label: "sgemm one per thread", threads: threads, repetitions: repetitions)
                }
            }
            report.ceiling = report.kernels.compactMap(\.gflops).max()
            // The rest as MetaCore runs it: one call per thread, BLAS single-threaded.
            report.kernels += KernelBenchmarks.conv4Gemms(batch: 80, threads: threads, repetitions: repetitions)
            report.kernels += KernelBenchmarks.mlpGemms(threads: threads, repetitions: repetitions)
            for (channels, side) in [(1, 28), (64, 14), (64, 7), (64, 3)] {
                report.kernels += KernelBenchmarks.convolution(channels: channels, side: side, batch: 80, threads: threads, repetitions: repetitions)
            }
            report.kernels.append(try KernelBenchmarks.conv4ForwardBackward(batch: 80, threads: threads, repetitions: repetitions))
            report.kernels += try KernelBenchmarks.lstmComposition(repetitions: repetitions)
            if !json { printKernels(report.kernels, ceiling: report.ceiling, threads: threads) }
        }
        let workloads = workload == "all" ? Workload.all : workload == "kernels" ? [] : try Workload.named(workload)
        if !workloads.isEmpty && report.ceiling == nil && group.isPrimary {
            // A workload alone still gets the ceiling its GFLOP/s are compared with (under MPI, rank 0's alone).
            BLAS.threads = threads
            var ceiling = [KernelBenchmarks.gemm(m: 1024, n: 1024, k: 1024, repetitions: repetitions)]
            if threads > 1 { ceiling.append(KernelBenchmarks.gemm(m: 1024, n: 1024, k: 1024, label: "sgemm one per thread", threads: threads, repetitions: repetitions)) }
            report.ceiling = ceiling.compactMap(\.gflops).max()
            BLAS.threads = 1
        }
        try group.barrier()
        if !json && !workloads.isEmpty {
            let ranks: String = group.size > 1 ? "ranks: \(group.size) of " : ""
            let ceiling: String = report.ceiling.map { String(format: "; SGEMM ceiling %.1f GFLOP/s", $0) + (group.size > 1 ? " per rank" : "") } ?? ""
            let header: String = "workload".padding(toLength: 20, withPad: " ", startingAt: 0) + "meta-steps/s      tasks/s   peak memory      GFLOP/s  of ceiling   "
            print("\n" + header + "(\(ranks)threads: \(threads)\(ceiling))")
        }
        for w in workloads {
            let result = try WorkloadBenchmarks.run(w, threads: threads, repetitions: repetitions, fusesLayers: fusion == .on,
                                                    stacksTasks: stacking == .on, group: Cluster.group)
            report.workloads.append(result)
            if !json {
                let memory = result.peakMemoryBytes.map { String(format: "%8.0f MB", Double($0) / 1e6) } ?? "         ?"
                // Under MPI the ceiling is one rank's (rank 0's, measured alone); the job's is that times the ranks.
                let share = report.ceiling.map { String(format: "%10.2f", result.gflops / ($0 * Double(result.ranks))) } ?? "         ?"
                print(w.label.padding(toLength: 20, withPad: " ", startingAt: 0)
                      + String(format: "%12.3f %12.1f   ", result.stepsPerSecond, result.tasksPerSecond) + memory
                      + String(format: "  %10.1f", result.gflops) + "  " + share + "   " + w.summary)
                if result.ranks > 1 {
                    let step = 1 / result.stepsPerSecond
                    print(String(format: "%20@%d ranks: exchange %.0f µs per meta-step (%.2f%% of it), waiting for the slowest rank included; the allgather alone %.0f µs",
                                 "", result.ranks, result.exchangeSeconds * 1e6, 100 * result.exchangeSeconds / step, result.gatherSeconds * 1e6))
                }
            }
        }
        try output.report(report) {}
    }

    private func printKernels(_ timings: [Timing], ceiling: Double?, threads: Int) {
        print("sgemm (OpenBLAS's \(BLAS.core) kernels): on \(threads) BLAS threads; the rest: one call per thread on \(threads) threads, BLAS single-threaded; ratio = rate / best square SGEMM rate of this run" + (ceiling.map { String(format: " (%.1f GFLOP/s)", $0) } ?? ""))
        for t in timings {
            var rate = t.gflops.map { String(format: "%8.1f GFLOP/s", $0) } ?? ""
            if let gflops = t.gflops, let ceiling { rate += String(format: "   %4.2f", gflops / ceiling) }
            // Products of a few hundred nanoseconds (the MLP's) in µs, where milliseconds would show 0.000.
            let time = t.seconds < 1e-5 ? String(format: "%10.3f µs  ", t.seconds * 1e6) : String(format: "%10.3f ms  ", t.seconds * 1e3)
            print(t.name.padding(toLength: 52, withPad: " ", startingAt: 0) + time + rate)
        }
    }
}
