import ArgumentParser
import Foundation

@main
struct MetaCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metactl",
        abstract: "Meta-learning on CPU servers: train, evaluate and benchmark MetaCore models.",
        subcommands: [Train.self, Eval.self, Continual.self, Plot.self, Prepare.self, Verify.self, Demo.self, Bench.self],
        defaultSubcommand: Demo.self
    )

    static func main() {
        signal(SIGPIPE, SIG_IGN)   // a closed pipe is a failed write, not a killed process
        do {
            let arguments = try ConfigurationFile.expand(Array(CommandLine.arguments.dropFirst()))
            var command = try parseAsRoot(arguments)
            try command.run()
        } catch {
            // An error about an option a configuration file set says which file set it.
            let message = fullMessage(for: error)
            if let (key, file) = ConfigurationFile.origin.first(where: { message.contains("--\($0.key)") }), !message.contains(file) {
                printError("\(message)\n(--\(key) is set in \(file))")
                Foundation.exit(exitCode(for: error).rawValue)
            }
            exit(withError: error)
        }
    }
}
