import ArgumentParser
import Foundation
import MetaCore

/// Writes what a run would start from — its initial parameters and the tasks of its first iterations — so that
/// another framework can run the same episodes from the same weights, and the two runs can be compared.
struct Episodes: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a run's initial parameters and the tasks of its first iterations to a safetensors file.",
        discussion: """
            The run is described as for `metactl train`; its tasks are the ones training would sample (the same seeds). \
            The file holds each model parameter under its name ("0.weight", ...), the learner's other meta-parameters, \
            and support.inputs, support.targets, query.inputs, query.targets, each [tasks, samples, ...]: task j of \
            iteration i at index i * meta-batch + j; class labels are stored as floats.
            """)

    @OptionGroup var settings: ConfigurationOptions
    @OptionGroup var dataset: DatasetOptions
    @Option(parsing: .unconditional, help: "Iterations whose tasks to write (--meta-batch tasks each).") var first = 1
    @Option(help: "The safetensors file to write.") var output: String

    /// The largest file written (its tensors are held in memory first).
    static let maximumBytes = 4 << 30

    func validate() throws {
        guard first >= 1 else { throw ValidationError("--first must be at least 1 iteration, got \(first)") }
    }

    func run() throws {
        var config = try settings.apply(to: TrainingConfiguration())
        config.dataPath = dataset.absolutePath
        config = try config.resolved()
        let trainer = try config.makeTrainer(data: dataset.source(for: config), threads: 1)
        let model = trainer.model, meta = trainer.metaParameters
        var tensors: [(name: String, tensor: Tensor)] = try model.layout.entries.map {
            ($0.name, try Tensor(shape: $0.shape, scalars: Array(meta[$0.range])))
        }
        for extra in trainer.learner.extraMetaParameters(for: model) {
            tensors.append((extra.name, try Tensor(shape: [extra.range.count], scalars: Array(meta[extra.range]))))
        }
        let count = first * trainer.metaBatch
        var firstTask: MetaCore.Task?
        var parts: [String: [Float]] = [:]
        for t in 0 ..< count {
            var random = MetaTrainer.taskRandom(seed: config.seed, iteration: t / trainer.metaBatch, index: t % trainer.metaBatch)
            let task = try trainer.tasks.sample(&random)
            if let first = firstTask {
                guard task.support.inputs.shape == first.support.inputs.shape, task.query.inputs.shape == first.query.inputs.shape else {
                    throw ValidationError("the tasks differ in size (task \(t) has \(task.support.count) support and \(task.query.count) query samples, task 0 \(first.support.count) and \(first.query.count)); they cannot be written as one tensor")
                }
            } else {
                firstTask = task
                let bytes = 4 * count * (task.support.inputs.count + task.query.inputs.count) * 2
                guard bytes <= Self.maximumBytes else {
                    throw ValidationError("\(count) tasks would take about \(bytes >> 20) MiB; write fewer iterations (at most \(Self.maximumBytes >> 30) GiB)")
                }
            }
            for (name, batch) in [("support", task.support), ("query", task.query)] {
                parts["\(name).inputs", default: []] += batch.inputs.scalars
                switch batch.targets {
                case .labels(let labels): parts["\(name).targets", default: []] += labels.map(Float.init)
                case .values(let values): parts["\(name).targets", default: []] += values.scalars
                }
            }
        }
        for (name, batch) in [("support", firstTask!.support), ("query", firstTask!.query)] {
            let targets: [Int]
            switch batch.targets {
            case .labels: targets = [batch.count]
            case .values(let values): targets = values.shape
            }
            tensors.append(("\(name).inputs", try Tensor(shape: [count] + batch.inputs.shape, scalars: parts["\(name).inputs"]!)))
            tensors.append(("\(name).targets", try Tensor(shape: [count] + targets, scalars: parts["\(name).targets"]!)))
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let metadata = ["format": "metacore-episodes", "tasks": "\(count)", "meta_batch": "\(trainer.metaBatch)",
                        "iterations": "\(first)", "configuration": String(decoding: try encoder.encode(config), as: UTF8.self)]
        try SafeTensors(tensors: tensors, metadata: metadata).write(to: URL(fileURLWithPath: output))
        print("wrote the initial parameters and \(count) tasks (\(first) iterations of \(trainer.metaBatch)) of \(config.algorithm) on \(config.task) to \(output)")
    }
}
