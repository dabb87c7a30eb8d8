import ArgumentParser
import Foundation
import MetaCore

/// Loads a dataset once: checks it, builds its cache and prints what it holds.
struct Prepare: ParsableCommand {
    static var configuration: CommandConfiguration {
        CommandConfiguration(commandName: "data",
                             abstract: "Check a dataset download and build its preprocessed cache (\(Registry.datasets.map { $0.name }.joined(separator: ", "))).",
                             discussion: "The options of the task family that reads the dataset shape what is built, as in training: `metactl data --dataset images --data DIR --image-size 84 --color rgb`.")
    }

    @Option(help: "Which dataset.") var dataset = "omniglot"
    @OptionGroup var location: DatasetOptions
    @OptionGroup var settings: ConfigurationOptions

    func run() throws {
        let type = try Registry.dataset(dataset)
        guard let path = location.data else { throw ValidationError("pass --data PATH: \(type.layout)") }
        // The options resolve against the task family that reads this dataset, as a run's would.
        var arguments = settings.arguments
        if !settings.given("task"), let family = Registry.taskFamilies.first(where: { $0.dataset.map(ObjectIdentifier.init) == ObjectIdentifier(type) }) {
            arguments = ["--task", family.name] + arguments
        }
        let options = try TrainingConfiguration().applying(arguments, source: "command line").resolvedOptions()
        print("\(path): \(try load(type, options: options, from: location.source()).summary)")
    }

    private func load<D: Dataset>(_ type: D.Type, options: ResolvedOptions, from source: DataSource) throws -> D {
        try source.load(type, settings: D.settings(options))
    }
}
