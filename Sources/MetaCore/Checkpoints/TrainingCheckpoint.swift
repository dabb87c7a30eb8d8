import Foundation

/// A meta-training run's state as a safetensors file: the meta-parameters under the model's tensor names
/// (`0.weight`, …; Meta-SGD's learning rates as `alpha.0.weight`, …), the meta-optimiser's state
/// (`optimizer.m`, `optimizer.v`), and in the metadata the configuration (JSON), the iteration and the
/// wall time spent training so far (summed over resumed runs, so that logs and learning curves continue).
///
/// A checkpoint may leave the optimiser state out (``withoutOptimizerState(_:)``): evaluation, continual learning,
/// prediction and `--init-from` read it as they read the full one, but a run cannot resume from it.
public enum TrainingCheckpoint {
    static let format = "metacore-training-1"
    /// The metadata entry that marks a checkpoint without optimiser state, and its one value.
    static let optimizerStateKey = "optimizer.state", omitted = "omitted"

    public static func make(_ trainer: MetaTrainer, configuration: TrainingConfiguration, trainingSeconds: Double = 0) throws -> SafeTensors {
        let model = trainer.model, meta = trainer.metaParameters
        var file = SafeTensors()
        for entry in model.layout.entries {
            file.tensors.append((entry.name, try Tensor(shape: entry.shape, scalars: Array(meta[entry.range]))))
        }
        for (name, range) in trainer.learner.extraMetaParameters(for: model) {
            file.tensors.append((name, try Tensor(shape: [range.count], scalars: Array(meta[range]))))
        }
        let state = trainer.optimizer.state
        for (name, vector) in state.vectors.sorted(by: { $0.key < $1.key }) {
            file.tensors.append(("optimizer.\(name)", try Tensor(shape: [vector.count], scalars: vector)))
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]   // the same run writes the same bytes
        let config = String(decoding: try encoder.encode(configuration), as: UTF8.self)
        file.metadata = ["format": format, "configuration": config, "iteration": String(trainer.iteration),
                         "optimizer.step": String(state.step), "training.seconds": String(trainingSeconds)]
        if let images = trainer.tasks as? any ImageTaskDistribution {
            file.metadata["metacore.inputs"] = String(decoding: try encoder.encode(images.preprocessing), as: UTF8.self)
        }
        return file
    }

    /// The meta-parameters the checkpoint holds for `learner` on `model`: `initial` with every tensor of the
    /// model's layout and the learner's extra pieces replaced by the file's, each checked for shape.
    static func metaParameters(of file: SafeTensors, learner: any MetaLearner, model: Model, initial: [Float]) throws -> [Float] {
        var meta = initial
        let pieces = model.layout.entries.map { ($0.name, $0.range, $0.shape) }
            + learner.extraMetaParameters(for: model).map { ($0.name, $0.range, [$0.range.count]) }
        for (name, range, shape) in pieces {
            guard let tensor = file.tensor(named: name) else { throw MetaCoreError(.corruptData, "checkpoint lacks tensor '\(name)'") }
            guard tensor.shape == shape else {
                throw MetaCoreError(.corruptData, "checkpoint tensor '\(name)' is \(describe(tensor.shape)), the model needs \(describe(shape))")
            }
            meta.replaceSubrange(range, with: tensor.scalars)
        }
        guard meta.allSatisfy(\.isFinite) else { throw MetaCoreError(.corruptData, "checkpoint parameters contain NaN or infinity") }
        return meta
    }

    /// How the run's task family prepared its images (`nil`: not an image task family, or a checkpoint from
    /// before MetaCore recorded it).
    public static func inputs(of file: SafeTensors) throws -> ImagePreprocessing? {
        guard let json = file.metadata["metacore.inputs"] else { return nil }
        let preprocessing: ImagePreprocessing
        do { preprocessing = try JSONDecoder().decode(ImagePreprocessing.self, from: Data(json.utf8)) } catch {
            throw MetaCoreError(.corruptData, "the checkpoint's 'metacore.inputs' is unreadable: \(error)")
        }
        try preprocessing.check()
        return preprocessing
    }

    /// The wall time, in seconds, spent training the checkpoint's run (0 for checkpoints that do not record it).
    public static func trainingSeconds(of file: SafeTensors) throws -> Double {
        guard let text = file.metadata["training.seconds"] else { return 0 }
        guard let seconds = Double(text), seconds.isFinite, seconds >= 0 else {
            throw MetaCoreError(.corruptData, "checkpoint metadata 'training.seconds' is not a valid duration: '\(text)'")
        }
        return seconds
    }

    /// The configuration stored in a checkpoint.
    public static func configuration(of file: SafeTensors) throws -> TrainingConfiguration {
        guard file.metadata["format"] == format, let json = file.metadata["configuration"] else {
            throw MetaCoreError(.corruptData, "not a MetaCore training checkpoint (metadata 'format' is \(file.metadata["format"] ?? "missing"), expected \(format))")
        }
        var configuration: TrainingConfiguration
        do { configuration = try JSONDecoder().decode(TrainingConfiguration.self, from: Data(json.utf8)) } catch {
            throw MetaCoreError(.corruptData, "the checkpoint's configuration is unreadable: \(error)")
        }
        do {
            try configuration.validate(source: "the checkpoint's configuration")
            // JSON writes a whole-number float option (`--inner-beta1 0`) as an integer: give each option its kind back.
            configuration.options = try configuration.resolvedOptions().given
        } catch let error as MetaCoreError {
            throw MetaCoreError(.corruptData, error.message)
        }
        return configuration
    }

    /// `file` without its optimiser state, marked so: the meta-parameters, configuration, iteration and training time
    /// alone. Adam's two moments are twice the parameters' bytes, so this is a third of an Adam run's checkpoint —
    /// what a finished run keeps for evaluation. Throws if `file` is not a training checkpoint.
    public static func withoutOptimizerState(_ file: SafeTensors) throws -> SafeTensors {
        _ = try configuration(of: file)
        var stripped = file
        stripped.tensors.removeAll { $0.name.hasPrefix("optimizer.") }
        stripped.metadata[optimizerStateKey] = omitted
        return stripped
    }

    /// Whether `file` holds the optimiser state a resumed run continues with (false after ``withoutOptimizerState(_:)``;
    /// a mark of any other value is left to ``restore(_:data:threads:)`` to refuse as corrupt).
    public static func holdsOptimizerState(_ file: SafeTensors) -> Bool {
        file.metadata[optimizerStateKey] != omitted
    }

    /// The trainer as it was when the checkpoint was written, ready to continue on `threads` threads (its
    /// task family reads its dataset, if any, from `data`). Any registered algorithm, task family and backbone
    /// restores the same way: the configuration names them. From a checkpoint without optimiser state the
    /// optimiser starts fresh, so such a trainer is for evaluation (``TrainingSession`` refuses to resume it).
    public static func restore(_ file: SafeTensors, data: DataSource = DataSource(), threads: Int = 1) throws -> (MetaTrainer, TrainingConfiguration) {
        let configuration = try configuration(of: file)
        var trainer = try configuration.makeTrainer(data: data, threads: threads)
        let meta = try metaParameters(of: file, learner: trainer.learner, model: trainer.model, initial: trainer.metaParameters)
        trainer.metaParameters = meta
        guard let iteration = Int(file.metadata["iteration"] ?? ""), (0 ... maximumOptimizerSteps).contains(iteration),
              let step = Int(file.metadata["optimizer.step"] ?? ""), step >= 0 else {
            throw MetaCoreError(.corruptData, "checkpoint metadata lacks a valid 'iteration' or 'optimizer.step'")
        }
        trainer.iteration = iteration
        var vectors: [String: [Float]] = [:]
        for (name, tensor) in file.tensors where name.hasPrefix("optimizer.") { vectors[String(name.dropFirst(10))] = tensor.scalars }
        switch file.metadata[optimizerStateKey] {
        case nil:
            try trainer.optimizer.restore(step: step, vectors: vectors, parameterCount: meta.count)
        case omitted?:
            guard vectors.isEmpty else {
                throw MetaCoreError(.corruptData, "checkpoint says its optimiser state is omitted but holds \(vectors.keys.sorted().map { "optimizer.\($0)" }.joined(separator: ", "))")
            }
        case let other?:
            throw MetaCoreError(.corruptData, "checkpoint metadata '\(optimizerStateKey)' is '\(other)'; the only value it may have is '\(omitted)'")
        }
        return (trainer, configuration)
    }
}
