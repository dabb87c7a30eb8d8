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
    @Option(help: "Print the names of the classes episodes of this split draw from (train or test), one a line, instead of the summary.")
    var listClasses: String?
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
        if let split = listClasses {
            guard split == "train" || split == "test" else { throw ValidationError("--list-classes takes train or test, not '\(split)'") }
            // The smallest episodes: only the classes are listed, and no class is too small for them.
            for (name, value) in [("ways", "2"), ("shots", "1"), ("queries", "1")] where !settings.given(name) { arguments += ["--\(name)", value] }
            let config = try TrainingConfiguration().applying(arguments, source: "command line")
            guard let tasks = try config.makeTasks(split == "train" ? .train : .test, data: location.source()) as? any ImageTaskDistribution else {
                throw ValidationError("the \(config.task) task family does not name its classes")
            }
            print(tasks.classNames.joined(separator: "\n"))
            return
        }
        let options = try TrainingConfiguration().applying(arguments, source: "command line").resolvedOptions()
        print("\(path): \(try load(type, options: options, from: location.source()).summary)")
    }

    private func load<D: Dataset>(_ type: D.Type, options: ResolvedOptions, from source: DataSource) throws -> D {
        try source.load(type, settings: D.settings(options))
    }
}
