import ArgumentParser

@main
struct MetaCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metactl",
        abstract: "Meta-learning on CPU servers: train, evaluate and benchmark MetaCore models.",
        subcommands: [Train.self, Eval.self, Continual.self, Plot.self, Prepare.self, Verify.self, Demo.self, Bench.self],
        defaultSubcommand: Demo.self
    )
}
