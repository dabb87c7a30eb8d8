import ArgumentParser
import Foundation
import MetaCore

@main
struct MetaCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metactl",
        abstract: "Meta-learning on CPU servers: train, evaluate and benchmark MetaCore models.",
        subcommands: [Train.self, Eval.self, Predict.self, Continual.self, Plot.self, Prepare.self, Verify.self, Demo.self, Bench.self, Episodes.self, Export.self],
        defaultSubcommand: Demo.self
    )

    static func main() {
        useTheBLASKernelsOfThisCPU()
        signal(SIGPIPE, SIG_IGN)   // a closed pipe is a failed write, not a killed process
        do { Cluster.group = try Cluster.start() } catch { printError("Error: \(MetaCoreError.message(for: error))"); Foundation.exit(1) }
        let group = Cluster.group
        // Every rank runs the command; rank 0 alone prints its results.
        if !group.isPrimary { dup2(open("/dev/null", O_WRONLY), STDOUT_FILENO) }
        do {
            let arguments = try ConfigurationFile.expand(Array(CommandLine.arguments.dropFirst()))
            var command = try parseAsRoot(arguments)
            try command.run()
            try Cluster.finish()
        } catch {
            if group.size > 1 {
                // A failing rank ends the whole job: the others may be waiting for it in a collective.
                let code = exitCode(for: error)
                guard code != .success else {   // --help and the like: every rank gets here
                    print(fullMessage(for: error))
                    try? Cluster.finish()
                    Foundation.exit(0)
                }
                printError("Error on rank \(group.rank) of \(group.size): \(fullMessage(for: error).replacingOccurrences(of: "Error: ", with: ""))")
                Cluster.abort(code.rawValue)
            }
            // An error about an option a configuration file set says which file set it.
            let message = fullMessage(for: error)
            if let (key, file) = ConfigurationFile.origin.first(where: { message.contains("--\($0.key)") }), !message.contains(file) {
                printError("\(message)\n(--\(key) is set in \(file))")
                Foundation.exit(exitCode(for: error).rawValue)
            }
            exit(withError: error)
        }
    }

    /// OpenBLAS picks its kernels as it loads and falls back to SSE3 ones on a CPU newer than it knows: start
    /// again with the kernels this CPU runs (``BLAS/suggestedCore``), unless the user chose some.
    private static func useTheBLASKernelsOfThisCPU() {
        guard getenv("OPENBLAS_CORETYPE") == nil, let core = BLAS.suggestedCore else { return }
        setenv("OPENBLAS_CORETYPE", core, 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)   // returns only if it failed: go on with the slow kernels
    }
}
