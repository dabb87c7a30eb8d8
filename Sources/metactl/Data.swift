import ArgumentParser
import Foundation
import MetaCore

/// Loads a dataset once: checks it, builds its cache and prints what it holds.
struct Prepare: ParsableCommand {
    static var configuration: CommandConfiguration {
        CommandConfiguration(commandName: "data",
                             abstract: "Check a dataset download and build its preprocessed cache (\(Registry.datasets.map { $0.name }.joined(separator: ", "))).")
    }

    @Option(help: "Which dataset.") var dataset = "omniglot"
    @OptionGroup var location: DatasetOptions

    func run() throws {
        let type = try Registry.dataset(dataset)
        guard let path = location.data else { throw ValidationError("pass --data PATH: \(type.layout)") }
        print("\(path): \(try load(type, from: location.source()).summary)")
    }

    private func load<D: Dataset>(_ type: D.Type, from source: DataSource) throws -> D { try source.load(type) }
}
