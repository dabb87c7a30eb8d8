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
        do {
            let arguments = try ConfigurationFile.expand(Array(CommandLine.arguments.dropFirst()))
            var command = try parseAsRoot(arguments)
            try command.run()
        } catch {
            // An error about an option a configuration file set says which file set it.
            let message = fullMessage(for: error)
            if let (key, file) = ConfigurationFile.origin.first(where: { message.contains("--\($0.key)") }), !message.contains(file) {
                FileHandle.standardError.write(Data("\(message)\n(--\(key) is set in \(file))\n".utf8))
                Foundation.exit(exitCode(for: error).rawValue)
            }
            exit(withError: error)
        }
    }
}
